"""VaultPolicy spec validation: the pydantic checks and the CRD's CEL rules say the same."""

from typing import Any

import pytest
from pydantic import ValidationError

from vaultsync.api.crds import KINDS, crd
from vaultsync.api.policy import MESSAGES, VaultPolicySpec

FAN_OUT = {
    "namespaceSelector": {"matchLabels": {"tenant": "yes"}},
    "policyName": "t-{namespace}",
    "rules": [{"path": "secret/data/{namespace}/*", "capabilities": ["read"]}],
}


def _problem(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        VaultPolicySpec.model_validate(raw)
    return str(caught.value)


def test_defaults() -> None:
    spec = VaultPolicySpec.model_validate(
        {
            "policyName": "p",
            "hcl": "x",
            "kubernetesRole": {"name": "r", "serviceAccounts": ["a"], "namespaces": ["n"]},
        }
    )
    assert (spec.auth_ref, spec.deletion_policy.value) == ("default", "Delete")
    assert spec.kubernetes_role is not None and spec.kubernetes_role.mount == "kubernetes"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"policyName": "p"}, MESSAGES["one_source"]),
        ({"policyName": "p", "hcl": "x", "rules": FAN_OUT["rules"]}, MESSAGES["one_source"]),
        ({"policyName": "p-{namespace}", "hcl": "x"}, MESSAGES["placeholder"]),
        ({"policyName": "p", "hcl": "{namespace}"}, MESSAGES["placeholder"]),
        ({**FAN_OUT, "policyName": "fixed"}, MESSAGES["policy_name"]),
        (
            {**FAN_OUT, "kubernetesRole": {"name": "fixed", "serviceAccounts": ["*"]}},
            MESSAGES["role_name"],
        ),
        (
            {
                "policyName": "p",
                "hcl": "x",
                "kubernetesRole": {"name": "r", "serviceAccounts": ["*"]},
            },
            MESSAGES["role_namespaces"],
        ),
        (
            {**FAN_OUT, "kubernetesRole": {"name": "r-{namespace}", "serviceAccounts": ["*", "a"]}},
            '"*" cannot be mixed with other serviceAccounts',
        ),
        (
            {
                **FAN_OUT,
                "namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
            },
            "In and NotIn need values",
        ),
        ({**FAN_OUT, "policyName": "Upper-{namespace}"}, "pattern"),
        ({**FAN_OUT, "rules": [{"path": "x", "capabilities": ["write"]}]}, "capabilities"),
        ({**FAN_OUT, "deletionPolicy": "Orphan"}, "deletionPolicy"),
    ],
)
def test_refused(raw: dict[str, Any], message: str) -> None:
    assert message in _problem(raw)


def test_token_ttls_use_the_documented_spelling() -> None:
    spec = VaultPolicySpec.model_validate(
        {
            **FAN_OUT,
            "kubernetesRole": {
                "name": "r-{namespace}",
                "serviceAccounts": ["*"],
                "tokenTTL": "1h",
                "tokenMaxTTL": "2h",
            },
        }
    )
    assert spec.kubernetes_role is not None
    assert (spec.kubernetes_role.token_ttl, spec.kubernetes_role.token_max_ttl) == ("1h", "2h")


def _crd(kind: str) -> dict[str, Any]:
    [found] = [k for k in KINDS if k.kind == kind]
    return crd(found)


def test_every_pydantic_rule_has_a_cel_twin() -> None:
    spec = _crd("VaultPolicy")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    cel_messages = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert sorted(cel_messages) == sorted(MESSAGES.values())
    role = spec["properties"]["kubernetesRole"]
    assert len(role["x-kubernetes-validations"]) == 2
    assert set(role["properties"]) >= {"tokenTTL", "tokenMaxTTL", "serviceAccounts", "namespaces"}
    requirement = spec["properties"]["namespaceSelector"]["properties"]["matchExpressions"]["items"]
    assert requirement["x-kubernetes-validations"][0]["message"].startswith("In and NotIn")


def test_both_kinds_are_cluster_scoped() -> None:
    assert _crd("VaultPolicy")["spec"]["scope"] == "Cluster"
    assert _crd("VaultAuditDevice")["spec"]["scope"] == "Cluster"
