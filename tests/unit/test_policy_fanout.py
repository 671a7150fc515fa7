"""VaultPolicy pure logic: selectors, HCL rendering, the desired set and ownership diffing."""

from typing import Any

import pytest

from vaultsync.api.policy import LabelSelector, ManagedPolicy, VaultPolicySpec
from vaultsync.policies.fanout import desired, owned, policy_key, removable, role_key, stale
from vaultsync.policies.selectors import matches
from vaultsync.vault.policies import render_hcl


def _selector(**raw: Any) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"t": "y"}}, {"t": "y", "o": "1"}, True),
        ({"matchLabels": {"t": "y"}}, {"t": "n"}, False),
        ({"matchLabels": {"t": "y"}}, {}, False),
        (
            {"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]},
            {"t": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]},
            {"t": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": ""}, False),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "team", "operator": "Exists"}],
            },
            {"env": "prod"},
            False,
        ),
    ],
)
def test_selector_matching(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert matches(_selector(**selector), labels) is expected


def test_render_hcl_quotes_paths_and_dedupes_capabilities() -> None:
    text = render_hcl([("secret/data/a/*", ["read", "list", "read"]), ('evil" {', ["deny"])])
    assert text == (
        'path "secret/data/a/*" {\n  capabilities = ["read", "list"]\n}\n'
        "\n"
        'path "evil\\" {" {\n  capabilities = ["deny"]\n}\n'
    )


def _spec(**raw: Any) -> VaultPolicySpec:
    base: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"tenant": "yes"}},
        "policyName": "tenant-{namespace}-read",
        "rules": [{"path": "secret/data/{namespace}/*", "capabilities": ["read", "list"]}],
        "kubernetesRole": {
            "name": "tenant-{namespace}",
            "serviceAccounts": ["*"],
            "tokenTTL": "1h",
        },
    }
    base.update(raw)
    return VaultPolicySpec.model_validate({k: v for k, v in base.items() if v is not None})


NAMESPACES = {"b": {"tenant": "yes"}, "a": {"tenant": "yes"}, "c": {"tenant": "no"}}


def test_fan_out_substitutes_the_namespace_everywhere() -> None:
    wanted = desired(_spec(), NAMESPACES)
    assert [w.namespace for w in wanted] == ["a", "b"]
    a = wanted[0]
    assert a.policy == "tenant-a-read"
    assert a.text == 'path "secret/data/a/*" {\n  capabilities = ["read", "list"]\n}\n'
    assert a.role is not None
    assert (a.role.name, a.role.namespaces, a.role.policies) == (
        "tenant-a",
        ("a",),
        ("tenant-a-read",),
    )
    assert (a.role.ttl, a.role.max_ttl, a.role.audience, a.role.mount) == (
        3600,
        0,
        "",
        "kubernetes",
    )


def test_fan_out_with_hcl_and_explicit_role_namespaces() -> None:
    spec = _spec(
        rules=None,
        hcl='path "kv/{namespace}/*" { capabilities = ["read"] }\n# {{identity.entity.id}}',
        kubernetesRole={
            "name": "r-{namespace}",
            "serviceAccounts": ["app"],
            "namespaces": ["{namespace}", "shared"],
        },
    )
    [a, _] = desired(spec, NAMESPACES)
    assert a.text == 'path "kv/a/*" { capabilities = ["read"] }\n# {{identity.entity.id}}'
    assert a.role is not None and a.role.namespaces == ("a", "shared")


def test_no_selector_means_one_policy_whatever_the_namespaces() -> None:
    spec = _spec(
        namespaceSelector=None,
        policyName="ops",
        rules=[{"path": "sys/health", "capabilities": ["read"]}],
        kubernetesRole={"name": "ops", "serviceAccounts": ["ops"], "namespaces": ["ops"]},
    )
    [only] = desired(spec, NAMESPACES)
    assert (only.namespace, only.policy) == (None, "ops")
    assert desired(spec, {}) == [only]


def test_empty_selector_matches_every_namespace() -> None:
    assert len(desired(_spec(namespaceSelector={}), NAMESPACES)) == 3


def _record(namespace: str, adopted: bool = False, role_adopted: bool = False) -> ManagedPolicy:
    return ManagedPolicy(
        namespace=namespace,
        policy=f"tenant-{namespace}-read",
        adopted=adopted,
        role=f"tenant-{namespace}",
        role_mount="kubernetes",
        role_adopted=role_adopted,
    )


def test_records_round_trip_through_wanted() -> None:
    wanted = desired(_spec(), NAMESPACES)
    adopted = {policy_key("tenant-b-read"): True}
    assert [w.record(adopted) for w in wanted] == [_record("a"), _record("b", adopted=True)]


def test_stale_entries_and_what_to_remove() -> None:
    records = [_record("a"), _record("c", adopted=True), _record("d", role_adopted=True)]
    wanted = desired(_spec(), NAMESPACES)
    assert stale(records, wanted) == records[1:]
    assert removable(records[1], wanted) == [role_key("kubernetes", "tenant-c")]
    assert removable(records[2], wanted) == [policy_key("tenant-d-read")]
    assert owned(records)[policy_key("tenant-c-read")] is True


def test_renamed_role_is_stale_but_the_policy_is_kept() -> None:
    wanted = desired(
        _spec(kubernetesRole={"name": "new-{namespace}", "serviceAccounts": ["*"]}), NAMESPACES
    )
    records = [_record("a")]
    assert stale(records, wanted) == records
    assert removable(records[0], wanted) == [role_key("kubernetes", "tenant-a")]


def test_roles_are_removed_before_policies() -> None:
    assert removable(_record("z"), []) == [
        role_key("kubernetes", "tenant-z"),
        policy_key("tenant-z-read"),
    ]
