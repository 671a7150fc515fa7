"""VaultAuditDevice guard rails: options that weaken audit, allowed file directories, and the
Warning reminder, as pure functions (the CEL rules and the Python checks agree)."""

import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.api.audit import (
    FALSE_SPELLINGS,
    KEPT_MODE_PATTERN,
    READABLE_MODE_PATTERN,
    TRUE_SPELLINGS,
    VAULT_AUDIT_DEVICE_RULES,
    AuditType,
    VaultAuditDeviceSpec,
    insecure_options,
)
from vaultsync.api.crds import KINDS, crd
from vaultsync.audit.guards import Reminders, file_path_problem, refusal
from vaultsync.audit.reconciler import VaultAuditDeviceReconciler
from vaultsync.reconcile import reconcile
from vaultsync.runtime.settings import Settings, parse_dirs
from vaultsync.runtime.view import View

FILE = AuditType.FILE
ALLOWED = parse_dirs("/vault/audit/")


def _flagged(options: Mapping[str, str], type_: AuditType = FILE) -> list[str]:
    return [str(item) for item in insecure_options(type_, options)]


@pytest.mark.parametrize("value", TRUE_SPELLINGS)
def test_every_true_spelling_of_log_raw_is_flagged(value: str) -> None:
    assert _flagged({"log_raw": value}) == [f"log_raw={value}"]


@pytest.mark.parametrize("value", FALSE_SPELLINGS)
def test_every_false_spelling_of_hmac_accessor_is_flagged(value: str) -> None:
    assert _flagged({"hmac_accessor": value}) == [f"hmac_accessor={value}"]


def test_go_parsebool_spellings() -> None:
    """Exactly what Go's strconv.ParseBool accepts (Vault refuses anything else)."""
    assert set(TRUE_SPELLINGS) == {"1", "t", "T", "TRUE", "true", "True"}
    assert set(FALSE_SPELLINGS) == {"0", "f", "F", "FALSE", "false", "False"}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"log_raw": "false"},
        {"log_raw": "0"},
        {"hmac_accessor": "true"},
        {"hmac_accessor": "1"},
        {"file_path": "/vault/audit/a.log", "format": "jsonx", "prefix": "x"},
        {"mode": "0600"},
        {"mode": "600"},
        {"mode": "0400"},
        {"mode": "0700"},
        {"mode": "0620"},  # group may write, not read: outside the rule (read bits only)
        {"mode": "1600"},
        {"mode": "0o644"},  # not a mode Vault can parse: Vault refuses it
        {"mode": "+644"},
        {"mode": ""},
    ],
)
def test_safe_options_are_not_flagged(options: dict[str, str]) -> None:
    assert _flagged(options) == []


@pytest.mark.parametrize(
    "mode", ["0644", "0640", "0604", "644", "0660", "0777", "4", "40", "0", "0000", "00"]
)
def test_modes_others_can_read_or_that_keep_the_file_mode_are_flagged(mode: str) -> None:
    assert _flagged({"mode": mode}) == [f"mode={mode}"]


def test_mode_matters_only_for_file_devices() -> None:
    assert _flagged({"mode": "0644", "address": "x:1"}, AuditType.SOCKET) == []
    assert _flagged({"log_raw": "true"}, AuditType.SYSLOG) == ["log_raw=true"]


@given(st.text(alphabet="01234567", min_size=1, max_size=11))
def test_the_cel_patterns_match_the_python_rule(mode: str) -> None:
    cel = bool(re.search(READABLE_MODE_PATTERN, mode) or re.search(KEPT_MODE_PATTERN, mode))
    value = int(mode, 8)
    assert cel == (value == 0 or bool(value & 0o044))
    assert cel == bool(_flagged({"mode": mode}))


