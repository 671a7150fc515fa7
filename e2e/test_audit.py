"""VaultAuditDevice end to end, against the stack's OpenBao (API-created devices allowed) and a
second OpenBao without `unsafe_allow_api_audit_creation` that declares a device in its config."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from e2e.harness.conditions import ready_is
from e2e.harness.kubeauth import configure_kubernetes_auth
from e2e.harness.manifests import API_VERSION
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from e2e.harness.vaultadmin import (
    DECLARED_AUDIT_PATH,
    OpenBaoWithDeclaredAudit,
    grant_operator,
    operator_objects,
)

pytestmark = pytest.mark.e2e
AUTH, LOCKED_AUTH = "vaultsync-admin", "vaultsync-admin-locked"


@pytest.fixture(scope="module", autouse=True)
def operator_identity(stack: Stack) -> None:
    grant_operator(stack.vault)
    stack.apply(*operator_objects(AUTH, "default", stack.bao.address))


@pytest.fixture(scope="module")
def locked(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[hvac.Client]:
    """A client of the locked OpenBao, with the operator's identity set up in it."""
    bao = OpenBaoWithDeclaredAudit(tmp_path_factory.mktemp("openbao-locked"), allow_api_audit=False)
    bao.start()
    try:
        configure_kubernetes_auth(bao, stack.cp)
        grant_operator(bao.client())
        stack.apply(*operator_objects(LOCKED_AUTH, "locked", bao.address))
        yield bao.client()
    finally:
        bao.stop()


@pytest.fixture
def path(stack: Stack) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    yield name
    stack.vault.sys.disable_audit_device(name)


def _device(name: str, path: str, log: Path, auth: str = AUTH, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultAuditDevice",
        "metadata": {"name": name},
        "spec": {
            "authRef": auth,
            "type": "file",
            "path": path,
            "options": {"file_path": str(log)},
            **spec,
        },
    }


