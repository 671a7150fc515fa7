"""VaultSecret end to end: kubectl apply -> Secret; refresh; GC; Vault outage; tenancy login."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from e2e.harness.argocd import health
from e2e.harness.manifests import vault_secret
from e2e.harness.openbao import audit_entries
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack, examples
from e2e.harness.vaultadmin import grant_operator
from vaultsync import GROUP, VERSION

pytestmark = pytest.mark.e2e


def test_examples_apply_and_sync(stack: Stack) -> None:
    grant_operator(stack.vault)  # bootstrap; the example VaultPolicy grants team-a its role
    stack.put("team-a/db", {"username": "app", "password": "example-pw-1"})
    stack.apply(*examples(stack.bao.address))
    data = eventually(lambda: stack.secret_data("team-a", "db-credentials"), 60, "the Secret")
    assert data == {"username": "app", "password": "example-pw-1"}
    ready = eventually(lambda: stack.ready("team-a", "db"), 30, "status")
    assert ready["status"] == "True", ready
    assert ready["reason"] == "Synced"
    assert health(stack.vaultsecret("team-a", "db"))[0] == "Healthy"
    status = stack.vaultsecret("team-a", "db")["status"]
    assert status["vaultVersion"] == 1
    assert status["observedGeneration"] == 1
    assert ready["observedGeneration"] == 1
    assert status["lastSyncTime"]
    policy = stack.get("vaultpolicies", "tenant-read")
    assert [p["policy"] for p in policy["status"]["policies"]] == ["tenant-team-a-read"]
    secret = stack.core.read_namespaced_secret("db-credentials", "team-a")
    assert secret.metadata.labels["app"] == "api"
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("VaultSecret", "db", True)


def test_the_rotating_example_creates_its_secret_and_rolls_the_deployment_once(
    stack: Stack,
) -> None:
    """examples/40: rotation creates the missing secret; each rotation rolls `api` once."""
    grant_operator(stack.vault)
    stack.apply(*examples(stack.bao.address))
    api_key = eventually(lambda: stack.secret_data("team-a", "api-key"), 60, "the created key")
    assert set(api_key) == {"API_KEY"} and len(api_key["API_KEY"]) == 40
    stack.values.add(api_key["API_KEY"])
    apps = client.AppsV1Api(stack.core.api_client)

    def replica_sets() -> int:
        return len(apps.list_namespaced_replica_set("team-a", label_selector="app=api").items)

    eventually(lambda: replica_sets() == 1, 30, "the Deployment's first ReplicaSet")
    eventually(lambda: stack.ready_is("team-a", "api-key", "True"), 30, "Ready")
    stack.cp.kubectl(
        "annotate", "vaultsecret", "api-key", "-n", "team-a", "vaultsync.io/rotate=e2e"
    )
    rotated = eventually(
        lambda: (d := stack.secret_data("team-a", "api-key")) != api_key and d, 60, "rotated"
    )
    stack.values.add(rotated["API_KEY"])
    eventually(lambda: replica_sets() == 2, 60, "one rollout for the rotation")
    time.sleep(3)  # refreshes meanwhile roll nothing
    assert replica_sets() == 2


def test_new_version_is_synced_after_the_refresh_interval(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/app", {"token": "token-v1"})
    stack.apply(vault_secret(tenant, "app", f"{tenant}/app"))
    eventually(lambda: stack.secret_data(tenant, "app") == {"token": "token-v1"}, 60, "v1")
    stack.put(f"{tenant}/app", {"token": "token-v2"})
    eventually(lambda: stack.secret_data(tenant, "app") == {"token": "token-v2"}, 30, "v2")
    eventually(
        lambda: stack.vaultsecret(tenant, "app")["status"].get("vaultVersion") == 2, 10, "v2"
    )


def test_unchanged_data_writes_nothing(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/still", {"k": "v"})
    stack.apply(vault_secret(tenant, "still", f"{tenant}/still"))
    eventually(lambda: stack.secret_data(tenant, "still"), 60, "the Secret")
    eventually(lambda: stack.ready(tenant, "still"), 10, "Ready")
    secret_rv = stack.core.read_namespaced_secret("still", tenant).metadata.resource_version
    object_rv = stack.vaultsecret(tenant, "still")["metadata"]["resourceVersion"]
    syncs = stack.operator.metric("vaultsync_syncs_total", reason="Synced")
    eventually(
        lambda: stack.operator.metric("vaultsync_syncs_total", reason="Synced") >= syncs + 3,
        30,
        "three more refreshes",
    )
    assert stack.core.read_namespaced_secret("still", tenant).metadata.resource_version == secret_rv
    assert stack.vaultsecret(tenant, "still")["metadata"]["resourceVersion"] == object_rv


def test_deleting_the_vaultsecret_garbage_collects_the_secret(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/gone", {"k": "v"})
    stack.apply(vault_secret(tenant, "gone", f"{tenant}/gone"))
    eventually(lambda: stack.secret_data(tenant, "gone"), 60, "the Secret")
    stack.cp.kubectl("delete", "vaultsecret", "gone", "-n", tenant, "--timeout=60s")
    eventually(lambda: stack.secret_data(tenant, "gone") is None, 60, "garbage collection")


def _finalizers(stack: Stack, namespace: str, name: str) -> list[str] | None:
    """The VaultSecret's finalizers; None once it is gone."""
    try:
        found = stack.get("vaultsecrets", name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return list(found["metadata"].get("finalizers") or [])


def test_a_secret_deleted_with_its_owner_needs_no_finalizer(stack: Stack, tenant: str) -> None:
    """Owner + Delete (the default): garbage collection deletes the Secret, so nothing holds
    the VaultSecret's deletion: it goes at once, even while no operator runs."""
    stack.put(f"{tenant}/plain", {"k": "v"})
    stack.apply(vault_secret(tenant, "plain", f"{tenant}/plain"))
    eventually(lambda: stack.secret_data(tenant, "plain"), 60, "the Secret")
    assert _finalizers(stack, tenant, "plain") == []
    stack.custom.delete_namespaced_custom_object(GROUP, VERSION, tenant, "vaultsecrets", "plain")
    assert _finalizers(stack, tenant, "plain") is None
    eventually(lambda: stack.secret_data(tenant, "plain") is None, 60, "the Secret collected")


def test_our_finalizer_leaves_the_finalizers_of_others_alone(stack: Stack, tenant: str) -> None:
    """A deletion policy to apply (Retain) takes our finalizer, added beside a user's and
    removed alone once the Secret is released; the object then waits for the user's."""
    stack.put(f"{tenant}/kept", {"k": "v"})
    theirs = "example.com/keep"
    manifest = vault_secret(
        tenant, "kept", f"{tenant}/kept", destination={"name": "kept", "deletionPolicy": "Retain"}
    )
    manifest["metadata"]["finalizers"] = [theirs]
    stack.apply(manifest)
    eventually(lambda: stack.secret_data(tenant, "kept"), 60, "the Secret")
    ours = "vaultsync.io/finalizer"
    eventually(lambda: _finalizers(stack, tenant, "kept") == [theirs, ours], 30, "ours added")
    stack.custom.delete_namespaced_custom_object(GROUP, VERSION, tenant, "vaultsecrets", "kept")
    eventually(lambda: _finalizers(stack, tenant, "kept") == [theirs], 60, "only ours removed")
    released = stack.core.read_namespaced_secret("kept", tenant)
    assert not released.metadata.owner_references  # Retain: no longer owned
    patch = [{"op": "remove", "path": "/metadata/finalizers/0"}]
    stack.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        tenant,
        "vaultsecrets",
        "kept",
        patch,
        _content_type="application/json-patch+json",
    )
    eventually(lambda: _finalizers(stack, tenant, "kept") is None, 60, "the VaultSecret gone")
    time.sleep(2)  # garbage collection would have had its chance
    assert stack.secret_data(tenant, "kept") == {"k": "v"}


