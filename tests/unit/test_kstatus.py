"""What kstatus (Flux's health checks) reads from our objects: the status a new object reads
before the operator looks, Reconciling/Stalled beside Ready, and which reasons stall.

e2e/test_kstatus.py measures the result with sigs.k8s.io/cli-utils on live objects.
"""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.schemas import nodes
from vaultsync.api.crds import KINDS, UNOBSERVED, Kind, crd
from vaultsync.api.secret import Destination, VaultSecretSpec
from vaultsync.connections.identity import identity_for
from vaultsync.kube import report, secrets
from vaultsync.kube.credentials import CredentialsUnavailable
from vaultsync.kube.hmackey import HmacKeyUnavailable
from vaultsync.runtime.conditions import READY, RECONCILING, STALLED, progress
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome
from vaultsync.runtime.view import View
from vaultsync.secrets.destination import OWNER_ANNOTATION, Owner, plan
from vaultsync.secrets.render import render
from vaultsync.secrets.rotation.intent import MetadataFull
from vaultsync.vault import errors
from vaultsync.vault.audit import AuditAPIDisabled, AuditPathInUse
from vaultsync.vault.policies import PolicyRejected
from vaultsync.vault.roles import RoleRejected
from vaultsync.vault.transit import DecryptDenied, DecryptFailed, TransitKeyNotFound

# ---- a new object's status, before the operator looks ----------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_a_status_not_written_yet_reads_unobserved(kind: Kind) -> None:
    """The API server fills in status {observedGeneration: 0} until the operator writes one;
    both defaults are needed (measured: with only the inner one there is no status at all,
    with only the outer one an empty status, and kstatus says Current for either)."""
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status = schema["properties"]["status"]
    assert status["default"] == {}
    assert UNOBSERVED == {"observedGeneration": 0}
    assert status["properties"]["observedGeneration"]["default"] == 0
    defaults = [node for node in nodes(schema) if "default" in node]
    assert defaults == [status, status["properties"]["observedGeneration"]], "none in spec"
    assert schema["properties"]["metadata"] == {"type": "object"}, (
        "a CRD with defaults may say nothing more of metadata (the API server refuses it)"
    )


# ---- Reconciling and Stalled beside Ready --------------------------------------------------


def test_progress_conditions() -> None:
    assert [(u.type, u.status) for u in progress(True, True, "Synced", "ok")] == [
        (RECONCILING, None),
        (STALLED, None),
    ]
    transient = progress(False, True, "VaultUnavailable", "down")
    assert [(u.type, u.status, u.reason, u.message) for u in transient] == [
        (RECONCILING, True, "VaultUnavailable", "down"),
        (STALLED, None, "", ""),
    ]
    permanent = progress(False, False, "SecretNotFound", "gone")
    assert [(u.type, u.status, u.reason) for u in permanent] == [
        (STALLED, True, "SecretNotFound"),
        (RECONCILING, None, ""),
    ]


class Recorded:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.status: dict[str, Any] = {"observedGeneration": 0}
        monkeypatch.setattr("vaultsync.kube.status.patch", self._patch)
        monkeypatch.setattr("vaultsync.kube.events.emit", lambda *_a, **_k: None)

    def _patch(self, _kube: Any, _plural: str, _ns: str | None, _name: str, new: Any) -> None:
        self.status = dict(new)

    def record(self, outcome: Outcome, generation: int = 1) -> dict[str, str]:
        body = {
            "kind": "VaultSecret",
            "metadata": {"name": "db", "namespace": "t", "generation": generation},
            "status": self.status,
        }
        report.record(None, "vaultsecrets", body, outcome, {})  # type: ignore[arg-type]
        assert self.status["observedGeneration"] == generation
        return {c["type"]: c["status"] for c in self.status["conditions"]}


def test_record_sets_and_clears_reconciling_and_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = Recorded(monkeypatch)
    transient = Outcome.failed(errors.VaultUnavailable("cannot reach Vault"))
    assert recorded.record(transient) == {READY: "False", RECONCILING: "True"}
    permanent = Outcome.failed(errors.SecretNotFound("no such secret"))
    assert recorded.record(permanent) == {READY: "False", STALLED: "True"}
    stalled = next(c for c in recorded.status["conditions"] if c["type"] == STALLED)
    assert (stalled["reason"], stalled["message"]) == ("SecretNotFound", "no such secret")
    assert recorded.record(Outcome(True, "Synced", "ok"), generation=2) == {READY: "True"}


# ---- which reasons stall (docs/gitops.md has the table) ---------------------------------------

RETRYABLE: list[tuple[SyncError, bool]] = [
    # outages and races: they heal by themselves
    (errors.VaultError("x"), True),
    (errors.VaultUnavailable("x"), True),
    (errors.VaultSealed("x"), True),
    (errors.InvalidRequest("x"), True),
    (errors.CheckAndSetFailed("x"), True),
    (AuditPathInUse("x"), True),
    (HmacKeyUnavailable("x"), True),
    # grants and logins: another object of the same apply (a VaultPolicy) may bring them
    (errors.PermissionDenied("x"), True),
    (errors.RotationDenied("x"), True),
    (errors.AuthenticationFailed("x"), True),
    (CredentialsUnavailable("x"), True),
    (DecryptDenied("x"), True),
    (TransitKeyNotFound("x"), True),  # a VaultTransitKey of the same apply may create it
    # what a person must change: the spec, the Vault data or configuration it names
    (errors.SecretNotFound("x"), False),
    (errors.SecretVersionDeleted("x"), False),
    (errors.PasswordPolicyNotFound("x"), False),
    (MetadataFull("x"), False),
    (PolicyRejected("x"), False),
    (RoleRejected("x"), False),
    (AuditAPIDisabled("x"), False),
    (DecryptFailed("x"), False),
]


