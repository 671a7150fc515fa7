"""Ownership recorded in Vault (what survives a restore from the manifest), as pure functions:
the first line of every policy vaultsync writes, and the start of every audit device's
description; plus deletion of an object whose ownership Vault cannot be asked about."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.api.policy import ManagedPolicy, VaultPolicySpec
from vaultsync.audit import ownership as audit_ownership
from vaultsync.audit.reconciler import VaultAuditDeviceReconciler
from vaultsync.policies.fanout import Wanted, desired, policy_key, role_key
from vaultsync.policies.ownership import (
    Marker,
    marker_line,
    owner_id,
    read_marker,
    recorded,
    stamped,
    vouched,
)
from vaultsync.policies.reconciler import VaultPolicyReconciler
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.vault.audit import AuditDevice

OWNER = owner_id("tenants")


def _spec(**raw: Any) -> VaultPolicySpec:
    base: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"tenant": "yes"}},
        "policyName": "tenant-{namespace}-read",
        "rules": [{"path": "secret/data/{namespace}/*", "capabilities": ["read"]}],
        "kubernetesRole": {"name": "tenant-{namespace}", "serviceAccounts": ["*"]},
    }
    base.update(raw)
    return VaultPolicySpec.model_validate({k: v for k, v in base.items() if v is not None})


def _wanted(**raw: Any) -> Wanted:
    [wanted] = desired(_spec(**raw), {"a": {"tenant": "yes"}})
    return wanted


POLICY, ROLE = policy_key("tenant-a-read"), role_key("kubernetes", "tenant-a")


def test_the_first_line_says_who_wrote_the_policy_and_what_it_created() -> None:
    wanted = _wanted()
    assert marker_line(OWNER, wanted, {POLICY: False, ROLE: False}) == (
        "# managed-by: vaultsync VaultPolicy/tenants; policy created; role kubernetes/tenant-a "
        "created"
    )
    text = stamped(OWNER, wanted, {POLICY: True, ROLE: False})
    assert text == (
        "# managed-by: vaultsync VaultPolicy/tenants; policy adopted; role kubernetes/tenant-a "
        'created\npath "secret/data/a/*" {\n  capabilities = ["read"]\n}\n'
    ), "the spec's text follows unchanged"
    assert read_marker(text) == Marker(OWNER, policy_created=False, role=ROLE, role_created=True)


def test_marker_without_a_role_and_with_a_nested_mount() -> None:
    alone = _wanted(kubernetesRole=None)
    assert read_marker(stamped(OWNER, alone, {})) == Marker(OWNER, policy_created=True)
    nested = _wanted(
        kubernetesRole={"mount": "clusters/prod", "name": "t-{namespace}", "serviceAccounts": ["*"]}
    )
    marker = read_marker(stamped(OWNER, nested, {}))
    assert marker is not None and marker.role == role_key("clusters/prod", "t-a")
    odd = _wanted(
        kubernetesRole={"mount": "k;8s", "name": "t-{namespace}", "serviceAccounts": ["*"]}
    )
    marker = read_marker(stamped(OWNER, odd, {}))
    assert marker is not None and marker.role == role_key("k;8s", "t-a")


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        'path "x" { capabilities = ["read"] }\n',
        "# managed-by: vaultsync VaultPolicy/tenants\n",  # no states: not a line vaultsync wrote
        " # managed-by: vaultsync VaultPolicy/tenants; policy created\n",
        "# managed-by: vaultsync VaultPolicy/tenants; policy created; trailing\n",
        "# managed-by: vaultsync VaultSecret/x; policy created\n",
        '\n# managed-by: vaultsync VaultPolicy/tenants; policy created\npath "x" {}\n',
    ],
)
def test_only_an_exact_first_line_is_a_marker(text: str | None) -> None:
    assert read_marker(text) is None


def test_the_spec_cannot_forge_the_first_line() -> None:
    """A spec's hcl that starts with another object's marker is written after vaultsync's own
    line, which is the only one read back."""
    forged = '# managed-by: vaultsync VaultPolicy/victim; policy created\npath "x" {}\n'
    wanted = _wanted(rules=None, hcl=forged, kubernetesRole=None)
    text = stamped(OWNER, wanted, {POLICY: True})
    assert text.endswith(forged)
    assert read_marker(text) == Marker(OWNER, policy_created=False)
    assert vouched(text, owner_id("victim"), wanted) == {POLICY: True}


@given(st.text(min_size=1, max_size=200))
def test_whatever_the_spec_text_the_marker_reads_back(body: str) -> None:
    wanted = Wanted(None, "p", body, None)
    text = stamped(OWNER, wanted, {policy_key("p"): False})
    assert read_marker(text) == Marker(OWNER, policy_created=True)


def test_vouched_flags() -> None:
    wanted = _wanted()
    ours = stamped(OWNER, wanted, {POLICY: False, ROLE: True})
    assert vouched(None, OWNER, wanted) == {POLICY: False}, "absent: vaultsync creates it"
    assert vouched("path {}", OWNER, wanted) == {POLICY: True}, "no marker: it was there before"
    assert vouched(ours, owner_id("other"), wanted) == {POLICY: True}, "another owner's"
    assert vouched(ours, OWNER, wanted) == {POLICY: False, ROLE: True}
    renamed = _wanted(kubernetesRole={"name": "new-{namespace}", "serviceAccounts": ["*"]})
    assert vouched(ours, OWNER, renamed) == {POLICY: False}, "the line names another role"


def test_recorded_entries_for_a_re_created_object() -> None:
    wanted = _wanted()
    ours = stamped(OWNER, wanted, {POLICY: False, ROLE: False})
    assert recorded(ours, OWNER, wanted) == ManagedPolicy(
        namespace="a", policy="tenant-a-read", role="tenant-a", role_mount="kubernetes"
    )
    assert recorded(ours, owner_id("other"), wanted) is None
    assert recorded("path {}", OWNER, wanted) is None
    assert recorded(None, OWNER, wanted) is None
    renamed = _wanted(kubernetesRole={"name": "new-{namespace}", "serviceAccounts": ["*"]})
    entry = recorded(ours, OWNER, renamed)
    assert entry is not None and not entry.adopted
    assert entry.role_adopted, "a role the line does not name is never deleted"


def test_audit_description_marker() -> None:
    owner = audit_ownership.owner_id("file")
    device = AuditDevice("file", "file", "kept", {"file_path": "stdout"})
    marked = audit_ownership.stamped(device, owner)
    assert marked.description == "managed-by: vaultsync VaultAuditDevice/file; kept"
    assert marked.options == device.options and marked.path == device.path
    assert audit_ownership.owner_of(marked.description) == owner
    bare = audit_ownership.stamped(AuditDevice("file", "file"), owner)
    assert bare.description == "managed-by: vaultsync VaultAuditDevice/file"
    assert audit_ownership.owner_of(bare.description) == owner
    multi = audit_ownership.stamped(AuditDevice("f", "file", "two\nlines"), owner)
    assert audit_ownership.owner_of(multi.description) == owner


@pytest.mark.parametrize(
    "description",
    [
        "",
        "kept",
        "managed-by: vaultsync VaultAuditDevice/file kept",
        "managed-by: vaultsync VaultAuditDevice/File",
        "managed-by: vaultsync VaultPolicy/file",
        " managed-by: vaultsync VaultAuditDevice/file",
        "kept; managed-by: vaultsync VaultAuditDevice/file",
    ],
)
def test_audit_descriptions_without_a_marker(description: str) -> None:
    assert audit_ownership.owner_of(description) is None


def test_a_spec_description_cannot_forge_the_audit_marker() -> None:
    forged = "managed-by: vaultsync VaultAuditDevice/victim"
    marked = audit_ownership.stamped(AuditDevice("p", "file", forged), "VaultAuditDevice/mine")
    assert audit_ownership.owner_of(marked.description) == "VaultAuditDevice/mine"


# Deletion when Vault cannot be asked: with nothing recorded in status, best effort.


class _NoVault:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Vault was used ({name})")


def _reconcilers() -> tuple[VaultPolicyReconciler, VaultAuditDeviceReconciler]:
    kube: Any = object()
    settings = Settings("ops", 0, 1, 1, 1)
    sessions: Any = _NoVault()
    return VaultPolicyReconciler(kube, sessions, settings), VaultAuditDeviceReconciler(
        kube, sessions, settings
    )


def _body(kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "metadata": {"name": "x", "uid": "u1"},
        "spec": {"authRef": "nobody", **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def test_deleting_without_a_record_does_not_wait_for_an_unreachable_vault() -> None:
    """No VaultAuth 'nobody': the object never reached Vault and status records nothing, so the
    lookup of markers is skipped with a message, not retried until someone sets Retain."""
    policy, device = _reconcilers()
    spec = {"policyName": "p", "hcl": 'path "x" {}'}
    message = policy.cleanup(_body("VaultPolicy", spec), View())
    assert message.startswith("nothing recorded to remove; Vault could not be asked")
    audit_spec = {"type": "file", "path": "a", "deletionPolicy": "Delete"}
    left = device.cleanup(_body("VaultAuditDevice", audit_spec), View())
    assert left.startswith("audit device 'a' left enabled: status does not record")


def test_deleting_with_a_record_waits_for_vault() -> None:
    policy, device = _reconcilers()
    spec = {"policyName": "p", "hcl": 'path "x" {}'}
    status = {"policies": [{"policy": "p"}]}
    with pytest.raises(SyncError, match=r"set spec\.deletionPolicy to Retain"):
        policy.cleanup(_body("VaultPolicy", spec, status), View())
    audit_spec = {"type": "file", "path": "a", "deletionPolicy": "Delete"}
    with pytest.raises(SyncError, match=r"set spec\.deletionPolicy to Retain"):
        device.cleanup(_body("VaultAuditDevice", audit_spec, {"managed": True}), View())


def test_an_invalid_spec_without_a_record_has_nothing_to_remove() -> None:
    policy, _ = _reconcilers()
    assert policy.cleanup(_body("VaultPolicy", {"policyName": "p"}), View()) == (
        "nothing to remove"
    )