def _get(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get("vaultauditdevices", name)


def _ready(stack: Stack, name: str, status: str = "True") -> dict[str, Any] | None:
    return ready_is(_get(stack, name), status)


def _devices(vault: hvac.Client) -> dict[str, Any]:
    data: dict[str, Any] = vault.sys.list_enabled_audit_devices()["data"]
    return {mount.rstrip("/"): info for mount, info in data.items()}


def test_device_is_enabled_and_kept_enabled(stack: Stack, path: str, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    stack.apply(_device(path, path, log, description="kept"))
    ready = eventually(lambda: _ready(stack, path), 60, "Ready")
    assert ready["reason"] == "Enabled"
    assert _get(stack, path)["status"]["managed"] is True
    device = _devices(stack.vault)[path]
    marker = f"managed-by: vaultsync VaultAuditDevice/{path}"
    assert (device["type"], device["description"]) == ("file", f"{marker}; kept")
    assert device["options"] == {"file_path": str(log)}
    eventually(log.exists, 30, "OpenBao writing the audit log")

    stack.vault.sys.disable_audit_device(path)
    eventually(lambda: path in _devices(stack.vault), 30, "the device re-enabled")
    assert _get(stack, path)["status"]["managed"] is True

    stack.cp.kubectl("delete", "vaultauditdevice", path, "--timeout=60s")
    assert path in _devices(stack.vault), "deletionPolicy Retain (the default) keeps audit on"


def test_delete_disables_only_what_vaultsync_enabled(
    stack: Stack, path: str, tmp_path: Path
) -> None:
    theirs = f"{path}-theirs"
    stack.vault.sys.enable_audit_device(
        "file", path=theirs, options={"file_path": str(tmp_path / "theirs.log")}
    )
    try:
        stack.apply(
            _device(path, path, tmp_path / "ours.log", deletionPolicy="Delete"),
            _device(theirs, theirs, tmp_path / "theirs.log", deletionPolicy="Delete"),
        )
        eventually(lambda: _ready(stack, path), 60, "ours Ready")
        present = eventually(lambda: _ready(stack, theirs), 60, "theirs Ready")
        assert present["reason"] == "AlreadyPresent"
        assert _get(stack, theirs)["status"]["managed"] is False
        stack.cp.kubectl("delete", "vaultauditdevice", path, theirs, "--timeout=60s")
        devices = _devices(stack.vault)
        assert path not in devices, "ours is disabled with deletionPolicy Delete"
        assert theirs in devices, "a device vaultsync did not enable is never disabled"
    finally:
        stack.vault.sys.disable_audit_device(theirs)


def test_ownership_survives_an_operator_restart(stack: Stack, path: str, tmp_path: Path) -> None:
    stack.apply(_device(path, path, tmp_path / "audit.log", deletionPolicy="Delete"))
    eventually(lambda: _ready(stack, path), 60, "Ready")
    stack.operator.stop()
    stack.vault.sys.disable_audit_device(path)
    stack.operator.start()
    eventually(lambda: path in _devices(stack.vault), 60, "re-enabled after the restart")
    assert _get(stack, path)["status"]["managed"] is True
    stack.cp.kubectl("delete", "vaultauditdevice", path, "--timeout=60s")
    assert path not in _devices(stack.vault)


def test_changed_settings_are_reported_not_applied_by_disabling(
    stack: Stack, path: str, tmp_path: Path
) -> None:
    log = tmp_path / "audit.log"
    stack.apply(_device(path, path, log, description="one"))
    eventually(lambda: _ready(stack, path), 60, "Ready")
    stack.apply(_device(path, path, log, description="two"))
    differs = eventually(lambda: _ready(stack, path, "False"), 30, "Ready=False")
    assert differs["reason"] == "DeviceDiffers"
    assert f"bao audit disable {path}" in differs["message"]
    marker = f"managed-by: vaultsync VaultAuditDevice/{path}"
    assert _devices(stack.vault)[path]["description"] == f"{marker}; one"
    stack.vault.sys.disable_audit_device(path)
    eventually(lambda: _ready(stack, path), 30, "Ready after re-enabling as specified")
    assert _devices(stack.vault)[path]["description"] == f"{marker}; two"


def test_server_refusing_api_audit_devices(
    stack: Stack, locked: hvac.Client, tmp_path: Path
) -> None:
    name = f"refused-{uuid.uuid4().hex[:6]}"
    stack.apply(_device(name, name, tmp_path / "x.log", auth=LOCKED_AUTH))
    refused = eventually(lambda: _ready(stack, name, "False"), 60, "Ready=False")
    assert refused["reason"] == "AuditAPIDisabled"
    assert "unsafe_allow_api_audit_creation = true" in refused["message"]
    assert f'audit "file" "{name}"' in refused["message"]
    assert _get(stack, name)["status"]["managed"] is False
    failures = stack.operator.metric("vaultsync_syncs_total", reason="AuditAPIDisabled")
    eventually(
        lambda: (
            stack.operator.metric("vaultsync_syncs_total", reason="AuditAPIDisabled") > failures
        ),
        30,
        "another attempt after a backoff, not a crash",
    )
    assert stack.operator.process is not None and stack.operator.process.alive()

    declared = f"declared-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "declared.log"
    stack.apply(
        _device(declared, DECLARED_AUDIT_PATH, log, auth=LOCKED_AUTH, deletionPolicy="Delete")
    )
    present = eventually(lambda: _ready(stack, declared), 60, "the declared device counted")
    assert present["reason"] == "AlreadyPresent"
    assert _get(stack, declared)["status"]["managed"] is False
    stack.cp.kubectl("delete", "vaultauditdevice", name, declared, "--timeout=60s")
    assert DECLARED_AUDIT_PATH in _devices(locked)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "elsewhere"}, "path is immutable"),
        ({"type": "kafka"}, "Unsupported value"),
    ],
)
def test_the_api_server_refuses_bad_specs(
    stack: Stack, path: str, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    device = _device(path, path, tmp_path / "a.log")
    stack.apply(device)
    device["spec"].update(change)
    with pytest.raises(subprocess.CalledProcessError) as caught:
        stack.apply(device)
    assert message in caught.value.stderr
    stack.cp.kubectl("delete", "vaultauditdevice", path, "--timeout=60s")


# Guard rails: options that weaken audit need spec.acknowledgeInsecureOptions, and file devices
# write only inside VAULTSYNC_AUDIT_FILE_DIRS (here: pytest's temporary directories).


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"log_raw": "True"}, "options.log_raw true logs secrets in plain text"),
        ({"hmac_accessor": "f"}, "options.hmac_accessor false logs token accessors"),
        ({"mode": "0644"}, "options.mode lets other users read the audit log"),
        ({"mode": "0"}, "options.mode lets other users read the audit log"),
    ],
)
def test_insecure_options_without_acknowledgement_are_refused(
    stack: Stack, path: str, tmp_path: Path, options: dict[str, str], message: str
) -> None:
    log = tmp_path / "audit.log"
    device = _device(path, path, log)
    device["spec"]["options"].update(options)
    with pytest.raises(subprocess.CalledProcessError) as caught:
        stack.apply(device)
    assert message in caught.value.stderr
    assert "unless acknowledgeInsecureOptions is true" in caught.value.stderr
    assert path not in _devices(stack.vault)
    assert not log.exists()
    device["spec"]["acknowledgeInsecureOptions"] = False
    with pytest.raises(subprocess.CalledProcessError):
        stack.apply(device)


