"""VaultAuditDevice guard rails against a real OpenBao: the reconciler (with the Kubernetes API
stubbed) refuses what it must before Vault sees it, and OpenBao itself shows that the options
the guards flag are the ones that weaken audit."""

import base64
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from vaultsync.api.audit import FALSE_SPELLINGS, TRUE_SPELLINGS, AuditType, insecure_options
from vaultsync.audit.guards import file_path_problem
from vaultsync.audit.reconciler import INSECURE_EVENT, VaultAuditDeviceReconciler
from vaultsync.kube.api import Kube
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.reconcile import reconcile
from vaultsync.runtime.outcome import Outcome
from vaultsync.runtime.settings import Settings, parse_dirs
from vaultsync.runtime.view import View
from vaultsync.vault import audit
from vaultsync.vault.audit import AuditDevice
from vaultsync.vault.sessions import Sessions

pytestmark = pytest.mark.integration
OPERATOR_NAMESPACE = "vaultsync-system"


class FakeKubeApi:
    """The Kubernetes calls the reconciler makes: the token Secret, status patches, Events."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.statuses: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> dict[str, Any]:
        return {"data": {"token": base64.b64encode(self.token.encode()).decode()}}

    def patch_status(self, *args: Any) -> None:
        self.statuses.append(args[-1])

    def create_namespaced_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)

    def warnings(self) -> list[str]:
        return [e["message"] for e in self.events if e["reason"] == INSECURE_EVENT]


class Operator:
    """The audit reconciler as the operator runs it, logging in with a token VaultAuth."""

    def __init__(self, root: hvac.Client, allowed: Path) -> None:
        self.api = FakeKubeApi(root.token)
        kube = Kube(self.api, self.api)  # type: ignore[arg-type]
        settings = Settings(
            OPERATOR_NAMESPACE, 0, 1, 1, 1, audit_file_dirs=parse_dirs(str(allowed))
        )
        self.reconciler = VaultAuditDeviceReconciler(
            kube, Sessions(KubeCredentials(kube)), settings
        )
        self.kube = kube
        auth = {"token": {"secretRef": {"name": "root-token", "key": "token"}}}
        connection = {"address": root.url}
        self.view = View(
            auths=lambda ns, name: auth if (ns, name) == (OPERATOR_NAMESPACE, "admin") else None,
            connections=lambda ns, name: connection if name == "default" else None,
        )
        self.status: dict[str, Any] = {}

    def sync(self, name: str, **spec: Any) -> Outcome:
        body = {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultAuditDevice",
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"authRef": "admin", "type": "file", "path": name, **spec},
            "status": self.status,
        }
        outcome = reconcile(self.kube, self.reconciler, body, self.view).outcome
        for patch in self.api.statuses:
            self.status = {k: v for k, v in {**self.status, **patch}.items() if v is not None}
        self.api.statuses.clear()
        return outcome


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    directory = tmp_path / "audit"
    directory.mkdir()
    return directory


@pytest.fixture
def operator(root: hvac.Client, allowed: Path) -> Operator:
    return Operator(root, allowed)


@pytest.fixture
def name(root: hvac.Client) -> Iterator[str]:
    path = f"guard-{uuid.uuid4().hex[:8]}"
    yield path
    audit.disable(root, path)


def _enabled(root: hvac.Client) -> dict[str, AuditDevice]:
    return audit.list_devices(root)


def test_a_system_file_is_refused_and_left_alone(
    root: hvac.Client, operator: Operator, name: str
) -> None:
    before = Path("/etc/passwd").read_bytes(), os.stat("/etc/passwd").st_mode
    outcome = operator.sync(name, options={"file_path": "/etc/passwd"})
    assert (outcome.ready, outcome.reason, outcome.retryable) == (
        False,
        "FilePathNotAllowed",
        False,
    )
    assert "'/etc/passwd' is outside" in outcome.message
    assert name not in _enabled(root)
    assert operator.status["managed"] is False
    assert (Path("/etc/passwd").read_bytes(), os.stat("/etc/passwd").st_mode) == before


def test_a_dotdot_escape_is_refused(
    root: hvac.Client, operator: Operator, name: str, allowed: Path
) -> None:
    escaped = allowed.parent / f"escaped-{name}.log"
    outcome = operator.sync(name, options={"file_path": f"{allowed}/../{escaped.name}"})
    assert (outcome.ready, outcome.reason) == (False, "FilePathNotAllowed")
    assert f"(that is '{escaped}') is outside" in outcome.message
    assert name not in _enabled(root)
    assert not escaped.exists()


def test_insecure_options_without_acknowledgement_enable_nothing(
    root: hvac.Client, operator: Operator, name: str, allowed: Path
) -> None:
    outcome = operator.sync(
        name, options={"file_path": str(allowed / "a.log"), "log_raw": "true", "mode": "0644"}
    )
    assert (outcome.ready, outcome.reason) == (False, "InsecureOptions")
    assert "log_raw=true" in outcome.message and "mode=0644" in outcome.message
    assert "spec.acknowledgeInsecureOptions" in outcome.message
    assert name not in _enabled(root)
    assert not (allowed / "a.log").exists()
    assert operator.api.warnings() == []


def test_acknowledged_options_are_enabled_with_a_warning_not_at_every_resync(
    root: hvac.Client, operator: Operator, name: str, allowed: Path
) -> None:
    options = {"file_path": str(allowed / "raw.log"), "log_raw": "true"}
    first = operator.sync(name, options=options, acknowledgeInsecureOptions=True)
    assert (first.ready, first.reason) == (True, "Enabled")
    assert "weakened as spec.acknowledgeInsecureOptions accepts: log_raw=true" in first.message
    assert _enabled(root)[name].options == options
    assert operator.status["insecureOptions"] == ["log_raw=true"]
    [warning] = operator.api.warnings()
    assert f"audit device {name!r} is enabled with options that weaken" in warning
    [event] = [e for e in operator.api.events if e["reason"] == INSECURE_EVENT]
    assert event["type"] == "Warning"

    for _ in range(3):
        steady = operator.sync(name, options=options, acknowledgeInsecureOptions=True)
        assert (steady.ready, steady.reason) == (True, "Enabled")
    assert len(operator.api.warnings()) == 1, "one Warning, not one per resync"
    operator.reconciler.reminders.every = 0  # the interval has passed
    operator.sync(name, options=options, acknowledgeInsecureOptions=True)
    assert len(operator.api.warnings()) == 2


def test_stdout_and_discard_are_allowed(root: hvac.Client, operator: Operator, name: str) -> None:
    outcome = operator.sync(name, options={"file_path": "discard"})
    assert (outcome.ready, outcome.reason) == (True, "Enabled")
    assert name in _enabled(root)
    assert "insecureOptions" not in operator.status


# What OpenBao itself does with the options: the guards flag exactly what weakens audit.


@pytest.fixture
def enable(root: hvac.Client) -> Iterator[Any]:
    paths: list[str] = []

    def enable_device(options: dict[str, str]) -> str:
        path = f"guard-raw-{uuid.uuid4().hex[:8]}"
        root.sys.enable_audit_device("file", path=path, options=options)
        paths.append(path)
        return path

    yield enable_device
    for path in paths:
        audit.disable(root, path)


def _entries(log: Path) -> str:
    return "\n".join(json.dumps(json.loads(line)) for line in log.read_text().splitlines())


@pytest.mark.parametrize("value", [*TRUE_SPELLINGS, "false", "0"])
def test_log_raw_spellings_openbao_reads_as_true(
    root: hvac.Client, enable: Any, tmp_path: Path, value: str
) -> None:
    log = tmp_path / "audit.log"
    enable({"file_path": str(log), "log_raw": value})
    root.auth.token.lookup_self()
    raw = root.token in _entries(log)
    assert raw == bool(insecure_options(AuditType.FILE, {"log_raw": value}))


@pytest.mark.parametrize("value", [*FALSE_SPELLINGS, "true", "1"])
def test_hmac_accessor_spellings_openbao_reads_as_false(
    root: hvac.Client, enable: Any, tmp_path: Path, value: str
) -> None:
    log = tmp_path / "audit.log"
    enable({"file_path": str(log), "hmac_accessor": value})
    accessor = root.auth.token.lookup_self()["data"]["accessor"]
    root.auth.token.lookup_self()
    plain = accessor in _entries(log)
    assert plain == bool(insecure_options(AuditType.FILE, {"hmac_accessor": value}))


@pytest.mark.parametrize("value", ["yes", "on", " true", "TRUE "])
def test_openbao_refuses_other_spellings(root: hvac.Client, tmp_path: Path, value: str) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest):
        root.sys.enable_audit_device(
            "file", path="guard-never", options={"file_path": str(tmp_path / "x"), "log_raw": value}
        )
    assert "guard-never" not in _enabled(root)


@pytest.mark.parametrize("mode", ["0600", "0400", "0700", "0640", "0604", "0644", "0660"])
def test_file_modes_openbao_sets(enable: Any, tmp_path: Path, mode: str) -> None:
    log = tmp_path / "audit.log"
    enable({"file_path": str(log), "mode": mode})
    actual = stat.S_IMODE(log.stat().st_mode)
    assert actual & 0o444 == int(mode, 8) & 0o444  # the read bits as asked (OpenBao drops x)
    assert bool(actual & 0o044) == bool(insecure_options(AuditType.FILE, {"mode": mode}))


def test_mode_zero_keeps_a_readable_file_readable(enable: Any, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.touch()
    log.chmod(0o644)
    enable({"file_path": str(log), "mode": "0"})
    assert stat.S_IMODE(log.stat().st_mode) == 0o644
    assert [str(i) for i in insecure_options(AuditType.FILE, {"mode": "0"})] == ["mode=0"]


def test_openbao_writes_where_the_older_path_option_says(
    enable: Any, tmp_path: Path, allowed: Path
) -> None:
    """`path` is an alias of file_path, so the guard checks it too."""
    log = tmp_path / "legacy.log"
    enable({"path": str(log)})
    assert log.exists()
    problem = file_path_problem(AuditType.FILE, {"path": str(log)}, parse_dirs(str(allowed)))
    assert problem is not None and "options.path" in problem
