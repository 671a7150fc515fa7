"""kstatus, as Flux's health checks compute it (sigs.k8s.io/cli-utils status.Compute, run by the
Go helper of e2e/harness/kstatus.py on live objects), for every kind in every state: new before
the operator has looked (created while it is stopped), ready, a failure that retrying can heal,
one that needs a person, and a spec changed but not yet observed (of a ready object, and of a
failed one whose spec is fixed). docs/gitops.md shows EXPECTED, which a test here checks.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import ROOT
from e2e.harness.argocd import health
from e2e.harness.kstatus import Kstatus, kstatus, target
from e2e.harness.manifests import API_VERSION, vault_auth, vault_secret
from e2e.harness.polling import Pending, eventually
from e2e.harness.postgres import Postgres
from e2e.harness.processes import free_port
from e2e.harness.stack import Stack, tenant_policy
from e2e.harness.vaultadmin import grant_operator, operator_objects

pytestmark = pytest.mark.e2e
AUTH = "vaultsync-admin"
Manifest = dict[str, Any]

UNOBSERVED = ("InProgress", "Reconciling", "LatestGenerationNotObserved")
READY = ("Current", "", "")
EXPECTED: dict[str, dict[str, tuple[str, str, str]]] = {
    # kind: state -> (kstatus, the condition it derives, its reason)
    "VaultSecret": {
        "transient": ("InProgress", "Reconciling", "PermissionDenied"),
        "permanent": ("Failed", "Stalled", "SecretNotFound"),
    },
    "VaultDynamicSecret": {
        "transient": ("InProgress", "Reconciling", "PermissionDenied"),
        "permanent": ("Failed", "Stalled", "KeyNotFound"),
    },
    "VaultPolicy": {
        "transient": ("InProgress", "Reconciling", "AuthNotFound"),
        "permanent": ("Failed", "Stalled", "PolicyRejected"),
    },
    "VaultAuditDevice": {
        "transient": ("InProgress", "Reconciling", "AuthNotFound"),
        "permanent": ("Failed", "Stalled", "FilePathNotAllowed"),
    },
    "VaultTransitKey": {
        "transient": ("InProgress", "Reconciling", "AuthNotFound"),
        "permanent": ("Failed", "Stalled", "MinVersionAboveLatest"),
    },
    "VaultConnection": {
        "transient": ("InProgress", "Reconciling", "VaultUnavailable"),
        "permanent": ("Failed", "Stalled", "InvalidCACertificate"),
    },
    "VaultAuth": {
        "transient": ("InProgress", "Reconciling", "ConnectionNotFound"),
        "permanent": ("Failed", "Stalled", "InvalidCACertificate"),
    },
}
for _states in EXPECTED.values():
    _states.update(new=UNOBSERVED, ready=READY, changed=UNOBSERVED, fixed=UNOBSERVED)
STATES = {
    "new": "new, before the operator looks",
    "ready": "ready",
    "transient": "failing, retried",
    "permanent": "failing, needs a person",
    "changed": "spec changed, not yet observed",
}
HOW = {
    "VaultSecret": ("a path its Vault policy does not grant", "a path with nothing in Vault"),
    "VaultDynamicSecret": (
        "a database role its Vault policy does not grant",
        "keys the credential does not have",
    ),
    "VaultPolicy": ("an authRef to no VaultAuth", "HCL that Vault rejects"),
    "VaultAuditDevice": ("an authRef to no VaultAuth", "a file outside the allowed directories"),
    "VaultTransitKey": ("an authRef to no VaultAuth", "a minDecryptionVersion above the latest"),
    "VaultConnection": ("an address where nothing listens", "a CA Secret without a certificate"),
    "VaultAuth": ("a connectionRef to no VaultConnection", "a connection whose CA Secret is bad"),
}


@pytest.fixture(scope="module")
def operator_identity(stack: Stack) -> None:
    """VaultPolicy, VaultAuditDevice and VaultTransitKey log in as the operator
    (e2e/harness/vaultadmin.py)."""
    grant_operator(stack.vault)
    stack.apply(*operator_objects(AUTH, "default", stack.bao.address))


@dataclass
class Case:
    """One kind's objects: `objects` by state (new, ready, transient, permanent); `change` makes
    a harmless spec change (to the ready one), `fix` the change that heals the permanent one."""

    plural: str
    namespace: str | None
    objects: dict[str, Manifest]
    change: Callable[[Manifest], None]
    fix: Callable[[Manifest], None]
    before: list[Manifest] = field(default_factory=list)  # what the objects refer to
    cleanup: Callable[[], None] = lambda: None

    def target(self, state: str) -> str:
        return target(self.plural, self.objects[state]["metadata"]["name"], self.namespace)


def _object(kind: str, name: str, spec: Manifest, namespace: str | None = None) -> Manifest:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _named(manifest: Manifest, name: str) -> Manifest:
    renamed = copy.deepcopy(manifest)
    renamed["metadata"]["name"] = name
    if renamed["kind"] == "VaultSecret":
        renamed["spec"]["destination"]["name"] = name
    return renamed


def _bad_ca(tenant: str) -> tuple[Manifest, Manifest]:
    """A Secret whose ca.crt holds no certificate, and a caCertSecretRef to it."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bad-ca", "namespace": tenant},
        "stringData": {"ca.crt": "not a certificate"},
    }
    ref = {"namespace": tenant, "name": "bad-ca", "key": "ca.crt"}
    return secret, ref