def test_crd_rules_name_the_acknowledgement_and_the_spellings() -> None:
    [kind] = [k for k in KINDS if k.kind == "VaultAuditDevice"]
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec = schema["spec"]
    assert spec["properties"]["acknowledgeInsecureOptions"]["type"] == "boolean"
    assert "log_raw" in spec["properties"]["acknowledgeInsecureOptions"]["description"]
    assert schema["status"]["properties"]["insecureOptions"]["items"] == {"type": "string"}
    rules = spec["x-kubernetes-validations"]
    assert rules == VAULT_AUDIT_DEVICE_RULES
    guards = rules[1:]
    assert len(guards) == 3
    assert all(r["rule"].startswith("(has(self.acknowledgeInsecureOptions) && ") for r in guards)
    assert all("unless acknowledgeInsecureOptions is true" in r["message"] for r in guards)
    assert all(repr(s) in guards[0]["rule"] for s in TRUE_SPELLINGS)
    assert all(repr(s) in guards[1]["rule"] for s in FALSE_SPELLINGS)
    assert READABLE_MODE_PATTERN in guards[2]["rule"] and KEPT_MODE_PATTERN in guards[2]["rule"]


@pytest.mark.parametrize(
    "options",
    [
        {"file_path": "/vault/audit/audit.log"},
        {"file_path": "/vault/audit/team/a/audit.log"},
        {"file_path": "/vault/audit/./audit.log"},
        {"file_path": "/vault/audit/x/../audit.log"},
        {"file_path": "//vault/audit/audit.log"},
        {"file_path": "stdout"},
        {"file_path": "discard"},
        {"path": "/vault/audit/legacy.log"},
        {},  # Vault itself refuses a file device without a path
    ],
)
def test_allowed_file_paths(options: dict[str, str]) -> None:
    assert file_path_problem(FILE, options, ALLOWED) is None


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"file_path": "/etc/passwd"}, "'/etc/passwd' is outside"),
        ({"file_path": "/vault/audit/../../etc/passwd"}, "(that is '/etc/passwd') is outside"),
        ({"file_path": "/vault/audit/../x.log"}, "(that is '/vault/x.log') is outside"),
        ({"file_path": "/vault/auditx/a.log"}, "is outside"),
        ({"file_path": "/vault/audit"}, "is outside"),
        ({"file_path": "/vault/audit/"}, "(that is '/vault/audit') is outside"),
        ({"file_path": "audit.log"}, "is not an absolute path"),
        ({"file_path": "../vault/audit/a.log"}, "is not an absolute path"),
        ({"file_path": "STDOUT"}, "is not an absolute path"),
        ({"file_path": ""}, "is not an absolute path"),
        ({"path": "/etc/shadow"}, "options.path '/etc/shadow'"),
        ({"file_path": "/vault/audit/a.log", "path": "/etc/passwd"}, "options.path"),
    ],
)
def test_refused_file_paths(options: dict[str, str], said: str) -> None:
    problem = file_path_problem(FILE, options, ALLOWED)
    assert problem is not None and said in problem
    if "outside" in said:
        assert "VAULTSYNC_AUDIT_FILE_DIRS: /vault/audit/" in problem


def test_file_paths_matter_only_for_file_devices() -> None:
    assert file_path_problem(AuditType.SOCKET, {"file_path": "/etc/passwd"}, ALLOWED) is None


def test_allowed_directory_lists() -> None:
    assert file_path_problem(FILE, {"file_path": "/etc/passwd"}, parse_dirs("/")) is None
    nothing = file_path_problem(FILE, {"file_path": "/vault/audit/a.log"}, ())
    assert nothing is not None and "VAULTSYNC_AUDIT_FILE_DIRS: none" in nothing
    assert file_path_problem(FILE, {"file_path": "stdout"}, ()) is None
    two = parse_dirs("/var/log/vault, /vault/audit/")
    assert file_path_problem(FILE, {"file_path": "/var/log/vault/a.log"}, two) is None
    assert file_path_problem(FILE, {"file_path": "/var/log/a.log"}, two) is not None


def test_parse_dirs() -> None:
    assert parse_dirs("/vault/audit/") == ("/vault/audit",)
    assert parse_dirs(" /a/ , ,/b/../c//,/") == ("/a", "/c", "/")
    assert parse_dirs("") == ()
    with pytest.raises(ValueError, match="not an absolute directory"):
        parse_dirs("/vault/audit,logs")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTSYNC_AUDIT_FILE_DIRS", raising=False)
    assert Settings.from_env().audit_file_dirs == ("/vault/audit",)
    monkeypatch.setenv("VAULTSYNC_AUDIT_FILE_DIRS", "/var/log/vault/,/srv/audit")
    assert Settings.from_env().audit_file_dirs == ("/var/log/vault", "/srv/audit")
    monkeypatch.setenv("VAULTSYNC_AUDIT_FILE_DIRS", "")
    assert Settings.from_env().audit_file_dirs == ()