@pytest.mark.parametrize(("error", "retryable"), RETRYABLE, ids=lambda e: getattr(e, "reason", ""))
def test_vault_errors(error: SyncError, retryable: bool) -> None:
    assert error.retryable is retryable
    assert Outcome.failed(error).retryable is retryable


def _raises(call: Callable[[], object]) -> SyncError:
    with pytest.raises(SyncError) as caught:
        call()
    return caught.value


def _identity(auths: dict[Any, Any], connections: dict[Any, Any], pem: str = "") -> Any:
    return identity_for(
        "team-b",
        "default",
        View(
            auths=lambda ns, name: auths.get((ns, name)),
            connections=lambda ns, name: connections.get((ns, name)),
        ),
        read_secret=lambda *_: pem,
        operator_namespace="ops",
    )


K8S = {"kubernetes": {"role": "r"}}
CONNECTION = {(None, "default"): {"address": "https://vault:8200"}}
BAD_CA = {
    (None, "default"): {
        "address": "https://vault:8200",
        "caCertSecretRef": {"namespace": "ops", "name": "ca", "key": "ca.crt"},
    }
}


@pytest.mark.parametrize(
    ("auths", "connections", "reason", "retryable"),
    [
        ({}, CONNECTION, "AuthNotFound", True),
        ({("ops", "default"): K8S}, CONNECTION, "AuthNotAllowed", True),
        ({("team-b", "default"): K8S}, {}, "ConnectionNotFound", True),
        ({("team-b", "default"): {}}, CONNECTION, "InvalidAuth", False),
        ({("team-b", "default"): {**K8S, "bogus": 1}}, CONNECTION, "InvalidAuth", False),
        ({("team-b", "default"): K8S}, {(None, "default"): {}}, "InvalidConnection", False),
        ({("team-b", "default"): K8S}, BAD_CA, "InvalidCACertificate", False),
    ],
)
def test_references(auths: Any, connections: Any, reason: str, retryable: bool) -> None:
    """A VaultAuth or VaultConnection not there (yet) is retried; one that is there but
    invalid stalls its users with it until a person fixes it."""
    error = _raises(lambda: _identity(auths, connections, pem="not a certificate"))
    assert (error.reason, error.retryable) == (reason, retryable)


OWNER = Owner("db", "team-a", "uid-1")
KEY = b"k" * 32


def _secret(type_: str = "Opaque", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "db", **meta}, "type": type_, "data": {"k": "dg=="}}


@pytest.mark.parametrize(
    ("current", "destination", "reason", "retryable"),
    [
        (None, {"creationPolicy": "Merge"}, "DestinationMissing", True),
        (_secret(), {}, "SecretConflict", False),
        (
            _secret(annotations={OWNER_ANNOTATION: "other"}),
            {"creationPolicy": "Merge"},
            "SecretConflict",
            False,
        ),
        (
            _secret("kubernetes.io/tls", ownerReferences=[{"uid": "uid-1", "name": "db"}]),
            {},
            "SecretTypeImmutable",
            False,
        ),
        (_secret(), {"creationPolicy": "Merge"}, "KeyConflict", False),
        (
            _secret("kubernetes.io/service-account-token"),
            {"creationPolicy": "Merge"},
            "SecretTypeNotMergeable",
            False,
        ),
    ],
)
def test_destinations(
    current: dict[str, Any] | None, destination: dict[str, Any], reason: str, retryable: bool
) -> None:
    """A Secret created by someone else later (Merge) is waited for; one in the way needs a
    person to delete it or to change the spec."""
    dest = Destination.model_validate({"name": "db", **destination})
    error = _raises(lambda: plan(current, dest, OWNER, {"k": b"w"}, key=KEY))
    assert (error.reason, error.retryable) == (reason, retryable)


@pytest.mark.parametrize(
    ("spec", "data", "reason"),
    [
        ({"keys": [{"from": "missing"}]}, {"k": "v"}, "KeyNotFound"),
        ({}, {"bad key": "v"}, "InvalidKey"),
        ({"keys": [{"from": "k", "decodeBase64": True}]}, {"k": "%%"}, "InvalidBase64"),
        ({"template": {"t": "{{ nope.x }}"}}, {"k": "v"}, "TemplateError"),
        ({}, {"k": "v" * (1024 * 1024 + 1)}, "SecretTooLarge"),
    ],
)
def test_data_that_makes_no_secret(spec: dict[str, Any], data: dict[str, Any], reason: str) -> None:
    """Only a change of the spec or of the Vault data helps."""
    parsed = VaultSecretSpec.model_validate({"path": "a/b", "destination": {"name": "d"}, **spec})
    error = _raises(lambda: render(parsed, data))
    assert (error.reason, error.retryable) == (reason, False)


@pytest.mark.parametrize(
    ("operation", "status", "reason", "retryable"),
    [
        ("create", 422, "SecretInvalid", False),
        ("replace", 422, "SecretInvalid", False),
        ("create", 409, "AlreadyExists", True),
        ("replace", 409, "Conflict", True),
        ("create", 500, "KubernetesError", True),
    ],
)
def test_secret_writes(operation: str, status: int, reason: str, retryable: bool) -> None:
    """The API server refusing the content refuses the same content again; a conflict or an
    error of the server may pass."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise ApiException(status=status, reason="refused")

    core = SimpleNamespace(create_namespaced_secret=refuse, replace_namespaced_secret=refuse)
    write = getattr(secrets, operation)
    kube = SimpleNamespace(core=core, field_manager="vaultsync")
    error = _raises(lambda: write(kube, "t", {"metadata": {"name": "db"}}))
    assert (error.reason, error.retryable) == (reason, retryable)
