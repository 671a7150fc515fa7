"""VaultPolicy end to end: fan-out over namespaces, drift repair, rejected policies, adoption,
deletion, CEL, and the closed loop with VaultSecrets reading through the policies it made."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import hvac
import pytest

from e2e.harness.conditions import ready_is
from e2e.harness.manifests import API_VERSION, namespace_object, vault_auth, vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from e2e.harness.vaultadmin import ADMIN_SERVICE_ACCOUNT as AUTH

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator_identity")]


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultPolicy",
        "metadata": {"name": name},
        "spec": {"authRef": AUTH, **spec},
    }


def _get(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get("vaultpolicies", name)


def _ready(stack: Stack, name: str, status: str = "True") -> dict[str, Any] | None:
    return ready_is(_get(stack, name), status)


def _policy_text(vault: hvac.Client, name: str) -> str | None:
    try:
        return str(vault.sys.read_acl_policy(name)["data"]["policy"])
    except hvac.exceptions.InvalidPath:
        return None


def _role(vault: hvac.Client, name: str) -> dict[str, Any] | None:
    response = vault.read(f"auth/kubernetes/role/{name}")
    return response["data"] if response else None


def _marked(owner: str, text: str, policy: str = "created", role: str | None = None) -> str:
    """A policy as vaultsync writes it: its first line (who wrote it, what it created), then
    the spec's text."""
    line = f"# managed-by: vaultsync VaultPolicy/{owner}; policy {policy}"
    return line + (f"; role {role}" if role else "") + "\n" + text


def _label(stack: Stack, namespace: str, label: str) -> None:
    stack.cp.kubectl("label", "namespace", namespace, label, "--overwrite")


def test_fan_out_follows_namespaces(stack: Stack, uid: str, namespaces: list[str]) -> None:
    label = f"fanout-{uid}"
    a, b, c = (f"fo-{uid}-{x}" for x in "abc")
    namespaces += [a, b, c]
    stack.apply(
        namespace_object(a, {label: "yes"}),
        namespace_object(b, {label: "yes"}),
        namespace_object(c, {label: "no"}),
    )
    stack.apply(
        _policy(
            f"fanout-{uid}",
            namespaceSelector={"matchLabels": {label: "yes"}},
            policyName=f"fo-{uid}-{{namespace}}",
            rules=[{"path": "secret/data/{namespace}/*", "capabilities": ["read"]}],
            kubernetesRole={
                "name": f"fo-{uid}-{{namespace}}",
                "serviceAccounts": ["*"],
                "tokenTTL": "1h",
            },
        )
    )
    vault = stack.vault
    eventually(lambda: _ready(stack, f"fanout-{uid}"), 60, "Ready")
    assert _policy_text(vault, f"fo-{uid}-{a}") == _marked(
        f"fanout-{uid}",
        f'path "secret/data/{a}/*" {{\n  capabilities = ["read"]\n}}\n',
        role=f"kubernetes/fo-{uid}-{a} created",
    )
    role = _role(vault, f"fo-{uid}-{b}")
    assert role is not None
    assert role["bound_service_account_namespaces"] == [b]
    assert role["token_policies"] == [f"fo-{uid}-{b}"] and role["token_ttl"] == 3600
    assert _policy_text(vault, f"fo-{uid}-{c}") is None
    status = _get(stack, f"fanout-{uid}")["status"]
    assert [(p["namespace"], p["policy"], p["role"]) for p in status["policies"]] == [
        (a, f"fo-{uid}-{a}", f"fo-{uid}-{a}"),
        (b, f"fo-{uid}-{b}", f"fo-{uid}-{b}"),
    ]
    assert status["observedGeneration"] == 1

    _label(stack, c, f"{label}=yes")
    eventually(lambda: _policy_text(vault, f"fo-{uid}-{c}"), 30, "a relabelled namespace's policy")
    _label(stack, a, f"{label}-")
    eventually(lambda: _policy_text(vault, f"fo-{uid}-{a}") is None, 30, "policy of a dropped one")
    assert _role(vault, f"fo-{uid}-{a}") is None
    stack.cp.kubectl("delete", "namespace", b, "--wait=false")
    eventually(lambda: _role(vault, f"fo-{uid}-{b}") is None, 60, "role of a deleted namespace")
    eventually(
        lambda: [p["namespace"] for p in _get(stack, f"fanout-{uid}")["status"]["policies"]] == [c],
        30,
        "status listing only the matching namespace",
    )