def _spec(**raw: Any) -> VaultAuditDeviceSpec:
    return VaultAuditDeviceSpec.model_validate({"type": "file", "path": "file", **raw})


def test_refusal_reasons() -> None:
    assert refusal(_spec(options={"file_path": "/vault/audit/a.log"}), ALLOWED) is None
    insecure = refusal(_spec(options={"file_path": "stdout", "log_raw": "true"}), ALLOWED)
    assert insecure is not None
    assert (insecure.ready, insecure.reason, insecure.retryable) == (
        False,
        "InsecureOptions",
        False,
    )
    assert "log_raw=true (secrets in requests and responses" in insecure.message
    assert "Nothing enabled: set spec.acknowledgeInsecureOptions to true" in insecure.message
    acked = _spec(
        options={"file_path": "stdout", "log_raw": "true"}, acknowledgeInsecureOptions=True
    )
    assert refusal(acked, ALLOWED) is None
    outside = _spec(options={"file_path": "/etc/passwd", "log_raw": "true"})
    refused = refusal(outside, ALLOWED)
    assert refused is not None and refused.reason == "FilePathNotAllowed"
    assert refused.message.endswith("nothing enabled") and not refused.retryable
    both = _spec(
        options={"file_path": "/etc/passwd", "log_raw": "1"}, acknowledgeInsecureOptions=True
    )
    assert refusal(both, ALLOWED) is not None, "no acknowledgement lets a file out"


def test_reminders_repeat_only_after_the_interval_or_on_change() -> None:
    now = [100.0]
    reminders = Reminders(3000, clock=lambda: now[0])
    assert reminders.due("uid", ("log_raw=true",))
    now[0] += 60
    assert not reminders.due("uid", ("log_raw=true",)), "not at every resync"
    assert reminders.due("other", ("log_raw=true",)), "per object"
    now[0] += 2900
    assert not reminders.due("uid", ("log_raw=true",))
    now[0] += 100
    assert reminders.due("uid", ("log_raw=true",)), "again once the interval has passed"
    assert reminders.due("uid", ("log_raw=true", "mode=0644")), "at once when it changes"
    reminders.forget("uid")
    assert reminders.due("uid", ("log_raw=true", "mode=0644")), "at once after a forget"


class _Recorder:
    """Stands in for the Kubernetes API clients: records status patches and Events."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[Any] = []

    def patch_status(self, *args: Any) -> None:
        self.statuses.append(args[-1])

    def create_namespaced_event(self, _namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)


class _NoVault:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Vault was used ({name}) for a refused spec")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"file_path": "/etc/passwd"}, "FilePathNotAllowed"),
        ({"file_path": "/vault/audit/../../etc/passwd"}, "FilePathNotAllowed"),
        ({"file_path": "/vault/audit/a.log", "hmac_accessor": "F"}, "InsecureOptions"),
        ({"file_path": "/vault/audit/a.log", "mode": "0644"}, "InsecureOptions"),
    ],
)
def test_a_refused_spec_never_reaches_vault(options: dict[str, str], reason: str) -> None:
    recorder = _Recorder()
    kube: Any = type("Kube", (), {"core": recorder, "custom": recorder, "events": None})()
    settings = Settings("ops", 0, 1, 1, 1, audit_file_dirs=ALLOWED)
    reconciler = VaultAuditDeviceReconciler(kube, _NoVault(), settings)  # type: ignore[arg-type]
    body = {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultAuditDevice",
        "metadata": {"name": "a", "uid": "u1", "generation": 1},
        "spec": {"type": "file", "path": "a", "options": options},
    }
    outcome = reconcile(kube, reconciler, body, View()).outcome
    assert (outcome.ready, outcome.reason) == (False, reason)
    [status] = recorder.statuses
    assert status["managed"] is False and "insecureOptions" not in status
    assert [(e["type"], e["reason"]) for e in recorder.events] == [("Warning", reason)]