def _delete(stack: Stack, kind: str, *names: str) -> None:
    stack.cp.kubectl("delete", kind, *names, "--ignore-not-found", "--timeout=60s", check=False)


def vaultsecret_case(stack: Stack, tenant: str, uid: str, _tmp: Path) -> Case:
    stack.put(f"{tenant}/kstatus", {"k": f"kstatus-{uid}"})
    ready = vault_secret(tenant, "ready", f"{tenant}/kstatus")

    def change(m: Manifest) -> None:
        m["spec"]["refreshInterval"] = "3s"

    def fix(m: Manifest) -> None:
        m["spec"]["path"] = f"{tenant}/kstatus"

    return Case(
        "vaultsecrets",
        tenant,
        {
            "ready": ready,
            "new": _named(ready, "new"),
            "transient": vault_secret(tenant, "transient", f"other-{tenant}/kstatus"),
            "permanent": vault_secret(tenant, "permanent", f"{tenant}/nothing-here"),
        },
        change,
        fix,
    )


def vaultdynamicsecret_case(stack: Stack, tenant: str, uid: str, _tmp: Path) -> Case:
    """A PostgreSQL of the case's own behind a database mount of its own (stopped by cleanup,
    after the objects' deletion revoked their leases)."""
    postgres = Postgres()
    postgres.start()
    mount = f"db-kstatus-{uid}"
    postgres.configure_vault(stack.vault, mount=mount, ttl="1h", max_ttl="2h")
    postgres.add_role(stack.vault, "other", mount=mount, ttl="1h", max_ttl="2h")
    policy = tenant_policy(tenant) + (
        f'path "{mount}/creds/app" {{ capabilities = ["read"] }}\n'
        f'path "sys/leases/renew/{mount}/creds/app/*" {{ capabilities = ["update"] }}\n'
        f'path "sys/leases/revoke/{mount}/creds/app/*" {{ capabilities = ["update"] }}\n'
    )
    stack.vault.sys.create_or_update_policy(f"{tenant}-read", policy)

    def dynamic(name: str, role: str = "app", **spec: Any) -> Manifest:
        destination = {"name": name}
        return _object(
            "VaultDynamicSecret",
            name,
            {"mount": mount, "path": f"creds/{role}", "destination": destination, **spec},
            tenant,
        )

    def change(m: Manifest) -> None:
        m["spec"]["renewalPercent"] = 60  # timing only: no new credential

    def fix(m: Manifest) -> None:
        m["spec"]["keys"] = [{"from": "username"}, {"from": "password"}]

    objects = {
        "new": dynamic("new"),
        "ready": dynamic("ready"),
        "transient": dynamic("transient", role="other"),
        "permanent": dynamic("permanent", keys=[{"from": "user"}]),
    }

    def cleanup() -> None:
        try:
            _delete(stack, "vaultdynamicsecrets", "-n", tenant, *objects)
        finally:
            postgres.stop()

    return Case("vaultdynamicsecrets", tenant, objects, change, fix, cleanup=cleanup)


def vaultpolicy_case(stack: Stack, _tenant: str, uid: str, _tmp: Path) -> Case:
    def policy(state: str, **spec: Any) -> Manifest:
        name = f"kstatus-{state}-{uid}"
        hcl = f'path "secret/data/{name}/*" {{ capabilities = ["read"] }}\n'
        return _object(
            "VaultPolicy", name, {"authRef": AUTH, "policyName": name, "hcl": hcl, **spec}
        )

    def change(m: Manifest) -> None:
        m["spec"]["hcl"] = m["spec"]["hcl"].replace('"read"', '"read", "list"')

    def fix(m: Manifest) -> None:
        m["spec"]["hcl"] = m["spec"]["hcl"].replace('"reed"', '"read"')

    objects = {state: policy(state) for state in ("new", "ready")}
    objects["transient"] = policy("transient", authRef=f"nobody-{uid}")
    objects["permanent"] = policy("permanent")
    objects["permanent"]["spec"]["hcl"] = objects["permanent"]["spec"]["hcl"].replace(
        '"read"', '"reed"'
    )
    names = [m["metadata"]["name"] for m in objects.values()]
    return Case(
        "vaultpolicies",
        None,
        objects,
        change,
        fix,
        cleanup=lambda: _delete(stack, "vaultpolicies", *names),
    )