def test_drift_in_vault_is_repaired(stack: Stack, uid: str) -> None:
    name = f"drift-{uid}"
    rules = [{"path": f"secret/data/{name}/*", "capabilities": ["read", "list"]}]
    role = {"name": name, "serviceAccounts": ["app"], "namespaces": ["default"]}
    stack.apply(_policy(name, policyName=name, rules=rules, kubernetesRole=role))
    eventually(lambda: _ready(stack, name), 60, "Ready")
    vault = stack.vault
    wanted_text = _policy_text(vault, name)
    vault.sys.create_or_update_acl_policy(name, 'path "*" { capabilities = ["sudo"] }')
    vault.write_data(f"auth/kubernetes/role/{name}", data={"bound_service_account_names": ["*"]})
    eventually(lambda: _policy_text(vault, name) == wanted_text, 30, "the policy restored")
    eventually(
        lambda: (_role(vault, name) or {}).get("bound_service_account_names") == ["app"],
        30,
        "the role restored",
    )
    vault.sys.delete_acl_policy(name)
    eventually(lambda: _policy_text(vault, name) == wanted_text, 30, "the policy re-created")


def test_role_fields_the_spec_omits_are_left_as_vault_has_them(stack: Stack, uid: str) -> None:
    """A role field vaultsync never wrote keeps the value set by hand, through writes of the
    role and drift repairs; one it wrote and the spec no longer has goes back to Vault's
    default, once."""
    name = f"fields-{uid}"
    hcl = f'path "secret/data/{name}/*" {{ capabilities = ["read"] }}\n'
    role = {"name": name, "serviceAccounts": ["app"], "namespaces": ["default"]}
    stack.apply(
        _policy(name, policyName=name, hcl=hcl, kubernetesRole={**role, "tokenMaxTTL": "2h"})
    )
    eventually(lambda: _ready(stack, name), 60, "Ready")
    vault = stack.vault
    assert (_role(vault, name) or {}).get("token_max_ttl") == 7200
    by_hand = {"token_ttl": 1800, "audience": "set-by-hand", "token_num_uses": 3}
    vault.write_data(f"auth/kubernetes/role/{name}", data=by_hand)

    # a spec change that makes vaultsync write the role again
    role["serviceAccounts"] = ["app", "web"]
    stack.apply(
        _policy(name, policyName=name, hcl=hcl, kubernetesRole={**role, "tokenMaxTTL": "2h"})
    )
    eventually(
        lambda: (_role(vault, name) or {}).get("bound_service_account_names") == ["app", "web"],
        30,
        "the role written again",
    )
    eventually(lambda: _ready(stack, name), 30, "Ready")
    written = _role(vault, name) or {}
    assert {k: written.get(k) for k in by_hand} == by_hand
    assert written["token_max_ttl"] == 7200

    # tokenMaxTTL removed from the spec: vaultsync wrote it, so it goes back to the default
    stack.apply(_policy(name, policyName=name, hcl=hcl, kubernetesRole=role))
    eventually(lambda: (_role(vault, name) or {}).get("token_max_ttl") == 0, 30, "the reset")
    eventually(lambda: _ready(stack, name), 30, "Ready")
    [record] = _get(stack, name)["status"]["policies"]
    assert "roleFields" not in record, "nothing the spec omits is recorded as written"
    written = _role(vault, name) or {}
    assert {k: written.get(k) for k in by_hand} == by_hand
    # and a later hand-set value of it is left alone too
    vault.write_data(f"auth/kubernetes/role/{name}", data={"token_max_ttl": 5400})
    vault.write_data(f"auth/kubernetes/role/{name}", data={"bound_service_account_names": ["x"]})
    eventually(
        lambda: (_role(vault, name) or {}).get("bound_service_account_names") == ["app", "web"],
        30,
        "drift in a declared field repaired",
    )
    written = _role(vault, name) or {}
    assert written["token_max_ttl"] == 5400
    assert {k: written.get(k) for k in by_hand} == by_hand


