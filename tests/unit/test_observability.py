"""Metrics and logs: what the operator exports and how it says it, without a cluster."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hvac.exceptions as hv
import kopf
import pytest
import requests
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from vaultsync import cli
from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError
from vaultsync.vault import kv, observe, policies
from vaultsync.vault.client import Endpoint
from vaultsync.vault.errors import AuthenticationFailed, SecretNotFound, VaultUnavailable
from vaultsync.vault.sessions import Identity, KubernetesLogin, Sessions, TokenLogin

ROOT = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --------------------------------------------------------------------------- Vault operations


class FakeKV:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def read_secret_version(self, **_: Any) -> Any:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def kv_client(outcome: Any) -> Any:
    return SimpleNamespace(secrets=SimpleNamespace(kv=SimpleNamespace(v2=FakeKV(outcome))))


def test_a_vault_read_is_timed_by_operation_only() -> None:
    before = sample("vaultsync_vault_request_duration_seconds_count", operation="kv_read")
    body = {"data": {"data": {"k": "v"}, "metadata": {"version": 3, "created_time": "2024-01-01"}}}
    assert kv.read(kv_client(body), "secret", "team-a/db").version == 3
    after = sample("vaultsync_vault_request_duration_seconds_count", operation="kv_read")
    assert after == before + 1


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (hv.Forbidden("permission denied"), "PermissionDenied"),
        (hv.InvalidPath(), "SecretNotFound"),
        (hv.VaultDown(), "VaultSealed"),
        (requests.exceptions.ConnectionError("refused"), "VaultUnavailable"),
    ],
)
def test_a_failed_vault_operation_counts_its_reason(raised: Exception, reason: str) -> None:
    labels = {"operation": "kv_read", "reason": reason}
    before = sample("vaultsync_vault_request_errors_total", **labels)
    timed_before = sample("vaultsync_vault_request_duration_seconds_count", operation="kv_read")
    with pytest.raises(SyncError):
        kv.read(kv_client(raised), "secret", "team-a/db")
    assert sample("vaultsync_vault_request_errors_total", **labels) == before + 1
    timed = sample("vaultsync_vault_request_duration_seconds_count", operation="kv_read")
    assert timed == timed_before + 1


def test_an_expected_answer_is_no_error() -> None:
    """A policy that does not exist yet reads as None: normal work, not a failure."""

    class Sys:
        def read_acl_policy(self, name: str) -> Any:
            raise hv.InvalidPath()

    labels = {"operation": "policy_read", "reason": "SecretNotFound"}
    errors = sample("vaultsync_vault_request_errors_total", **labels)
    assert policies.read(SimpleNamespace(sys=Sys()), "tenant-a") is None  # type: ignore[arg-type]
    assert sample("vaultsync_vault_request_errors_total", **labels) == errors
    assert sample("vaultsync_vault_request_duration_seconds_count", operation="policy_read") >= 1


def test_operations_are_a_closed_set() -> None:
    with pytest.raises(ValueError, match="unknown Vault operation"):
        observe.request("read secret/team-a/db")
    with pytest.raises(ValueError, match="unknown Vault operation"), observe.timed("kv"):
        pass


# --------------------------------------------------------------------------- logins


class Credentials:
    def __init__(self, error: SyncError | None = None) -> None:
        self.error = error

    def service_account_token(self, *_: Any) -> str:
        if self.error:
            raise self.error
        return "a.jwt.token"

    def secret_value(self, *_: Any) -> str:
        if self.error:
            raise self.error
        return "s.token"


ENDPOINT = Endpoint("http://127.0.0.1:1")
K8S = Identity(ENDPOINT, KubernetesLogin("kubernetes", "team-a", "team-a", "default"))


def test_a_refused_login_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    class Auth:
        def login(self, *_: Any, **__: Any) -> Any:
            raise hv.InvalidRequest(errors=["invalid role name"])

    fake = SimpleNamespace(auth=SimpleNamespace(kubernetes=Auth()))
    monkeypatch.setattr("vaultsync.vault.sessions.new_client", lambda *_, **__: fake)
    labels = {"method": "kubernetes", "reason": "AuthenticationFailed"}
    before = sample("vaultsync_vault_login_failures_total", **labels)
    errors = sample(
        "vaultsync_vault_request_errors_total", operation="login", reason="AuthenticationFailed"
    )
    logins = sample("vaultsync_vault_logins_total", method="kubernetes")
    with pytest.raises(AuthenticationFailed):
        Sessions(Credentials()).client(K8S)
    assert sample("vaultsync_vault_login_failures_total", **labels) == before + 1
    assert sample(
        "vaultsync_vault_request_errors_total", operation="login", reason="AuthenticationFailed"
    ) == (errors + 1)
    assert sample("vaultsync_vault_logins_total", method="kubernetes") == logins


def test_an_unreachable_vault_at_login_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    class Auth:
        def login(self, *_: Any, **__: Any) -> Any:
            raise requests.exceptions.ConnectionError("refused")

    fake = SimpleNamespace(auth=SimpleNamespace(kubernetes=Auth()))
    monkeypatch.setattr("vaultsync.vault.sessions.new_client", lambda *_, **__: fake)
    labels = {"method": "kubernetes", "reason": "VaultUnavailable"}
    before = sample("vaultsync_vault_login_failures_total", **labels)
    with pytest.raises(VaultUnavailable):
        Sessions(Credentials()).client(K8S)
    assert sample("vaultsync_vault_login_failures_total", **labels) == before + 1


def test_missing_login_material_is_a_login_failure() -> None:
    token = Identity(ENDPOINT, TokenLogin("team-a", "vault-token", "token"))
    missing = SyncError("token Secret team-a/vault-token: NotFound", reason="AuthenticationFailed")
    labels = {"method": "token", "reason": "AuthenticationFailed"}
    before = sample("vaultsync_vault_login_failures_total", **labels)
    with pytest.raises(SyncError):
        Sessions(Credentials(missing)).client(token)
    assert sample("vaultsync_vault_login_failures_total", **labels) == before + 1


# --------------------------------------------------------------------------- objects, build


def test_objects_are_counted_by_state_not_listed() -> None:
    states = metrics.ObjectStates()
    states.set("VaultSecret", "a", "db", ready=True, reason="Synced")
    states.set("VaultSecret", "b", "db", ready=True, reason="Synced")
    states.set("VaultSecret", "b", "api", ready=False, reason="SecretNotFound")
    states.set("VaultPolicy", "", "tenants", ready=True, reason="Synced")
    states.set("VaultSecret", "b", "api", ready=False, reason="PermissionDenied")  # replaces
    (family,) = states.collect()
    assert {(tuple(s.labels.values()), s.value) for s in family.samples} == {
        (("VaultPolicy", "true", "Synced"), 1),
        (("VaultSecret", "true", "Synced"), 2),
        (("VaultSecret", "false", "PermissionDenied"), 1),
    }
    states.forget("VaultSecret", "b", "api")
    states.forget("VaultSecret", "b", "missing")  # never seen: nothing happens
    (family,) = states.collect()
    assert {s.labels["reason"] for s in family.samples} == {"Synced"}


def test_build_info_names_the_version() -> None:
    (info,) = [
        s
        for f in text_string_to_metric_families(generate_latest().decode())
        for s in f.samples
        if s.name == "vaultsync_build_info"
    ]
    assert info.value == 1
    assert info.labels == {"version": metrics.version()}
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|unknown", info.labels["version"])


def test_vault_metrics_have_no_label_that_could_name_a_path_or_identity() -> None:
    allowed = {"operation", "reason", "method", "result"}
    for family in text_string_to_metric_families(generate_latest().decode()):
        if family.name.startswith("vaultsync_vault_"):
            for s in family.samples:
                assert set(s.labels) - {"le"} <= allowed, (s.name, s.labels)


# --------------------------------------------------------------------------- docs


def test_docs_list_every_metric_its_labels_and_the_operations() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    exported = {}
    for family in REGISTRY.collect():
        if family.name.startswith("vaultsync_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            exported[name] = {label for s in family.samples for label in s.labels} - {"le"}
    for metric in vars(metrics).values():  # label names also of metrics with no samples yet
        if isinstance(metric, MetricWrapperBase):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            exported[name] |= set(metric._labelnames)
    assert {"vaultsync_objects", "vaultsync_build_info"} <= set(exported)
    rows = {
        match[1]: match[0]
        for match in re.findall(r"^(\| `(vaultsync_[a-z_]+)` \|.*)$", text, re.MULTILINE)
    }
    assert sorted(rows) == sorted(exported), "docs/metrics.md: one table row per metric"
    for name, labels in exported.items():
        for label in labels:
            assert f"`{label}`" in rows[name], f"docs/metrics.md: {name} label {label}"
    for operation in observe.OPERATIONS:
        assert f"`{operation}`" in text, f"docs/metrics.md does not list operation {operation}"


# --------------------------------------------------------------------------- logs


@pytest.fixture
def root_logging() -> Iterator[io.StringIO]:
    """The root logger's handlers and level restored after the test; stderr captured."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_logs_are_one_object_per_line(
    root_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr", root_logging)
    cli.configure_logging("json", verbose=False)
    log = logging.getLogger("vaultsync.test")
    log.info("synced %s", "team-a/db")
    log.debug("not at INFO")
    try:
        raise SecretNotFound("read secret/team-a/db: no such secret or version")
    except SecretNotFound:
        log.exception("reconcile failed")
    body = kopf.Body(
        {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": "db", "namespace": "team-a", "uid": "u-1"},
        }
    )
    kopf.ObjectLogger(body=body, settings=kopf.OperatorSettings()).warning("about the object")
    lines = [json.loads(line) for line in root_logging.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "synced team-a/db",
        "reconcile failed",
        "about the object",
    ]
    assert [line["severity"] for line in lines] == ["info", "error", "warn"]
    assert lines[0]["logger"] == "vaultsync.test"
    assert "timestamp" in lines[0]
    assert "SecretNotFound" in lines[1]["exc_info"]
    assert lines[2]["object"] == {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultSecret",
        "name": "db",
        "uid": "u-1",
        "namespace": "team-a",
    }
    assert lines[2]["logger"] == "kopf.objects"


def test_plain_logs_stay_text(root_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", root_logging)
    logging.getLogger().handlers.clear()
    cli.configure_logging("plain", verbose=True)
    logging.getLogger("vaultsync.test").debug("hello")
    (line,) = root_logging.getvalue().splitlines()
    assert line.endswith(" DEBUG vaultsync.test: hello")


@pytest.mark.parametrize("value", ["xml", "JSON "])
def test_a_bad_log_format_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("VAULTSYNC_LOG_FORMAT", value)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--standalone"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["run", "--log-format", value])