def _insecure_warnings(stack: Stack, name: str) -> list[Any]:
    selector = f"involvedObject.name={name},reason=InsecureAuditOptions"
    events: list[Any] = stack.core.list_namespaced_event("default", field_selector=selector).items
    return events


def test_acknowledged_insecure_options_are_enabled_with_a_warning(
    stack: Stack, path: str, tmp_path: Path
) -> None:
    log = tmp_path / "audit.log"
    device = _device(path, path, log, deletionPolicy="Delete", acknowledgeInsecureOptions=True)
    device["spec"]["options"]["log_raw"] = "true"
    stack.apply(device)
    ready = eventually(lambda: _ready(stack, path), 60, "Ready")
    assert ready["reason"] == "Enabled"
    assert "weakened as spec.acknowledgeInsecureOptions accepts: log_raw=true" in ready["message"]
    assert _get(stack, path)["status"]["insecureOptions"] == ["log_raw=true"]
    assert _devices(stack.vault)[path]["options"] == {"file_path": str(log), "log_raw": "true"}
    [warning] = eventually(lambda: _insecure_warnings(stack, path), 30, "the Warning Event")
    assert warning.type == "Warning"
    assert warning.involved_object.kind == "VaultAuditDevice"
    assert "log_raw=true (secrets in requests and responses" in warning.message
    resyncs = stack.operator.metric("vaultsync_syncs_total", reason="Enabled")
    eventually(
        lambda: stack.operator.metric("vaultsync_syncs_total", reason="Enabled") >= resyncs + 3,
        30,
        "three more resyncs",
    )
    assert len(_insecure_warnings(stack, path)) == 1, "one Warning, not one per resync"
    stack.cp.kubectl("delete", "vaultauditdevice", path, "--timeout=60s")
    assert path not in _devices(stack.vault)


def test_a_device_pointed_at_a_system_file_is_refused(
    stack: Stack, path: str, tmp_path: Path
) -> None:
    passwd = Path("/etc/passwd")
    before = passwd.read_bytes(), passwd.stat().st_mode
    try:
        stack.apply(_device(path, path, passwd))
        refused = eventually(lambda: _ready(stack, path, "False"), 60, "Ready=False")
        assert refused["reason"] == "FilePathNotAllowed"
        assert "options.file_path '/etc/passwd' is outside" in refused["message"]
        assert f"VAULTSYNC_AUDIT_FILE_DIRS: {tmp_path.parent}/" in refused["message"]
        assert _get(stack, path)["status"]["managed"] is False
        assert path not in _devices(stack.vault)
        assert (passwd.read_bytes(), passwd.stat().st_mode) == before
    finally:
        if (passwd.read_bytes(), passwd.stat().st_mode) != before:  # only if the guard failed
            stack.vault.sys.disable_audit_device(path)
            passwd.write_bytes(before[0])
            passwd.chmod(before[1])
    stack.cp.kubectl("delete", "vaultauditdevice", path, "--timeout=60s")


def test_a_dotdot_escape_from_the_allowed_directories_is_refused(
    stack: Stack, path: str, tmp_path: Path
) -> None:
    basetemp = tmp_path.parent
    escaped = basetemp.parent / f"escaped-{path}.log"
    stack.apply(_device(path, path, Path(f"{tmp_path}/../../{escaped.name}")))
    refused = eventually(lambda: _ready(stack, path, "False"), 60, "Ready=False")
    assert refused["reason"] == "FilePathNotAllowed"
    assert f"(that is '{escaped}') is outside" in refused["message"]
    assert path not in _devices(stack.vault)
    assert not escaped.exists()
    stack.cp.kubectl("delete", "vaultauditdevice", path, "--timeout=60s")