def test_rejected_policy_keeps_the_previous_one(stack: Stack, uid: str) -> None:
    name = f"reject-{uid}"
    good = f'path "secret/data/{name}/*" {{ capabilities = ["read"] }}\n'
    stack.apply(_policy(name, policyName=name, hcl=good))
    eventually(lambda: _ready(stack, name), 60, "Ready")
    stack.apply(_policy(name, policyName=name, hcl=good.replace('"read"', '"reed"')))
    failed = eventually(lambda: _ready(stack, name, "False"), 30, "Ready=False")
    assert failed["reason"] == "PolicyRejected"
    assert 'invalid capability "reed"' in failed["message"]
    assert _policy_text(stack.vault, name) == _marked(name, good)
    stack.apply(_policy(name, policyName=name, hcl=good))
    eventually(lambda: _ready(stack, name), 30, "Ready again after the fix")


def test_adopted_policy_survives_deletion(stack: Stack, uid: str) -> None:
    vault = stack.vault
    adopted, owned_ = f"adopt-{uid}", f"owned-{uid}"
    vault.sys.create_or_update_acl_policy(adopted, 'path "old/*" { capabilities = ["read"] }')
    hcl = 'path "new/*" { capabilities = ["read"] }\n'
    role = {"name": adopted, "serviceAccounts": ["app"], "namespaces": ["default"]}
    stack.apply(
        _policy(adopted, policyName=adopted, hcl=hcl, kubernetesRole=role),
        _policy(owned_, policyName=owned_, hcl=hcl),
    )
    ready = eventually(lambda: _ready(stack, adopted), 60, "Ready")
    assert "1 adopted" in ready["message"]
    [record] = _get(stack, adopted)["status"]["policies"]
    assert record["adopted"] is True and "roleAdopted" not in record
    kept = _marked(adopted, hcl, "adopted", f"kubernetes/{adopted} created")
    assert _policy_text(vault, adopted) == kept, "adopted policies are kept in step"
    eventually(lambda: _ready(stack, owned_), 60, "Ready")

    stack.cp.kubectl("delete", "vaultpolicy", adopted, owned_, "--timeout=60s")
    assert _policy_text(vault, adopted) == kept, "an adopted policy is never deleted"
    assert _role(vault, adopted) is None, "the role it created is"
    assert _policy_text(vault, owned_) is None


def test_retain_leaves_everything_in_vault(stack: Stack, uid: str) -> None:
    name = f"retain-{uid}"
    hcl = 'path "x/*" { capabilities = ["read"] }\n'
    stack.apply(_policy(name, policyName=name, hcl=hcl, deletionPolicy="Retain"))
    eventually(lambda: _ready(stack, name), 60, "Ready")
    stack.cp.kubectl("delete", "vaultpolicy", name, "--timeout=60s")
    assert _policy_text(stack.vault, name) == _marked(name, hcl)


