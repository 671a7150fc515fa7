"""Pre-existing Secrets of every built-in type x creationPolicy x deletionPolicy x colliding
or fresh keys: after create, a refresh, a Vault change and delete, no key vaultsync did not
write is changed or lost, every deletion finishes, and status and Events tell the truth.

All cases run at once in one namespace, so the matrix costs one operator round, not 84.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.harness.manifests import vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack

DOCKER_JSON = json.dumps({"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}}})
TYPES: dict[str, dict[str, str]] = {
    # type -> data a Secret of that type already holds; the first key is the one to collide on
    "Opaque": {"password": "keep-me-opaque", "other": "other-opaque"},
    "kubernetes.io/tls": {"tls.key": "their-key-pem", "tls.crt": "their-cert-pem"},
    "kubernetes.io/basic-auth": {"password": "their-password", "username": "their-user"},
    "kubernetes.io/ssh-auth": {"ssh-privatekey": "their-ssh-key"},
    "kubernetes.io/dockerconfigjson": {".dockerconfigjson": DOCKER_JSON},
    "kubernetes.io/dockercfg": {".dockercfg": json.dumps({"registry.example": {}})},
    "kubernetes.io/service-account-token": {},  # the token controller fills it in
}
FOREIGN_LABELS = {"app.kubernetes.io/managed-by": "Helm", "owner-tool": "helm"}
FOREIGN_ANNOTATIONS = {"meta.helm.sh/release-name": "theirs"}


@dataclass(frozen=True)
class Case:
    index: int
    type: str
    creation: str
    deletion: str
    collide: bool

    @property
    def name(self) -> str:
        return f"m{self.index}"

    @property
    def path(self) -> str:
        return f"matrix/{self.name}"

    @property
    def sa_token(self) -> bool:
        return self.type == "kubernetes.io/service-account-token"

    def collide_key(self, foreign: dict[str, str]) -> str:
        return next(iter(foreign)) if foreign else "token"

    def vault_data(self, foreign: dict[str, str], round_: int) -> dict[str, str]:
        key = self.collide_key(foreign) if self.collide else "from-vault"
        return {key: f"vault-{self.name}-value-{round_}"}

    @property
    def expected_reason(self) -> str:
        if self.creation != "Merge":
            return "SecretConflict"
        if self.sa_token:
            return "SecretTypeNotMergeable"
        return "KeyConflict" if self.collide else "Synced"


CASES = [
    Case(i, kind, creation, deletion, collide)
    for i, (kind, creation, deletion, collide) in enumerate(
        itertools.product(TYPES, ("Owner", "Merge", "Orphan"), ("Delete", "Retain"), (True, False))
    )
]


def _decoded(secret: Any) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}


def _secret_body(case: Case) -> dict[str, Any]:
    annotations = dict(FOREIGN_ANNOTATIONS)
    if case.sa_token:
        annotations["kubernetes.io/service-account.name"] = "matrix"
    return {
        "metadata": {"name": case.name, "labels": FOREIGN_LABELS, "annotations": annotations},
        "type": case.type,
        "stringData": TYPES[case.type],
    }


def _reason(stack: Stack, namespace: str, case: Case) -> tuple[str, str] | None:
    condition = stack.ready(namespace, case.name)
    if condition is None:
        return None
    generation = stack.vaultsecret(namespace, case.name)["metadata"]["generation"]
    if condition.get("observedGeneration") != generation:
        return None
    return condition["reason"], condition["message"]


def _events(stack: Stack, namespace: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for event in stack.core.list_namespaced_event(namespace).items:
        if event.involved_object.kind == "VaultSecret":
            found.setdefault(event.involved_object.name, set()).add(event.reason)
    return found


def _check_secrets(
    stack: Stack, namespace: str, foreign: dict[str, dict[str, str]], round_: int
) -> list[str]:
    """Every difference from what the rules allow, after round_'s Vault data."""
    problems = []
    for case in CASES:
        secret = stack.core.read_namespaced_secret(case.name, namespace)
        data = _decoded(secret)
        theirs = foreign[case.name]
        for key, value in theirs.items():
            if data.get(key) != value:
                problems.append(f"{case}: foreign key {key!r} changed or lost")
        labels = secret.metadata.labels or {}
        annotations = secret.metadata.annotations or {}
        if any(labels.get(k) != v for k, v in FOREIGN_LABELS.items()):
            problems.append(f"{case}: foreign labels changed: {labels}")
        if any(annotations.get(k) != v for k, v in FOREIGN_ANNOTATIONS.items()):
            problems.append(f"{case}: foreign annotations changed")
        extra = set(data) - set(theirs)
        if case.expected_reason == "Synced":
            wanted = case.vault_data(theirs, round_)
            if {k: data.get(k) for k in wanted} != wanted or extra != set(wanted):
                problems.append(f"{case}: merged keys {sorted(extra)} do not hold round {round_}")
        elif extra or "vaultsync.io/vaultsecret" in annotations:
            problems.append(f"{case}: written although refused: {sorted(extra)}")
    return problems


