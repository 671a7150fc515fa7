"""Input that could hurt is refused by the real kube-apiserver at apply time, with the reason.

Every case is a server-side dry run against the generated CRDs, so nothing is stored; the same
case goes through the pydantic models too, which must agree (they are what an object that got
past an older API server meets in the operator). Keys that only show up in the Vault data are
refused at sync time instead: Ready=False, reason InvalidKey, no Secret written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from e2e.harness.manifests import API_VERSION, vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from vaultsync.api.audit import VaultAuditDeviceSpec
from vaultsync.api.auth import VaultAuthSpec
from vaultsync.api.policy import VaultPolicySpec
from vaultsync.api.secret import VaultSecretSpec

pytestmark = pytest.mark.e2e

DOT_SEGMENT = "'.' or '..' segment"
LEADING = "must not start with '/'"
TRAILING = "must not end with '/'"
EMPTY = "empty segment"
URL_UNSAFE = "must not contain '%', '?', '#'"
KEY_DOTS = "must not be '.' or '..' or start with '..'"
KEY_CHARS = "must be 1 to 253 characters of [-._a-zA-Z0-9]"
LABEL_KEY = "must be a qualified name"
LABEL_KEY_LENGTHS = "name of at most 63 characters"
LABEL_VALUE = "must be empty or alphanumerics"
OURS = "must not start with 'vaultsync.io/'"

SPECS: dict[str, type[BaseModel]] = {
    "VaultSecret": VaultSecretSpec,
    "VaultAuth": VaultAuthSpec,
    "VaultPolicy": VaultPolicySpec,
    "VaultAuditDevice": VaultAuditDeviceSpec,
}


@pytest.fixture(scope="module")
def namespace(stack: Stack) -> Iterator[str]:
    name = f"input-{uuid.uuid4().hex[:6]}"
    stack.cp.kubectl("create", "namespace", name)
    yield name
    stack.cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def secret_spec(**spec: Any) -> dict[str, Any]:
    return {"path": "team/db", "destination": {"name": "db"}, **spec}


def auth_spec(mount: str) -> dict[str, Any]:
    return {"kubernetes": {"role": "r", "mount": mount}}


def policy_spec(**spec: Any) -> dict[str, Any]:
    return {
        "policyName": "p-{namespace}",
        "namespaceSelector": {"matchLabels": {"tenant": "yes"}},
        "rules": [{"path": "secret/data/{namespace}/*", "capabilities": ["read"]}],
        **spec,
    }


def rule(path: str) -> dict[str, Any]:
    return policy_spec(rules=[{"path": path, "capabilities": ["read", "list"]}])


def role(mount: str) -> dict[str, Any]:
    return policy_spec(
        kubernetesRole={"mount": mount, "name": "r-{namespace}", "serviceAccounts": ["*"]}
    )


def labels(match_labels: dict[str, str]) -> dict[str, Any]:
    return policy_spec(namespaceSelector={"matchLabels": match_labels})


def expression(key: str, values: list[str]) -> dict[str, Any]:
    requirement = {"key": key, "operator": "In", "values": values}
    return policy_spec(namespaceSelector={"matchExpressions": [requirement]})


def audit_spec(path: str) -> dict[str, Any]:
    return {"type": "syslog", "path": path}


# (kind, spec, field the API server names, what its message says)
REJECTED: list[tuple[str, dict[str, Any], str, str]] = [
    # item 4: paths and mounts that would reach another Vault endpoint or break the URL
    ("VaultSecret", secret_spec(path="../../auth/token/lookup-self"), "spec.path", DOT_SEGMENT),
    ("VaultSecret", secret_spec(path="team/./db"), "spec.path", DOT_SEGMENT),
    ("VaultSecret", secret_spec(path="team/.."), "spec.path", DOT_SEGMENT),
    ("VaultSecret", secret_spec(path="team//db"), "spec.path", EMPTY),
    ("VaultSecret", secret_spec(path="/team/db"), "spec.path", LEADING),
    ("VaultSecret", secret_spec(path="team/db/"), "spec.path", TRAILING),
    ("VaultSecret", secret_spec(path="team/%2e%2e/x"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team/db?version=1"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team/db#x"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team\\..\\x"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team/d b"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team/db\n"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team/d\u00a0b"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(path="team/d\u0085b"), "spec.path", URL_UNSAFE),
    ("VaultSecret", secret_spec(mount="secret/../sys"), "spec.mount", DOT_SEGMENT),
    ("VaultSecret", secret_spec(mount="/secret"), "spec.mount", LEADING),
    ("VaultSecret", secret_spec(mount="secret/"), "spec.mount", TRAILING),
    ("VaultAuth", auth_spec("kubernetes/.."), "spec.kubernetes.mount", DOT_SEGMENT),
    ("VaultAuth", auth_spec("kube//rnetes"), "spec.kubernetes.mount", EMPTY),
    ("VaultAuth", auth_spec("k8s?x=1"), "spec.kubernetes.mount", URL_UNSAFE),
    ("VaultPolicy", rule("secret/data/../*"), "spec.rules[0].path", DOT_SEGMENT),
    ("VaultPolicy", rule("secret/./data/*"), "spec.rules[0].path", DOT_SEGMENT),
    ("VaultPolicy", rule("/secret/data/*"), "spec.rules[0].path", LEADING),
    ("VaultPolicy", rule("secret//data/*"), "spec.rules[0].path", EMPTY),
    ("VaultPolicy", rule("secret/data/a%2F*"), "spec.rules[0].path", URL_UNSAFE),
    ("VaultPolicy", rule("secret/data/a b"), "spec.rules[0].path", URL_UNSAFE),
    ("VaultPolicy", role("kubernetes/.."), "spec.kubernetesRole.mount", DOT_SEGMENT),
    ("VaultPolicy", role("/kubernetes"), "spec.kubernetesRole.mount", LEADING),
    (
        "VaultPolicy",
        policy_spec(namespaceSelector=None, policyName="..", rules=None, hcl="x"),
        "spec.policyName",
        "must not be '.' or '..'",
    ),
    ("VaultPolicy", rule('secret/data/x" {}'), "spec.rules[0].path", "must not contain '\"'"),
    ("VaultAuditDevice", audit_spec(".."), "spec.path", DOT_SEGMENT),
    ("VaultAuditDevice", audit_spec("/file"), "spec.path", LEADING),
    ("VaultAuditDevice", audit_spec("file/"), "spec.path", TRAILING),
    ("VaultAuditDevice", audit_spec("a+b"), "spec.path", "may only contain letters, digits"),
    ("VaultAuditDevice", audit_spec("team/./file"), "spec.path", DOT_SEGMENT),
    # item 4: Secret keys Kubernetes itself refuses
    ("VaultSecret", secret_spec(keys=[{"from": "a", "to": ".."}]), "spec.keys[0].to", KEY_DOTS),
    ("VaultSecret", secret_spec(keys=[{"from": "a", "to": "."}]), "spec.keys[0].to", KEY_DOTS),
    ("VaultSecret", secret_spec(keys=[{"from": "a", "to": "..x"}]), "spec.keys[0].to", KEY_DOTS),
    ("VaultSecret", secret_spec(keys=[{"from": "a", "to": "a b"}]), "spec.keys[0].to", KEY_CHARS),
    ("VaultSecret", secret_spec(keys=[{"from": ".."}]), "spec.keys[0]", KEY_DOTS),
    ("VaultSecret", secret_spec(keys=[{"from": "a b"}]), "spec.keys[0]", KEY_CHARS),
    ("VaultSecret", secret_spec(template={"..": "x"}), "spec.template", KEY_DOTS),
    ("VaultSecret", secret_spec(template={".": "x"}), "spec.template", KEY_DOTS),
    ("VaultSecret", secret_spec(template={"..data": "x"}), "spec.template", KEY_DOTS),
    # item 5: a keys entry and a template key writing the same Secret key
    (
        "VaultSecret",
        secret_spec(keys=[{"from": "user", "to": "dsn"}], template={"dsn": "{{ url }}"}),
        "spec",
        "a keys entry and a template key write the same Secret key",
    ),
    (
        "VaultSecret",
        secret_spec(keys=[{"from": "dsn"}], template={"dsn": "{{ url }}"}),
        "spec",
        "a keys entry and a template key write the same Secret key",
    ),
    # item 6: selectors Kubernetes would refuse for its own objects
    ("VaultPolicy", labels({"bad key": "x"}), "spec.namespaceSelector.matchLabels", LABEL_KEY),
    ("VaultPolicy", labels({"-tier": "x"}), "spec.namespaceSelector.matchLabels", LABEL_KEY),
    ("VaultPolicy", labels({"a/b/c": "x"}), "spec.namespaceSelector.matchLabels", LABEL_KEY),
    ("VaultPolicy", labels({"Ex.com/t": "x"}), "spec.namespaceSelector.matchLabels", LABEL_KEY),
    (
        "VaultPolicy",
        labels({"t" * 64: "x"}),
        "spec.namespaceSelector.matchLabels",
        LABEL_KEY_LENGTHS,
    ),
    (
        "VaultPolicy",
        labels({"a" * 254 + "/t": "x"}),
        "spec.namespaceSelector.matchLabels",
        LABEL_KEY_LENGTHS,
    ),
    ("VaultPolicy", labels({"t": "-x"}), "spec.namespaceSelector.matchLabels[t]", LABEL_VALUE),
    ("VaultPolicy", labels({"t": "a b"}), "spec.namespaceSelector.matchLabels[t]", LABEL_VALUE),
    ("VaultPolicy", labels({"t": "v" * 64}), "spec.namespaceSelector.matchLabels.t", "63"),
    (
        "VaultPolicy",
        expression("bad key", ["x"]),
        "spec.namespaceSelector.matchExpressions[0].key",
        LABEL_KEY,
    ),
    (
        "VaultPolicy",
        expression("tier", ["ok", "not ok"]),
        "spec.namespaceSelector.matchExpressions[0].values[1]",
        LABEL_VALUE,
    ),
]


def rotating(**rotation: Any) -> dict[str, Any]:
    keys = rotation.pop("keys", [{"name": "password", "generate": {}}])
    return secret_spec(rotation={**rotation, "keys": keys})


REJECTED += [
    # rotation specs
    ("VaultSecret", rotating(), "spec.rotation", "exactly one of schedule or interval"),
    (
        "VaultSecret",
        rotating(schedule="0 3 * * *", interval="1h"),
        "spec.rotation",
        "exactly one of schedule or interval",
    ),
    ("VaultSecret", rotating(schedule="0 3 * *"), "spec.rotation", "cron expression of 5 fields"),
    (
        "VaultSecret",
        rotating(interval="1h", timeZone="Europe/Berlin"),
        "spec.rotation",
        "timeZone applies to schedule only",
    ),
    (
        "VaultSecret",
        {**rotating(interval="1h"), "version": 3},
        "spec",
        "rotation writes new versions: version must be 0",
    ),
    (
        "VaultSecret",
        rotating(interval="1h", keys=[{"name": "p"}]),
        "spec.rotation.keys[0]",
        "exactly one generator",
    ),
    (
        "VaultSecret",
        rotating(
            interval="1h", keys=[{"name": "p", "generate": {}}, {"name": "p", "generate": {}}]
        ),
        "spec.rotation",
        "two keys entries have the same name",
    ),
    (
        "VaultSecret",
        rotating(interval="1h", keys=[{"name": "p", "generate": {"length": 8, "minDigits": 9}}]),
        "spec.rotation.keys[0].generate",
        "add up to more than length",
    ),
    (
        "VaultSecret",
        rotating(interval="1h", keys=[{"name": "..", "generate": {}}]),
        "spec.rotation.keys[0].name",
        KEY_DOTS,
    ),
    # declared metadata under vaultsync's own prefix, which it would override (drift forever)
    (
        "VaultSecret",
        secret_spec(destination={"name": "db", "labels": {"vaultsync.io/managed": "no"}}),
        "spec.destination.labels",
        OURS,
    ),
    (
        "VaultSecret",
        secret_spec(destination={"name": "db", "annotations": {"vaultsync.io/data-hash": "x"}}),
        "spec.destination.annotations",
        OURS,
    ),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("VaultSecret", rotating(schedule="0 3 * * 1-5", timeZone="Europe/Berlin")),
    ("VaultSecret", rotating(interval="720h", keys=[{"name": "p", "passwordPolicy": "db"}])),
    ("VaultSecret", secret_spec(path="team-a/db")),
    (
        "VaultSecret",
        secret_spec(
            destination={
                "name": "db",
                "labels": {"app.kubernetes.io/part-of": "shop", "team.vaultsync.io/x": "y"},
                "annotations": {"example.com/vaultsync.io": "z"},
            }
        ),
    ),
    ("VaultSecret", secret_spec(path="a/.hidden/b...c/+/*", mount="team/kv")),
    ("VaultSecret", secret_spec(path="team/db", mount="kv-v2.team")),
    (
        "VaultSecret",
        secret_spec(
            keys=[{"from": "..", "to": "dots"}, {"from": ".env"}, {"from": "a", "to": "a..b"}],
            template={".config": "{{ a }}", "tls.crt": "{{ b }}"},
        ),
    ),
    (
        "VaultSecret",
        secret_spec(keys=[{"from": "a b", "to": "ab"}], template={"ab2": "{{ data['a b'] }}"}),
    ),
    ("VaultAuth", auth_spec("kubernetes")),
    ("VaultAuth", auth_spec("clusters/prod.k8s")),
    ("VaultPolicy", rule("secret/metadata/")),
    ("VaultPolicy", rule("secret/data/+/config")),
    ("VaultPolicy", rule("secret/data/{namespace}/*")),
    ("VaultPolicy", rule("sys/policies/acl/.hidden")),
    ("VaultPolicy", role("clusters/prod")),
    (
        "VaultPolicy",
        labels({"example.com/tier": "", "app.kubernetes.io/name": "a_b.c-D", "t": "v" * 63}),
    ),
    ("VaultPolicy", labels({"a" * 253 + "/" + "n" * 63: "x"})),
    ("VaultPolicy", expression("kubernetes.io/metadata.name", ["team-a", ""])),
    ("VaultAuditDevice", audit_spec("team/file.log")),
]


def manifest(kind: str, spec: dict[str, Any], namespace: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"input-{uuid.uuid4().hex[:8]}"}
    if kind in ("VaultSecret", "VaultAuth"):
        metadata["namespace"] = namespace
    body = {k: v for k, v in spec.items() if v is not None}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": body}


def dry_run(stack: Stack, obj: dict[str, Any]) -> tuple[bool, str]:
    """Whether the API server would store obj (nothing is stored), and what it said."""
    result = stack.cp.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    return result.returncode == 0, result.stderr + result.stdout


def operator_problem(kind: str, spec: dict[str, Any]) -> str | None:
    """What the operator's own models say about spec (None: valid)."""
    try:
        SPECS[kind].model_validate({k: v for k, v in spec.items() if v is not None})
    except ValidationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("kind", "spec", "where", "complaint"),
    REJECTED,
    ids=[f"{k}-{i}" for i, (k, *_) in enumerate(REJECTED)],
)
def test_rejected_at_apply_time_with_the_reason(
    stack: Stack, namespace: str, kind: str, spec: dict[str, Any], where: str, complaint: str
) -> None:
    stored, said = dry_run(stack, manifest(kind, spec, namespace))
    assert not stored, f"the API server accepted it: {said}"
    assert f"{where}: Invalid value" in said or f"{where}: Too long" in said, said
    assert complaint in said, said
    problem = operator_problem(kind, spec)
    assert problem is not None and complaint in problem, problem