def test_ownership_survives_an_operator_restart(
    stack: Stack, uid: str, namespaces: list[str]
) -> None:
    label, tenant, name = f"restart-{uid}", f"restart-{uid}", f"restart-{uid}"
    namespaces.append(tenant)
    stack.apply(namespace_object(tenant, {label: "yes"}))
    stack.apply(
        _policy(
            name,
            namespaceSelector={"matchLabels": {label: "yes"}},
            policyName=f"{name}-{{namespace}}",
            hcl='path "x/{namespace}/*" { capabilities = ["read"] }\n',
        )
    )
    eventually(lambda: _ready(stack, name), 60, "Ready")
    wanted = _policy_text(stack.vault, f"{name}-{tenant}")
    stack.operator.stop()
    stack.vault.sys.create_or_update_acl_policy(
        f"{name}-{tenant}", 'path "y" { capabilities = ["read"] }'
    )
    stack.operator.start()
    eventually(
        lambda: _policy_text(stack.vault, f"{name}-{tenant}") == wanted, 60, "repair after restart"
    )
    [record] = _get(stack, name)["status"]["policies"]
    assert "adopted" not in record, "its own policy is not mistaken for a pre-existing one"
    stack.cp.kubectl("delete", "vaultpolicy", name, "--timeout=60s")
    assert _policy_text(stack.vault, f"{name}-{tenant}") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"policyName": "p", "hcl": "x", "rules": [{"path": "x", "capabilities": ["read"]}]},
            "exactly one of rules or hcl",
        ),
        (
            {"policyName": "p-{namespace}", "hcl": "x"},
            "{namespace} can only be used with a namespaceSelector",
        ),
        (
            {"policyName": "p", "hcl": "x", "namespaceSelector": {}},
            "policyName must contain {namespace}",
        ),
        (
            {
                "policyName": "p",
                "hcl": "x",
                "kubernetesRole": {"name": "r", "serviceAccounts": ["a"]},
            },
            "kubernetesRole.namespaces is required",
        ),
        (
            {
                "policyName": "p",
                "hcl": "x",
                "kubernetesRole": {"name": "r", "serviceAccounts": ["*", "a"], "namespaces": ["n"]},
            },
            '"*" cannot be mixed with other serviceAccounts',
        ),
        (
            {
                "policyName": "p-{namespace}",
                "hcl": "x",
                "namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
            },
            "In and NotIn need values",
        ),
    ],
)
def test_the_api_server_refuses_bad_specs(stack: Stack, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as caught:
        stack.apply(_policy(f"bad-{uuid.uuid4().hex[:6]}", **spec))
    assert message in caught.value.stderr


def test_fan_out_policy_lets_each_namespace_read_only_its_own_path(
    stack: Stack, uid: str, namespaces: list[str]
) -> None:
    """The closed loop: a VaultPolicy grants, VaultSecrets log in as their namespace and read."""
    label = f"loop-{uid}"
    tenants = [f"loop-{uid}-{x}" for x in "abc"]
    namespaces += tenants
    stack.apply(*(namespace_object(t, {label: "yes"}) for t in tenants))
    stack.apply(
        _policy(
            f"loop-{uid}",
            namespaceSelector={"matchLabels": {label: "yes"}},
            policyName=f"loop-{uid}-{{namespace}}",
            rules=[{"path": f"secret/data/loop-{uid}/{{namespace}}/*", "capabilities": ["read"]}],
            kubernetesRole={
                "name": f"loop-{uid}-{{namespace}}",
                "serviceAccounts": ["default"],
                "tokenTTL": "10m",
            },
        )
    )
    eventually(lambda: _ready(stack, f"loop-{uid}"), 60, "the VaultPolicy Ready")
    for tenant in tenants:
        stack.put(f"loop-{uid}/{tenant}/db", {"password": f"pw-{tenant}-{uid}"})
        stack.apply(
            vault_auth(tenant, role=f"loop-{uid}-{tenant}"),
            vault_secret(tenant, "own", f"loop-{uid}/{tenant}/db"),
        )
    first, second, _ = tenants
    stack.apply(vault_secret(first, "other", f"loop-{uid}/{second}/db"))
    for tenant in tenants:
        data = eventually(lambda t=tenant: stack.secret_data(t, "own"), 60, f"{tenant}'s Secret")
        assert data == {"password": f"pw-{tenant}-{uid}"}
    denied = eventually(lambda: stack.ready_is(first, "other", "False"), 60, "the denial")
    assert denied["reason"] == "PermissionDenied"
    assert stack.secret_data(first, "other") is None