@pytest.mark.timeout(900)
def test_pre_existing_secrets_of_every_type_lose_nothing(stack: Stack, tenant: str) -> None:
    stack.core.create_namespaced_service_account(tenant, {"metadata": {"name": "matrix"}})
    for case in CASES:
        stack.core.create_namespaced_secret(tenant, _secret_body(case))
    foreign = {
        case.name: eventually(
            lambda case=case: (
                _decoded(stack.core.read_namespaced_secret(case.name, tenant))
                if not case.sa_token
                or "token" in _decoded(stack.core.read_namespaced_secret(case.name, tenant))
                else None
            ),
            60,
            f"Secret {case.name} filled in",
        )
        for case in CASES
    }
    stack.values.update(  # the leak scan at the end looks for these (not the SA's namespace)
        v for data in foreign.values() for k, v in data.items() if k != "namespace" and len(v) >= 6
    )
    for case in CASES:
        stack.put(f"{tenant}/{case.path}", case.vault_data(foreign[case.name], 1))
    stack.apply(
        *(
            vault_secret(
                tenant,
                case.name,
                f"{tenant}/{case.path}",
                refreshInterval="3s",
                destination={
                    "name": case.name,
                    "creationPolicy": case.creation,
                    "deletionPolicy": case.deletion,
                    **({"type": case.type} if case.creation != "Merge" else {}),
                },
            )
            for case in CASES
        )
    )

    def all_reported() -> bool:
        wrong = []
        for case in CASES:
            seen = _reason(stack, tenant, case)
            if seen is None or seen[0] != case.expected_reason:
                wrong.append(f"{case.name}: {seen}")
        assert not wrong, wrong
        return True

    eventually(all_reported, 180, "every case reports its expected reason")
    for case in CASES:
        reason, message = _reason(stack, tenant, case) or ("", "")
        if reason == "KeyConflict":
            assert repr(case.collide_key(foreign[case.name])) in message
    # a failure says so in an Event (posted after the status write); a first successful sync
    # only in its status
    only_synced = [c.name for c in CASES if c.expected_reason == "Synced"]

    def missing() -> list[str]:
        events = _events(stack, tenant)
        return [c.name for c in CASES if c.expected_reason not in events.get(c.name, set())]

    eventually(lambda: missing() == only_synced, 30, "an Event for every failure")
    assert missing() == only_synced
    assert not _check_secrets(stack, tenant, foreign, 1)

    # a refresh on demand, then a Vault change: merged keys follow, nothing else moves
    for case in CASES:
        stack.cp.kubectl(
            "annotate",
            "vaultsecret",
            case.name,
            "-n",
            tenant,
            "vaultsync.io/refresh=1",
            "--overwrite",
        )
        stack.put(f"{tenant}/{case.path}", case.vault_data(foreign[case.name], 2))
    eventually(
        lambda: _check_secrets(stack, tenant, foreign, 2) == [] or None,
        90,
        "round 2 merged, nothing else changed",
    )
    eventually(all_reported, 60, "reasons unchanged after a Vault change")

    # delete every VaultSecret: each deletion finishes, our keys go only with Delete
    started = time.monotonic()
    stack.cp.kubectl("delete", "vaultsecrets", "--all", "-n", tenant, "--timeout=120s")
    took = time.monotonic() - started
    print(f"{len(CASES)} cases; deleting every VaultSecret took {took:.1f}s")
    assert took < 120, took
    for case in CASES:
        secret = stack.core.read_namespaced_secret(case.name, tenant)
        data = _decoded(secret)
        theirs = foreign[case.name]
        assert {k: data.get(k) for k in theirs} == theirs, f"{case}: foreign key lost on delete"
        ours = set(data) - set(theirs)
        merged = case.expected_reason == "Synced"
        expected = (
            set(case.vault_data(theirs, 2)) if merged and case.deletion == "Retain" else set()
        )
        assert ours == expected, f"{case}: after delete holds {sorted(ours)}"
        annotations = secret.metadata.annotations or {}
        assert not any(k.startswith("vaultsync.io/") for k in annotations), case
        assert (secret.metadata.labels or {}) == FOREIGN_LABELS or (
            case.sa_token and (secret.metadata.labels or {}).items() >= FOREIGN_LABELS.items()
        ), case


def test_a_release_the_api_server_refuses_still_finishes(stack: Stack, tenant: str) -> None:
    """A Merge that wrote a required key of a kubernetes.io/tls Secret (as an older vaultsync
    could): removing it on delete is refused (422), yet the deletion finishes and says why."""
    stack.core.create_namespaced_secret(
        tenant,
        {
            "metadata": {
                "name": "web-tls",
                "annotations": {
                    "vaultsync.io/vaultsecret": "web",
                    "vaultsync.io/managed-keys": '["tls.key"]',
                },
            },
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "their-certificate", "tls.key": "old-key-value"},
        },
    )
    stack.put(f"{tenant}/web", {"tls.key": "vault-key-value-1"})
    stack.apply(
        vault_secret(
            tenant,
            "web",
            f"{tenant}/web",
            destination={"name": "web-tls", "creationPolicy": "Merge"},
        )
    )
    eventually(
        lambda: (stack.secret_data(tenant, "web-tls") or {}).get("tls.key") == "vault-key-value-1",
        60,
        "the recorded key merged",
    )
    started = time.monotonic()
    stack.cp.kubectl("delete", "vaultsecret", "web", "-n", tenant, "--timeout=60s")
    assert time.monotonic() - started < 60
    data = stack.secret_data(tenant, "web-tls")
    assert data == {"tls.crt": "their-certificate", "tls.key": "vault-key-value-1"}
    annotations = stack.core.read_namespaced_secret("web-tls", tenant).metadata.annotations or {}
    assert not any(k.startswith("vaultsync.io/") for k in annotations)
    refused = eventually(
        lambda: [
            e
            for e in stack.core.list_namespaced_event(tenant).items
            if e.involved_object.name == "web" and e.reason == "ReleaseRefused"
        ],
        30,
        "the ReleaseRefused Event",
    )
    assert "tls.key" in refused[0].message and refused[0].type == "Warning"
    assert "refused the release" in stack.operator.log_text()
