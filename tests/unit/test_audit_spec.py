"""VaultAuditDevice: spec defaults and validation, and how a device is compared."""

from typing import Any

import pytest
from pydantic import ValidationError

from vaultsync.api.audit import VaultAuditDeviceSpec
from vaultsync.api.crds import KINDS, crd
from vaultsync.audit.reconciler import device_of, differences
from vaultsync.vault.audit import AuditDevice


def test_defaults_keep_audit_on_deletion() -> None:
    spec = VaultAuditDeviceSpec.model_validate({"type": "file", "path": "file"})
    assert spec.deletion_policy.value == "Retain"
    assert (spec.auth_ref, spec.description, spec.options, spec.local) == ("default", "", {}, False)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "kafka", "path": "k"},
        {"type": "file", "path": "/leading"},
        {"type": "file", "path": "trailing/"},
        {"type": "file", "path": "f", "options": {"n": 1}},
        {"type": "file", "path": "f", "deletionPolicy": "Orphan"},
        {"type": "file"},
    ],
)
def test_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        VaultAuditDeviceSpec.model_validate(raw)


def test_device_of_spec_and_differences() -> None:
    spec = VaultAuditDeviceSpec.model_validate(
        {"type": "socket", "path": "s", "options": {"address": "x:1"}, "local": True}
    )
    wanted = device_of(spec)
    assert wanted == AuditDevice("s", "socket", "", {"address": "x:1"}, True)
    current = AuditDevice("s", "socket", "by hand", {"address": "x:2"}, True)
    assert differences(current, wanted) == ["description", "options"]
    assert differences(wanted, wanted) == []


def test_crd_type_enum_and_immutable_path() -> None:
    [kind] = [k for k in KINDS if k.kind == "VaultAuditDevice"]
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["properties"]["type"]["enum"] == ["file", "socket", "syslog"]
    assert schema["spec"]["x-kubernetes-validations"][0]["rule"] == "self.path == oldSelf.path"
    assert schema["status"]["properties"]["managed"]["type"] == "boolean"
