"""Audit devices against two real OpenBao servers: one allowing API-created devices, one
refusing them (no `unsafe_allow_api_audit_creation`) with a device declared in its config; and
ownership recorded in the device's description (what a restore from the manifest keeps)."""

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from vaultsync.audit.ownership import owner_id, stamped
from vaultsync.audit.reconciler import converge, remove
from vaultsync.vault import audit
from vaultsync.vault.audit import (
    AuditAPIDisabled,
    AuditDevice,
    AuditDeviceDeclared,
    AuditPathInUse,
)

pytestmark = pytest.mark.integration
OWNER = owner_id("it")


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
    first = converge(root, device, OWNER, False, claims)
    assert (first.outcome.ready, first.outcome.reason, first.managed) == (True, "Enabled", True)
    assert claims == [True]
    enabled = audit.list_devices(root)[device.path]
    assert enabled == stamped(device, OWNER)
    assert enabled.description == "managed-by: vaultsync VaultAuditDevice/it; it"
    steady = converge(root, device, OWNER, True, claims)
    assert (steady.outcome.reason, steady.outcome.written) == ("Enabled", False)
    audit.disable(root, device.path)
    again = converge(root, device, OWNER, True, claims)
    assert (again.outcome.reason, again.managed) == ("Reenabled", True)
    assert device.path in audit.list_devices(root)
    assert claims == [True], "already recorded as ours: no second claim"


def test_converge_leaves_foreign_devices_alone(root: hvac.Client, device: AuditDevice) -> None:
    root.sys.enable_audit_device("file", path=device.path, options=device.options)
    present = converge(root, device, OWNER, False, Claims())
    assert (present.outcome.ready, present.outcome.reason, present.managed) == (
        True,
        "AlreadyPresent",
        False,
    )
    assert "differs from the spec in description" in present.outcome.message
    socket_wanted = AuditDevice(device.path, "socket", options={"address": "127.0.0.1:1"})
    conflict = converge(root, socket_wanted, OWNER, False, Claims())
    assert (conflict.outcome.ready, conflict.outcome.reason) == (False, "PathConflict")
    left = remove(root, device.path, managed=False, owner=OWNER)
    assert left.endswith("vaultsync did not enable it")
    assert device.path in audit.list_devices(root)


def test_converge_reports_a_changed_spec_without_disabling(
    root: hvac.Client, device: AuditDevice
) -> None:
    audit.enable(root, stamped(device, OWNER))
    changed = AuditDevice(device.path, "file", "new description", device.options)
    result = converge(root, changed, OWNER, True, Claims())
    assert (result.outcome.ready, result.outcome.reason, result.managed) == (
        False,
        "DeviceDiffers",
        True,
    )
    assert f"bao audit disable {device.path}" in result.outcome.message
    assert audit.list_devices(root)[device.path] == stamped(device, OWNER)


def test_converge_on_a_locked_server(
    locked: hvac.Client, declared: AuditDevice, tmp_path: Path
) -> None:
    present = converge(locked, declared, OWNER, False, Claims())
    assert (present.outcome.ready, present.outcome.reason) == (True, "AlreadyPresent")
    claims = Claims()
    wanted = AuditDevice("it-refused", "file", options={"file_path": str(tmp_path / "a.log")})
    refused = converge(locked, wanted, OWNER, False, claims)
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
    assert remove(root, device.path, managed=True, owner=OWNER).endswith("disabled")
    assert device.path not in audit.list_devices(root)
    kept = remove(locked, declared.path, managed=True, owner=OWNER)
    assert kept.endswith("declared in the server config")
    assert declared.path in audit.list_devices(locked)


def test_a_re_created_object_takes_the_device_it_enabled_as_its_own(
    root: hvac.Client, device: AuditDevice
) -> None:
    """Restore from the manifest: status.managed is gone, the description's marker is not."""
    converge(root, device, OWNER, False, Claims())
    claims = Claims()
    restored = converge(root, device, OWNER, False, claims)
    assert (restored.outcome.reason, restored.managed) == ("Enabled", True)
    assert not restored.outcome.written and claims == [], "recognised: nothing written"
    other = converge(root, device, owner_id("other"), False, Claims())
    assert (other.outcome.reason, other.managed) == ("AlreadyPresent", False)
    assert "vaultsync enabled it for VaultAuditDevice/it" in other.outcome.message
    assert remove(root, device.path, managed=False, owner=owner_id("other")).endswith(
        "vaultsync did not enable it"
    )
    assert remove(root, device.path, managed=False, owner=OWNER).endswith("disabled")
    assert device.path not in audit.list_devices(root)
    assert remove(root, device.path, managed=False, owner=OWNER).startswith("no audit device")


def test_a_device_enabled_before_markers_stays_ours_by_status(
    root: hvac.Client, device: AuditDevice
) -> None:
    """Upgrade: an older vaultsync enabled it with the spec's description as it is."""
    audit.enable(root, device)
    legacy = converge(root, device, OWNER, True, Claims())
    assert (legacy.outcome.ready, legacy.outcome.reason, legacy.managed) == (True, "Enabled", True)
    assert "only status records that vaultsync enabled it" in legacy.outcome.message
    changed = converge(root, replace(device, description="new"), OWNER, True, Claims())
    assert changed.outcome.reason == "DeviceDiffers"
    assert converge(root, device, OWNER, False, Claims()).outcome.reason == "AlreadyPresent"
    assert audit.list_devices(root)[device.path] == device, "never disabled to add a marker"