def test_login_is_the_namespaces_service_account(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/who", {"k": "v"})
    stack.apply(vault_secret(tenant, "who", f"{tenant}/who"))
    eventually(lambda: stack.secret_data(tenant, "who"), 60, "the Secret")
    logins = [
        entry["auth"]["metadata"]
        for entry in audit_entries(stack.audit_log)
        if entry.get("type") == "response"
        and entry.get("request", {}).get("path") == "auth/kubernetes/login"
        and entry.get("auth", {}).get("metadata", {}).get("service_account_namespace") == tenant
    ]
    assert logins, "no Kubernetes-auth login as the tenant's ServiceAccount in the audit log"
    assert {m["service_account_name"] for m in logins} == {"default"}
    assert {m["role"] for m in logins} == {tenant}


def test_vault_outage_keeps_the_secret_and_recovers(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/db", {"password": "outage-pw"})
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db"))
    eventually(lambda: stack.secret_data(tenant, "db"), 60, "the Secret")
    before = stack.core.read_namespaced_secret("db", tenant)
    operator_pid = stack.operator.pid
    stack.bao.stop()
    try:
        ready = eventually(lambda: stack.ready_is(tenant, "db", "False"), 30, "Ready=False")
        assert ready["reason"] == "VaultUnavailable"
        failures = stack.operator.metric("vaultsync_syncs_total", reason="VaultUnavailable")
        eventually(
            lambda: (
                stack.operator.metric("vaultsync_syncs_total", reason="VaultUnavailable")
                >= failures + 2
            ),
            30,
            "more failed refreshes while Vault is down",
        )
        after = stack.core.read_namespaced_secret("db", tenant)
        assert after.metadata.resource_version == before.metadata.resource_version
        assert after.data == before.data
    finally:
        stack.bao.start()
    eventually(lambda: stack.ready_is(tenant, "db", "True"), 60, "Ready=True again")
    assert stack.operator.pid == operator_pid
    assert stack.core.read_namespaced_secret("db", tenant).data == before.data
