"""VaultSecret behaviour on the real stack: shaping, policies, drift, tenancy, safe failure."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from typing import Any

import pytest

from e2e.harness.argocd import health
from e2e.harness.conditions import ready_condition
from e2e.harness.manifests import namespace_object, vault_auth, vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import OPERATOR_NAMESPACE, Stack, grant_tenant
from vaultsync import GROUP

pytestmark = pytest.mark.e2e


def synced(stack: Stack, namespace: str, name: str, secret: str | None = None) -> dict[str, str]:
    data = eventually(lambda: stack.secret_data(namespace, secret or name), 60, "the Secret")
    eventually(lambda: stack.ready_is(namespace, name, "True"), 30, f"{name} Ready=True")
    return data


def failing(stack: Stack, namespace: str, name: str, reason: str) -> dict[str, Any]:
    condition = eventually(
        lambda: (c := stack.ready_is(namespace, name, "False")) and c["reason"] == reason and c,
        60,
        f"{name} Ready=False/{reason}",
    )
    return dict(condition)


def warning_reasons(stack: Stack, namespace: str, name: str) -> set[str]:
    events = stack.core.list_namespaced_event(namespace).items
    return {e.reason for e in events if e.involved_object.name == name and e.type == "Warning"}


def test_keys_templates_types_and_metadata(stack: Stack, tenant: str) -> None:
    cert = bytes(range(200))
    stack.put(
        f"{tenant}/tls",
        {
            "crt": "-----BEGIN CERT tls-crt-value",
            "key64": base64.b64encode(cert).decode(),
            "user": "svc-user",
            "password": "tls-pw-123",
            "port": 5432,
            "opts": {"ssl": True},
        },
    )
    stack.apply(
        vault_secret(
            tenant,
            "shaped",
            f"{tenant}/tls",
            keys=[
                {"from": "crt", "to": "tls.crt"},
                {"from": "key64", "to": "tls.key", "decodeBase64": True},
                {"from": "port"},
                {"from": "opts"},
            ],
            template={"dsn": "postgres://{{ user }}:{{ password }}@db:{{ port }}/app"},
            destination={
                "name": "shaped",
                "type": "kubernetes.io/tls",
                "labels": {"team": "a"},
                "annotations": {"note": "from vault"},
            },
        )
    )
    synced(stack, tenant, "shaped")
    secret = stack.core.read_namespaced_secret("shaped", tenant)
    raw = {k: base64.b64decode(v) for k, v in secret.data.items()}
    assert raw == {
        "tls.crt": b"-----BEGIN CERT tls-crt-value",
        "tls.key": cert,
        "port": b"5432",
        "opts": b'{"ssl":true}',
        "dsn": b"postgres://svc-user:tls-pw-123@db:5432/app",
    }
    assert secret.type == "kubernetes.io/tls"
    assert secret.metadata.labels["team"] == "a"
    assert secret.metadata.annotations["note"] == "from vault"


def test_owner_policy_refuses_a_foreign_secret(stack: Stack, tenant: str) -> None:
    stack.core.create_namespaced_secret(
        tenant, {"metadata": {"name": "taken"}, "stringData": {"mine": "not-yours-1"}}
    )
    stack.put(f"{tenant}/taken", {"k": "owner-conflict-1"})
    stack.apply(vault_secret(tenant, "taken", f"{tenant}/taken"))
    condition = failing(stack, tenant, "taken", "SecretConflict")
    assert "not managed by this VaultSecret" in condition["message"]
    assert stack.secret_data(tenant, "taken") == {"mine": "not-yours-1"}
    eventually(lambda: "SecretConflict" in warning_reasons(stack, tenant, "taken"), 30, "Event")


def test_merge_adds_keys_and_removes_only_them_on_delete(stack: Stack, tenant: str) -> None:
    stack.core.create_namespaced_secret(
        tenant, {"metadata": {"name": "shared"}, "stringData": {"theirs": "their-value-1"}}
    )
    stack.put(f"{tenant}/merge", {"ours": "merged-value-1"})
    stack.apply(
        vault_secret(
            tenant,
            "merger",
            f"{tenant}/merge",
            destination={"name": "shared", "creationPolicy": "Merge"},
        )
    )
    eventually(
        lambda: (
            stack.secret_data(tenant, "shared")
            == {"theirs": "their-value-1", "ours": "merged-value-1"}
        ),
        60,
        "merged keys",
    )
    assert not stack.core.read_namespaced_secret("shared", tenant).metadata.owner_references
    stack.cp.kubectl("delete", "vaultsecret", "merger", "-n", tenant, "--timeout=60s")
    eventually(
        lambda: stack.secret_data(tenant, "shared") == {"theirs": "their-value-1"}, 30, "unmerge"
    )


def test_orphan_and_retain_policies(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/keep", {"k": "kept-value-1"})
    stack.apply(
        vault_secret(
            tenant,
            "orphan",
            f"{tenant}/keep",
            destination={"name": "orphan", "creationPolicy": "Orphan"},
        ),
        vault_secret(
            tenant,
            "retained",
            f"{tenant}/keep",
            destination={"name": "retained", "deletionPolicy": "Retain"},
        ),
        vault_secret(
            tenant,
            "orphan-kept",
            f"{tenant}/keep",
            destination={
                "name": "orphan-kept",
                "creationPolicy": "Orphan",
                "deletionPolicy": "Retain",
            },
        ),
    )
    for name in ("orphan", "retained", "orphan-kept"):
        synced(stack, tenant, name)
    assert not stack.core.read_namespaced_secret("orphan", tenant).metadata.owner_references
    for name in ("orphan", "retained", "orphan-kept"):
        stack.cp.kubectl("delete", "vaultsecret", name, "-n", tenant, "--timeout=60s")
    eventually(lambda: stack.secret_data(tenant, "orphan") is None, 30, "orphan deleted")
    retained = stack.core.read_namespaced_secret("retained", tenant)
    assert not retained.metadata.owner_references
    assert stack.secret_data(tenant, "retained") == {"k": "kept-value-1"}
    assert stack.secret_data(tenant, "orphan-kept") == {"k": "kept-value-1"}


def test_sync_once_then_on_demand(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/once", {"k": "once-value-1"})
    stack.apply(vault_secret(tenant, "once", f"{tenant}/once", refreshInterval="0"))
    assert synced(stack, tenant, "once") == {"k": "once-value-1"}
    stack.put(f"{tenant}/once", {"k": "once-value-2"})
    syncs = stack.operator.metric("vaultsync_syncs_total")
    stack.put(f"{tenant}/nothing", {"k": "unrelated-1"})
    eventually(lambda: stack.operator.metric("vaultsync_syncs_total") >= syncs, 5)
    assert stack.secret_data(tenant, "once") == {"k": "once-value-1"}
    stack.cp.kubectl(
        "annotate", "vaultsecret", "once", "-n", tenant, f"{GROUP}/refresh={uuid.uuid4()}"
    )
    eventually(lambda: stack.secret_data(tenant, "once") == {"k": "once-value-2"}, 30, "refresh")


def test_hand_edits_and_deletion_are_repaired(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/drift", {"k": "drift-value-1"})
    stack.apply(vault_secret(tenant, "drift", f"{tenant}/drift", refreshInterval="1h"))
    synced(stack, tenant, "drift")
    stack.core.patch_namespaced_secret(
        "drift", tenant, {"stringData": {"k": "tampered", "extra": "added-by-hand"}}
    )
    eventually(lambda: stack.secret_data(tenant, "drift") == {"k": "drift-value-1"}, 15, "repair")
    stack.core.delete_namespaced_secret("drift", tenant)
    eventually(lambda: stack.secret_data(tenant, "drift") == {"k": "drift-value-1"}, 15, "recreate")


def test_a_tenant_cannot_read_another_tenants_path(stack: Stack, tenant: str, victim: str) -> None:
    stack.apply(vault_secret(tenant, "steal", f"{victim}/db"))
    failing(stack, tenant, "steal", "PermissionDenied")
    assert stack.secret_data(tenant, "steal") is None


def test_a_tenant_cannot_log_in_as_another_namespace(
    stack: Stack, tenant: str, victim: str
) -> None:
    thief = f"x-{uuid.uuid4().hex[:8]}"
    stack.apply(
        namespace_object(thief),
        vault_auth(thief, role=victim),  # the victim's role, bound to the victim's SA
        vault_secret(thief, "steal", f"{victim}/db"),
    )
    failing(stack, thief, "steal", "AuthenticationFailed")
    assert stack.secret_data(thief, "steal") is None


def test_shared_vaultauth_needs_the_namespace_allowed(stack: Stack, tenant: str) -> None:
    name = f"shared-{uuid.uuid4().hex[:6]}"
    shared = vault_auth(OPERATOR_NAMESPACE, role=tenant)
    shared["metadata"]["name"] = name
    stack.put(f"{tenant}/via-shared", {"k": "shared-auth-1"})
    stack.apply(shared, vault_secret(tenant, "shared", f"{tenant}/via-shared", authRef=name))
    failing(stack, tenant, "shared", "AuthNotAllowed")
    shared["spec"]["allowedNamespaces"] = [tenant]
    stack.apply(shared)
    # the login still happens as the tenant's own ServiceAccount (role bound to it)
    assert synced(stack, tenant, "shared") == {"k": "shared-auth-1"}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("template", "TemplateError"),
        ("key", "InvalidKey"),
        ("large", "SecretTooLarge"),
        ("version", "SecretVersionDeleted"),
        ("path", "SecretNotFound"),
        ("denied", "PermissionDenied"),
    ],
)
def test_failures_keep_the_secret_and_recover(
    stack: Stack, tenant: str, case: str, reason: str
) -> None:
    path = f"{tenant}/{case}"
    stack.put(path, {"k": f"good-{case}-value"})
    stack.apply(vault_secret(tenant, case, path))
    synced(stack, tenant, case)
    before = stack.core.read_namespaced_secret(case, tenant)
    fixed: dict[str, Any] = {}
    kv = stack.vault.secrets.kv.v2
    if case == "template":
        stack.apply(vault_secret(tenant, case, path, template={"x": "{{ k.nope }}"}))
        fixed = {"template": {"k": "{{ k }}"}}
    elif case == "key":
        stack.put(path, {"bad key": "bad-key-value"})
    elif case == "large":  # Vault stores at most 1 MiB per entry; a template can triple it
        stack.put(path, {"k": "y" * 400_000})
        stack.apply(vault_secret(tenant, case, path, template={"k": "{{ k }}{{ k }}{{ k }}"}))
        fixed = {"template": {"k": "{{ k }}"}}
    elif case == "version":
        kv.delete_latest_version_of_secret(path, mount_point="secret")
    elif case == "path":
        kv.delete_metadata_and_all_versions(path, mount_point="secret")
    elif case == "denied":
        stack.vault.sys.create_or_update_policy(f"{tenant}-read", 'path "nothing/*" {}')
    condition = failing(stack, tenant, case, reason)
    assert f"good-{case}-value" not in json.dumps(condition)
    assert health(stack.vaultsecret(tenant, case)) == (
        "Degraded",
        f"{reason}: {condition['message']}",
    )
    after = stack.core.read_namespaced_secret(case, tenant)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == before.data
    eventually(lambda: reason in warning_reasons(stack, tenant, case), 30, "a Warning Event")
    # fix the cause: the operator recovers by itself
    if case == "denied":
        grant_tenant(stack.vault, tenant)
    else:
        stack.put(path, {"k": f"fixed-{case}-value"})
    if fixed:
        stack.apply(vault_secret(tenant, case, path, **fixed))
    eventually(
        lambda: (
            stack.secret_data(tenant, case) == {"k": f"fixed-{case}-value"}
            or (case == "denied" and stack.ready_is(tenant, case, "True"))
        ),
        60,
        "recovery",
    )
    eventually(lambda: stack.ready_is(tenant, case, "True"), 30, "Ready=True")


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"refreshInterval": "1d"}, "refreshInterval"),
        ({"path": "/leading/slash"}, "path"),
        ({"version": -1}, "version"),
        ({"keys": [{"from": "a", "to": "x"}, {"from": "b", "to": "x"}]}, "same Secret key"),
        ({"destination": {"name": "d", "creationPolicy": "Merge", "type": "Opaque"}}, "Merge"),
        ({"destination": {"name": "d", "creationPolicy": "Sometimes"}}, "creationPolicy"),
        ({"template": {"bad key": "x"}}, "template keys"),
    ],
)
def test_impossible_specs_are_rejected_at_apply_time(
    stack: Stack, tenant: str, spec: dict[str, Any], complaint: str
) -> None:
    obj = vault_secret(tenant, "invalid", "p/q")
    obj["spec"].update(spec)
    with pytest.raises(subprocess.CalledProcessError) as err:
        stack.apply(obj)
    assert complaint in err.value.stderr


def test_vaultauth_needs_exactly_one_method(stack: Stack, tenant: str) -> None:
    auth = vault_auth(tenant)
    auth["metadata"]["name"] = "both"
    auth["spec"]["token"] = {"secretRef": {"name": "t"}}
    with pytest.raises(subprocess.CalledProcessError) as err:
        stack.apply(auth)
    assert "exactly one auth method" in err.value.stderr


def test_token_auth_from_a_secret_of_the_namespace(stack: Stack, tenant: str) -> None:
    token = stack.vault.auth.token.create(policies=[f"{tenant}-read"], ttl="1h")["auth"][
        "client_token"
    ]
    stack.values.add(token)
    stack.core.create_namespaced_secret(
        tenant, {"metadata": {"name": "vault-token"}, "stringData": {"token": token}}
    )
    auth = vault_auth(tenant)
    auth["metadata"]["name"] = "by-token"
    auth["spec"] = {"token": {"secretRef": {"name": "vault-token"}}}
    stack.put(f"{tenant}/by-token", {"k": "token-auth-value"})
    stack.apply(auth, vault_secret(tenant, "by-token", f"{tenant}/by-token", authRef="by-token"))
    assert synced(stack, tenant, "by-token") == {"k": "token-auth-value"}


def vaultauth_ready(stack: Stack, namespace: str, name: str) -> dict[str, Any] | None:
    return ready_condition(stack.get("vaultauths", name, namespace))


def test_vaultauth_reports_whether_it_is_usable(stack: Stack, tenant: str) -> None:
    eventually(
        lambda: (c := vaultauth_ready(stack, tenant, "default")) and c["reason"] == "Valid",
        30,
        "the tenant's VaultAuth Valid",
    )
    broken = vault_auth(tenant)
    broken["metadata"]["name"] = "no-connection"
    broken["spec"]["connectionRef"] = "missing"
    token = vault_auth(tenant)
    token["metadata"]["name"] = "no-secret"
    token["spec"] = {"token": {"secretRef": {"name": "absent"}}}
    stack.apply(broken, token)
    for name, reason in (
        ("no-connection", "ConnectionNotFound"),
        ("no-secret", "AuthenticationFailed"),
    ):
        condition = eventually(
            lambda n=name: (
                (c := vaultauth_ready(stack, tenant, n)) and c["status"] == "False" and c
            ),
            30,
            f"{name} not ready",
        )
        assert condition["reason"] == reason


def test_renamed_destination_releases_the_old_secret(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/moving", {"k": "moving-value-1"})
    stack.apply(vault_secret(tenant, "moving", f"{tenant}/moving", destination={"name": "old"}))
    synced(stack, tenant, "moving", "old")
    eventually(
        lambda: stack.vaultsecret(tenant, "moving")["status"].get("secretName") == "old",
        30,
        "secretName recorded",
    )
    stack.apply(vault_secret(tenant, "moving", f"{tenant}/moving", destination={"name": "new"}))
    eventually(lambda: stack.secret_data(tenant, "new") == {"k": "moving-value-1"}, 30, "new")
    eventually(lambda: stack.secret_data(tenant, "old") is None, 30, "old released (deleted)")
    # the status patch follows the Secret writes of the same reconcile
    eventually(
        lambda: stack.vaultsecret(tenant, "moving")["status"].get("secretName") == "new",
        30,
        "secretName recorded as the new Secret",
    )