@pytest.mark.parametrize(
    ("kind", "spec"), ACCEPTED, ids=[f"{k}-{i}" for i, (k, _) in enumerate(ACCEPTED)]
)
def test_good_input_is_accepted(
    stack: Stack, namespace: str, kind: str, spec: dict[str, Any]
) -> None:
    stored, said = dry_run(stack, manifest(kind, spec, namespace))
    assert stored, said
    assert operator_problem(kind, spec) is None


def invalid_key(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    condition = eventually(
        lambda: (
            (c := stack.ready_is(namespace, name, "False")) and c["reason"] == "InvalidKey" and c
        ),
        60,
        f"{name} Ready=False/InvalidKey",
    )
    return dict(condition)


@pytest.mark.parametrize("key", ["..", ".", "..data"])
def test_a_vault_key_kubernetes_refuses_writes_no_secret(
    stack: Stack, tenant: str, key: str
) -> None:
    path = f"{tenant}/dots"
    stack.put(path, {key: "dotted-value-1", "ok": "plain-value-1"})
    stack.apply(vault_secret(tenant, "dots", path))
    condition = invalid_key(stack, tenant, "dots")
    assert repr(key) in condition["message"] and "Kubernetes refuses" in condition["message"]
    assert stack.secret_data(tenant, "dots") is None
    # the same data renamed with keys[].to is fine
    stack.apply(vault_secret(tenant, "dots", path, keys=[{"from": key, "to": "dotted"}]))
    data = eventually(lambda: stack.secret_data(tenant, "dots"), 60, "the renamed Secret")
    assert data == {"dotted": "dotted-value-1"}


def test_a_vault_key_kubernetes_refuses_changes_no_secret(stack: Stack, tenant: str) -> None:
    path = f"{tenant}/later"
    stack.put(path, {"k": "before-dots-1"})
    stack.apply(vault_secret(tenant, "later", path))
    eventually(lambda: stack.secret_data(tenant, "later"), 60, "the Secret")
    eventually(lambda: stack.ready_is(tenant, "later", "True"), 30, "Ready=True")
    before = stack.core.read_namespaced_secret("later", tenant)
    stack.put(path, {"k": "after-dots-1", "..": "after-dots-2"})
    invalid_key(stack, tenant, "later")
    after = stack.core.read_namespaced_secret("later", tenant)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert stack.secret_data(tenant, "later") == {"k": "before-dots-1"}