def vaultauditdevice_case(stack: Stack, _tenant: str, uid: str, tmp: Path) -> Case:
    def device(state: str, log: str = "", **spec: Any) -> Manifest:
        name = f"kstatus-{state}-{uid}"
        options = {"file_path": log or str(tmp / f"{state}.log")}
        return _object(
            "VaultAuditDevice",
            name,
            {
                "authRef": AUTH,
                "type": "file",
                "path": name,
                "options": options,
                "deletionPolicy": "Delete",
                **spec,
            },
        )

    def change(m: Manifest) -> None:
        m["spec"]["acknowledgeInsecureOptions"] = False  # what it was: nothing changes in Vault

    def fix(m: Manifest) -> None:
        m["spec"]["options"]["file_path"] = str(tmp / "fixed.log")

    objects = {state: device(state) for state in ("new", "ready")}
    objects["transient"] = device("transient", authRef=f"nobody-{uid}")
    objects["permanent"] = device("permanent", "/etc/kstatus.log")
    names = [m["metadata"]["name"] for m in objects.values()]

    def cleanup() -> None:
        _delete(stack, "vaultauditdevices", *names)
        for name in names:
            stack.vault.sys.disable_audit_device(name)

    return Case("vaultauditdevices", None, objects, change, fix, cleanup=cleanup)


def vaulttransitkey_case(stack: Stack, _tenant: str, uid: str, _tmp: Path) -> Case:
    def key(state: str, **spec: Any) -> Manifest:
        name = f"kstatus-{state}-{uid}"
        return _object(
            "VaultTransitKey", name, {"authRef": AUTH, "deletionPolicy": "Delete", **spec}
        )

    def change(m: Manifest) -> None:
        m["spec"]["minEncryptionVersion"] = 0  # the default: nothing changes in Vault

    def fix(m: Manifest) -> None:
        m["spec"]["minDecryptionVersion"] = 1

    objects = {state: key(state) for state in ("new", "ready")}
    objects["transient"] = key("transient", authRef=f"nobody-{uid}")
    objects["permanent"] = key("permanent", minDecryptionVersion=5)
    names = [m["metadata"]["name"] for m in objects.values()]
    return Case(
        "vaulttransitkeys",
        None,
        objects,
        change,
        fix,
        cleanup=lambda: _delete(stack, "vaulttransitkeys", *names),
    )


def vaultconnection_case(stack: Stack, tenant: str, uid: str, _tmp: Path) -> Case:
    secret, ref = _bad_ca(tenant)

    def connection(state: str, address: str = "", **spec: Any) -> Manifest:
        address = address or stack.bao.address
        return _object("VaultConnection", f"kstatus-{state}-{uid}", {"address": address, **spec})

    def change(m: Manifest) -> None:
        m["spec"]["timeoutSeconds"] = 5

    def fix(m: Manifest) -> None:
        del m["spec"]["caCertSecretRef"]

    objects = {state: connection(state) for state in ("new", "ready")}
    objects["transient"] = connection("transient", f"http://127.0.0.1:{free_port()}")
    objects["permanent"] = connection("permanent", caCertSecretRef=ref)
    names = [m["metadata"]["name"] for m in objects.values()]
    return Case(
        "vaultconnections",
        None,
        objects,
        change,
        fix,
        before=[secret],
        cleanup=lambda: _delete(stack, "vaultconnections", *names),
    )


def vaultauth_case(stack: Stack, tenant: str, uid: str, _tmp: Path) -> Case:
    secret, ref = _bad_ca(tenant)
    bad = _object("VaultConnection", f"kstatus-bad-ca-{uid}", {"address": stack.bao.address})
    bad["spec"]["caCertSecretRef"] = ref

    def auth(state: str, connection: str = "default") -> Manifest:
        manifest = _named(vault_auth(tenant), state)
        manifest["spec"]["connectionRef"] = connection
        return manifest

    def change(m: Manifest) -> None:
        m["spec"]["kubernetes"]["tokenExpirationSeconds"] = 900

    def fix(m: Manifest) -> None:
        m["spec"]["connectionRef"] = "default"

    return Case(
        "vaultauths",
        tenant,
        {
            "new": auth("new"),
            "ready": auth("ready"),
            "transient": auth("transient", f"nowhere-{uid}"),
            "permanent": auth("permanent", bad["metadata"]["name"]),
        },
        change,
        fix,
        before=[secret, bad],
        cleanup=lambda: _delete(stack, "vaultconnections", bad["metadata"]["name"]),
    )


