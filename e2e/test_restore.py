"""Restore from the manifest: a VaultPolicy or VaultAuditDevice deleted with Retain and created
again from the same manifest, without its status (what GitOps and most backups bring back).

vaultsync records what it created in Vault itself (a policy's first line, an audit device's
description), so the re-created object takes its own objects as its own again, not as
adopted: deleting it with deletionPolicy Delete removes them, and objects that really
existed before stay."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import hvac
import pytest

from e2e.harness.conditions import ready_is
from e2e.harness.manifests import API_VERSION, namespace_object
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from e2e.harness.vaultadmin import ADMIN_SERVICE_ACCOUNT as AUTH

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator_identity")]


def _policy_text(vault: hvac.Client, name: str) -> str | None:
    try:
        return str(vault.sys.read_acl_policy(name)["data"]["policy"])
    except hvac.exceptions.InvalidPath:
        return None


def _policy_version(vault: hvac.Client, name: str) -> Any:
    return vault.sys.read_acl_policy(name)["data"].get("version")


def _role(vault: hvac.Client, name: str) -> dict[str, Any] | None:
    response = vault.read(f"auth/kubernetes/role/{name}")
    return response["data"] if response else None


def _devices(vault: hvac.Client) -> dict[str, Any]:
    data: dict[str, Any] = vault.sys.list_enabled_audit_devices()["data"]
    return {mount.rstrip("/"): info for mount, info in data.items()}


def _restore(stack: Stack, plural: str, *manifests: dict[str, Any]) -> None:
    """Delete the objects (their deletionPolicy is Retain: nothing is cleaned up) and create
    them again from the same manifests: new uids, no status."""
    names = [m["metadata"]["name"] for m in manifests]
    uids = {name: stack.get(plural, name)["metadata"]["uid"] for name in names}
    stack.cp.kubectl("delete", plural, *names, "--timeout=60s")
    stack.apply(*(copy.deepcopy(m) for m in manifests))
    for name in names:
        again = stack.get(plural, name)
        assert again["metadata"]["uid"] != uids[name], "a new object"


def _delete_with_delete(stack: Stack, plural: str, *names: str) -> None:
    patch = json.dumps({"spec": {"deletionPolicy": "Delete"}})
    for name in names:
        stack.cp.kubectl("patch", plural, name, "--type=merge", "-p", patch)
    stack.cp.kubectl("delete", plural, *names, "--timeout=60s")


def test_a_restored_vaultpolicy_removes_what_it_created_and_keeps_what_it_adopted(
    stack: Stack,
) -> None:
    uid = uuid.uuid4().hex[:6]
    label, name = f"restore-{uid}", f"restore-{uid}"
    a, b = f"rs-{uid}-a", f"rs-{uid}-b"
    vault = stack.vault
    try:
        stack.apply(namespace_object(a, {label: "yes"}), namespace_object(b, {label: "yes"}))
        vault.sys.create_or_update_acl_policy(
            f"{name}-{b}", 'path "old/*" { capabilities = ["read"] }'
        )
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "VaultPolicy",
            "metadata": {"name": name},
            "spec": {
                "authRef": AUTH,
                "namespaceSelector": {"matchLabels": {label: "yes"}},
                "policyName": f"{name}-{{namespace}}",
                "hcl": 'path "secret/data/{namespace}/*" { capabilities = ["read"] }\n',
                "kubernetesRole": {"name": f"{name}-{{namespace}}", "serviceAccounts": ["app"]},
                "deletionPolicy": "Retain",
            },
        }
        stack.apply(copy.deepcopy(manifest))
        ready = eventually(lambda: ready_is(stack.get("vaultpolicies", name), "True"), 60, "Ready")
        assert "(1 adopted: they existed before)" in ready["message"]
        before = stack.get("vaultpolicies", name)["status"]["policies"]
        assert [(p["namespace"], p.get("adopted", False)) for p in before] == [
            (a, False),
            (b, True),
        ]
        [first_line, _] = (_policy_text(vault, f"{name}-{a}") or "").split("\n", 1)
        assert first_line == (
            f"# managed-by: vaultsync VaultPolicy/{name}; policy created; "
            f"role kubernetes/{name}-{a} created"
        )
        versions = {ns: _policy_version(vault, f"{name}-{ns}") for ns in (a, b)}

        _restore(stack, "vaultpolicies", manifest)
        again = eventually(
            lambda: ready_is(stack.get("vaultpolicies", name), "True"), 60, "Ready after restore"
        )
        assert again["message"] == ready["message"], "the same ownership, nothing new adopted"
        assert stack.get("vaultpolicies", name)["status"]["policies"] == before
        assert {ns: _policy_version(vault, f"{name}-{ns}") for ns in (a, b)} == versions, (
            "recognised, not rewritten"
        )

        _delete_with_delete(stack, "vaultpolicies", name)
        assert _policy_text(vault, f"{name}-{a}") is None, "created by vaultsync: deleted"
        assert _role(vault, f"{name}-{a}") is None
        assert _role(vault, f"{name}-{b}") is None, "a role it created beside an adopted policy"
        assert _policy_text(vault, f"{name}-{b}") is not None, "adopted: never deleted"
    finally:
        vault.sys.delete_acl_policy(f"{name}-{b}")
        stack.cp.kubectl("delete", "namespace", a, b, "--wait=false", "--ignore-not-found")


def test_a_restored_vaultauditdevice_disables_what_it_enabled_and_leaves_the_rest(
    stack: Stack, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:6]
    ours, theirs = f"restore-{uid}", f"restore-{uid}-theirs"
    vault = stack.vault
    vault.sys.enable_audit_device(
        "file", path=theirs, options={"file_path": str(tmp_path / "theirs.log")}
    )
    manifests = [
        {
            "apiVersion": API_VERSION,
            "kind": "VaultAuditDevice",
            "metadata": {"name": name},
            "spec": {
                "authRef": AUTH,
                "type": "file",
                "path": name,
                "description": "restore test",
                "options": {"file_path": str(tmp_path / f"{name}.log")},
            },
        }
        for name in (ours, theirs)
    ]
    try:
        stack.apply(*copy.deepcopy(manifests))
        for name, reason in ((ours, "Enabled"), (theirs, "AlreadyPresent")):
            ready = eventually(
                lambda n=name: ready_is(stack.get("vaultauditdevices", n), "True"), 60, "Ready"
            )
            assert ready["reason"] == reason
        enabled = _devices(vault)[ours]
        assert (
            enabled["description"] == f"managed-by: vaultsync VaultAuditDevice/{ours}; restore test"
        )

        _restore(stack, "vaultauditdevices", *manifests)
        for name, managed in ((ours, True), (theirs, False)):
            eventually(
                lambda n=name, m=managed: (
                    stack.get("vaultauditdevices", n).get("status", {}).get("managed") is m
                ),
                60,
                f"{name} recognised after the restore",
            )
        ready = ready_is(stack.get("vaultauditdevices", ours), "True")
        assert ready is not None and ready["reason"] == "Enabled", "recognised, not re-enabled"
        assert _devices(vault)[ours] == enabled

        _delete_with_delete(stack, "vaultauditdevices", ours, theirs)
        devices = _devices(vault)
        assert ours not in devices, "enabled by vaultsync: disabled"
        assert theirs in devices, "there before: never disabled"
    finally:
        vault.sys.disable_audit_device(ours)
        vault.sys.disable_audit_device(theirs)
