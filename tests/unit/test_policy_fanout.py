"""VaultPolicy pure logic: selectors, HCL rendering, the desired set and ownership diffing."""

from typing import Any

import pytest

from vaultsync.api.policy import LabelSelector, ManagedPolicy, VaultPolicySpec
from vaultsync.policies.fanout import (
    desired,
    owned,
    policy_key,
    removable,
    resets,
    role_key,
    stale,
    written_fields,
)
from vaultsync.policies.selectors import matches
from vaultsync.vault.policies import render_hcl
from vaultsync.vault.roles import KubernetesRole


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
        None,
        None,
        "kubernetes",
    ), "what the spec omits is not declared"
    assert a.role.payload() == {
        "bound_service_account_names": ["*"],
        "bound_service_account_namespaces": ["a"],
        "token_policies": ["tenant-a-read"],
        "token_ttl": 3600,
    }


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


def _read_back(**changes: Any) -> KubernetesRole:
    """A role as roles.read returns it: every optional field has a value."""
    fields: dict[str, Any] = {"ttl": 3600, "max_ttl": 0, "audience": "", **changes}
    return KubernetesRole.of(
        "kubernetes",
        "tenant-a",
        service_accounts=["*"],
        namespaces=["a"],
        policies=["tenant-a-read"],
        **fields,
    )


def test_a_role_holds_what_it_declares_whatever_the_fields_it_omits() -> None:
    [role, _] = [w.role for w in desired(_spec(), NAMESPACES)]
    assert role is not None
    assert role.holds(_read_back())
    assert role.holds(_read_back(max_ttl=5400, audience="set-by-hand")), "not declared"
    assert not role.holds(_read_back(ttl=60)), "declared: drift"
    other = _read_back()
    assert not role.holds(
        KubernetesRole.of(
            other.mount,
            other.name,
            service_accounts=["x"],
            namespaces=other.namespaces,
            policies=other.policies,
            ttl=3600,
            max_ttl=0,
            audience="",
        )
    ), "bindings: drift"
    assert not role.holds(None)


def test_a_field_vaultsync_wrote_and_the_spec_dropped_is_reset_once() -> None:
    [role, _] = [w.role for w in desired(_spec(), NAMESPACES)]
    assert role is not None
    assert role.payload({"audience", "token_max_ttl"}) == {
        **role.payload(),
        "audience": "",
        "token_max_ttl": 0,
    }
    assert not role.holds(_read_back(max_ttl=5400), {"token_max_ttl"})
    assert role.holds(_read_back(max_ttl=0, audience="set-by-hand"), {"token_max_ttl"})


def test_written_role_fields_are_recorded_and_only_they_are_reset() -> None:
    wanted = desired(_spec(), NAMESPACES)
    record = wanted[0].record({}, {"token_ttl"})
    assert record.role_fields == ["token_ttl"]
    earlier = record.model_copy(update={"role_fields": ["audience", "token_ttl"]})
    written = written_fields([earlier, _record("b")])
    assert written == {role_key("kubernetes", "tenant-a"): {"audience", "token_ttl"}}
    assert resets(wanted[0], written) == {"audience"}, "token_ttl is still declared"
    assert resets(wanted[1], written) == set(), "nothing recorded: nothing to reset"