CASES = {
    "VaultSecret": vaultsecret_case,
    "VaultDynamicSecret": vaultdynamicsecret_case,
    "VaultPolicy": vaultpolicy_case,
    "VaultAuditDevice": vaultauditdevice_case,
    "VaultTransitKey": vaulttransitkey_case,
    "VaultConnection": vaultconnection_case,
    "VaultAuth": vaultauth_case,
}


def _derived(answer: Kstatus) -> tuple[str, str, str]:
    condition, reason = next(iter(answer.conditions.items()), ("", ""))
    return answer.status, condition, reason


def measure(stack: Stack, *targets: str) -> dict[str, Kstatus]:
    return kstatus(stack.cp.kubeconfig, *targets)


def wait_for(stack: Stack, where: str, expected: tuple[str, str, str]) -> Kstatus:
    def check() -> Kstatus | Pending:
        answer = measure(stack, where)[where]
        return answer if _derived(answer) == expected else Pending(str(answer))

    answer = eventually(check, 60, f"kstatus of {where}: {expected}")
    assert isinstance(answer, Kstatus)
    return answer


@pytest.fixture
def running(stack: Stack) -> Iterator[None]:
    """The test may stop the shared operator; it runs again afterwards, whatever happened."""
    try:
        yield
    finally:
        stack.operator.start()


@pytest.mark.parametrize("kind", list(CASES))
def test_kstatus_in_every_state(
    stack: Stack, operator_identity: None, tenant: str, tmp_path: Path, running: None, kind: str
) -> None:
    uid = uuid.uuid4().hex[:6]
    case = CASES[kind](stack, tenant, uid, tmp_path)
    expected = EXPECTED[kind]
    try:
        stack.apply(*case.before, *(case.objects[s] for s in ("ready", "transient", "permanent")))
        for state in ("ready", "transient", "permanent"):
            answer = wait_for(stack, case.target(state), expected[state])
            if state == "ready":
                assert answer.message == "Resource is Ready"

        # With the operator stopped: a new object, and specs changed but not yet observed.
        stack.operator.stop()
        try:
            changed = copy.deepcopy(case.objects["ready"])
            case.change(changed)
            fixed = copy.deepcopy(case.objects["permanent"])
            case.fix(fixed)
            stack.apply(case.objects["new"], changed, fixed)
            new, ready, permanent = (case.target(s) for s in ("new", "ready", "permanent"))
            answers = measure(stack, new, ready, permanent)
            assert _derived(answers[new]) == expected["new"], answers[new]
            assert (
                answers[new].message
                == f"{kind} generation is 1, but latest observed generation is 0"
            )
            assert _derived(answers[ready]) == expected["changed"], answers[ready]
            assert _derived(answers[permanent]) == expected["fixed"], answers[permanent]
            for where in (ready, permanent):
                assert answers[where].message.startswith(f"{kind} generation is 2, "), where
            body = stack.get(case.plural, case.objects["new"]["metadata"]["name"], case.namespace)
            assert body["status"] == {"observedGeneration": 0}, "the API server's default"
            assert health(body)[0] == "Progressing", "Argo CD waits too"
        finally:
            stack.operator.start()

        # Once the operator has looked: all three Current (the fixed one too).
        for where in (new, ready, permanent):
            wait_for(stack, where, READY)
    finally:
        case.cleanup()


def table() -> str:
    """EXPECTED as docs/gitops.md shows it."""
    shown = {READY: "Current", UNOBSERVED: "InProgress (`LatestGenerationNotObserved`)"}
    columns = ["new", "ready", "transient", "permanent", "changed"]
    lines = [
        "| kind | " + " | ".join(STATES[c] for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for kind, states in EXPECTED.items():
        cells = []
        for column in columns:
            status, condition, reason = states[column]
            cell = shown.get(states[column], f"{status} (`{condition}`: `{reason}`)")
            if column in ("transient", "permanent"):
                how = HOW[kind][column == "permanent"]
                cell = f"{cell}, {how}"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_the_docs_show_what_is_measured() -> None:
    page = (ROOT / "docs" / "gitops.md").read_text()
    assert table() in page, "docs/gitops.md: put this table in the Flux section\n" + table()
