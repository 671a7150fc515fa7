"""Audit devices against two real OpenBao servers: one allowing API-created devices, one
refusing them (no `unsafe_allow_api_audit_creation`) with a device declared in its config."""

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from vaultsync.audit.reconciler import converge, remove
from vaultsync.vault import audit
from vaultsync.vault.audit import (
    AuditAPIDisabled,
    AuditDevice,
    AuditDeviceDeclared,
    AuditPathInUse,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def locked(locked_bao: OpenBao) -> hvac.Client:
    return locked_bao.client()


@pytest.fixture
def declared(locked: hvac.Client) -> AuditDevice:
    """The device the locked server's config declares (the only one it can have)."""
    [device] = audit.list_devices(locked).values()
    return device


@pytest.fixture
def device(root: hvac.Client, tmp_path: Path) -> Iterator[AuditDevice]:
    path = f"it-{uuid.uuid4().hex[:8]}"
    yield AuditDevice(path, "file", "it", {"file_path": str(tmp_path / "audit.log")})
    audit.disable(root, path)


class Claims(list[bool]):
    def __call__(self, managed: bool) -> None:
        self.append(managed)


def test_enable_list_disable(root: hvac.Client, device: AuditDevice) -> None:
    audit.enable(root, device)
    assert audit.list_devices(root)[device.path] == device
    with pytest.raises(AuditPathInUse):
        audit.enable(root, device)
    audit.disable(root, device.path)
    assert device.path not in audit.list_devices(root)
    audit.disable(root, device.path)


def test_socket_device_against_a_listener(root: hvac.Client) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        threading.Thread(target=lambda: server.accept()[0].recv(65536), daemon=True).start()
        wanted = AuditDevice(
            f"it-sock-{uuid.uuid4().hex[:6]}",
            "socket",
            options={"address": f"127.0.0.1:{port}", "socket_type": "tcp"},
        )
        audit.enable(root, wanted)
        try:
            assert audit.list_devices(root)[wanted.path] == wanted
        finally:
            audit.disable(root, wanted.path)


def test_refusal_says_how_to_fix_it(locked: hvac.Client, tmp_path: Path) -> None:
    with pytest.raises(AuditAPIDisabled) as caught:
        audit.enable(locked, AuditDevice("it", "file", options={"file_path": str(tmp_path / "x")}))
    message = str(caught.value)
    assert "unsafe_allow_api_audit_creation = true" in message
    assert 'audit "file" "it"' in message and ">= 2.4" in message


def test_declared_device_cannot_be_disabled(locked: hvac.Client, declared: AuditDevice) -> None:
    assert declared.type == "file"
    with pytest.raises(AuditDeviceDeclared):
        audit.disable(locked, declared.path)


def test_converge_enables_claims_first_and_reenables(
    root: hvac.Client, device: AuditDevice
) -> None:
    claims = Claims()
    first = converge(root, device, False, claims)
    assert (first.outcome.ready, first.outcome.reason, first.managed) == (True, "Enabled", True)
    assert claims == [True]
    steady = converge(root, device, True, claims)
    assert (steady.outcome.reason, steady.outcome.written) == ("Enabled", False)
    audit.disable(root, device.path)
    again = converge(root, device, True, claims)
    assert (again.outcome.reason, again.managed) == ("Reenabled", True)
    assert device.path in audit.list_devices(root)
    assert claims == [True], "already recorded as ours: no second claim"


def test_converge_leaves_foreign_devices_alone(root: hvac.Client, device: AuditDevice) -> None:
    root.sys.enable_audit_device("file", path=device.path, options=device.options)
    present = converge(root, device, False, Claims())
    assert (present.outcome.ready, present.outcome.reason, present.managed) == (
        True,
        "AlreadyPresent",
        False,
    )
    assert "differs from the spec in description" in present.outcome.message
    socket_wanted = AuditDevice(device.path, "socket", options={"address": "127.0.0.1:1"})
    conflict = converge(root, socket_wanted, False, Claims())
    assert (conflict.outcome.ready, conflict.outcome.reason) == (False, "PathConflict")
    assert remove(root, device.path, managed=False).endswith("vaultsync did not enable it")
    assert device.path in audit.list_devices(root)


def test_converge_reports_a_changed_spec_without_disabling(
    root: hvac.Client, device: AuditDevice
) -> None:
    audit.enable(root, device)
    changed = AuditDevice(device.path, "file", "new description", device.options)
    result = converge(root, changed, True, Claims())
    assert (result.outcome.ready, result.outcome.reason, result.managed) == (
        False,
        "DeviceDiffers",
        True,
    )
    assert f"bao audit disable {device.path}" in result.outcome.message
    assert audit.list_devices(root)[device.path] == device


def test_converge_on_a_locked_server(
    locked: hvac.Client, declared: AuditDevice, tmp_path: Path
) -> None:
    present = converge(locked, declared, False, Claims())
    assert (present.outcome.ready, present.outcome.reason) == (True, "AlreadyPresent")
    claims = Claims()
    wanted = AuditDevice("it-refused", "file", options={"file_path": str(tmp_path / "a.log")})
    refused = converge(locked, wanted, False, claims)
    assert (refused.outcome.ready, refused.outcome.reason, refused.managed) == (
        False,
        "AuditAPIDisabled",
        False,
    )
    assert not refused.outcome.retryable  # only the server config helps: Stalled


def test_remove_disables_only_what_is_ours(
    root: hvac.Client, locked: hvac.Client, declared: AuditDevice, device: AuditDevice
) -> None:
    audit.enable(root, device)
    assert remove(root, device.path, managed=True).endswith("disabled")
    assert device.path not in audit.list_devices(root)
    kept = remove(locked, declared.path, managed=True)
    assert kept.endswith("declared in the server config")
    assert declared.path in audit.list_devices(locked)
