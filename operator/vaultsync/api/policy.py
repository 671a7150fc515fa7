"""VaultPolicy: Vault ACL policies and the Kubernetes-auth roles that grant them (cluster-scoped).

With a namespaceSelector one object fans out to one policy (and role) per matching
namespace, `{namespace}` being replaced by the namespace's name. The pydantic
validators repeat the CRD's CEL rules so that a spec the API server let through
(an old server, CRDs installed without validation) still gets a clear answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from vaultsync.api.base import (
    CheckedModel,
    ConditionedStatus,
    DeletionPolicy,
    Duration,
    K8sName,
    Model,
)
from vaultsync.api.names import (
    LABEL_KEY_CHECKS,
    NOT_A_DOT_SEGMENT,
    AclPath,
    LabelKey,
    LabelValue,
    VaultMount,
    cel,
    cel_on_keys,
    validator,
)

PLACEHOLDER = "{namespace}"
POLICY_NAME_PATTERN = r"^([-_.a-z0-9]|\{namespace\})+$"
ROLE_NAME_PATTERN = r"^([-_.a-zA-Z0-9]|\{namespace\})+$"


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(Model):
    """A requirement on one label, as in metav1.LabelSelectorRequirement."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.operator in ['In', 'NotIn'] ? "
                    "(has(self.values) && size(self.values) > 0) : "
                    "(!has(self.values) || size(self.values) == 0)",
                    "message": "In and NotIn need values; Exists and DoesNotExist take none",
                }
            ]
        }
    )

    key: LabelKey = Field(
        min_length=1,
        max_length=317,
        json_schema_extra=cel(LABEL_KEY_CHECKS),
        description="The label key the requirement applies to.",
    )
    operator: SelectorOperator = Field(
        description="In: the label has one of values. NotIn: it is absent or has none of them. "
        "Exists: the label is present. DoesNotExist: it is absent."
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=64,
        description="Label values: at least one for In and NotIn, none for Exists and "
        "DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Self:
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values != bool(self.values):
            raise ValueError("In and NotIn need values; Exists and DoesNotExist take none")
        return self


class LabelSelector(Model):
    """metav1.LabelSelector: every matchLabels pair and every expression must hold."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=cel_on_keys(LABEL_KEY_CHECKS, "matchLabels keys"),
        description="Labels a namespace must carry with exactly these values.",
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        max_length=32,
        description="Requirements on labels that a namespace must all meet.",
    )


class Capability(StrEnum):
    """OpenBao's capabilities plus Vault's subscribe/recover (OpenBao rejects those two)."""

    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    LIST = "list"
    SCAN = "scan"
    SUDO = "sudo"
    DENY = "deny"
    SUBSCRIBE = "subscribe"
    RECOVER = "recover"


class PolicyRule(Model):
    """One path rule of the policy, rendered to HCL as path "<path>" { capabilities = [...] }."""

    path: AclPath = Field(
        description="A Vault ACL path; the globs * and + and {namespace} may be used, and a "
        "trailing / (the directory itself, e.g. secret/metadata/ for list) is kept."
    )
    capabilities: list[Capability] = Field(
        min_length=1,
        max_length=11,
        description="The capabilities granted on path; subscribe and recover exist in Vault "
        "only (OpenBao refuses them).",
    )


def _wildcard_alone(field: str) -> JsonDict:
    return {
        "rule": f"!has(self.{field}) || !self.{field}.exists(x, x == '*') "
        f"|| size(self.{field}) == 1",
        "message": f'"*" cannot be mixed with other {field}',
    }


_OMITTED = (
    "Absent: not managed, the role keeps the value Vault has (set by hand, say); if vaultsync "
    "wrote it before, it is set back to Vault's default once."
)


class KubernetesRole(Model):
    """A role of Vault's Kubernetes auth method whose tokens carry the policy."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _wildcard_alone("serviceAccounts"),
                _wildcard_alone("namespaces"),
            ]
        }
    )

    mount: VaultMount = Field(
        default="kubernetes",
        description="Mount path of the Kubernetes auth method; the role is written to "
        "auth/<mount>/role/<name>.",
    )
    name: Annotated[str, validator([NOT_A_DOT_SEGMENT])] = Field(
        min_length=1,
        max_length=128,
        pattern=ROLE_NAME_PATTERN,
        json_schema_extra=cel([NOT_A_DOT_SEGMENT]),
        description="Name of the role; with a namespaceSelector it must contain {namespace}.",
    )
    service_accounts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        min_length=1,
        max_length=64,
        description='ServiceAccount names that may log in ("*" for any).',
    )
    namespaces: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "Namespaces whose ServiceAccounts may log in; may use {namespace}. Defaults to the "
            "fan-out namespace; required without a namespaceSelector."
        ),
    )
    token_ttl: Duration | None = Field(
        default=None,
        alias="tokenTTL",
        description='TTL of the Vault tokens the role issues, e.g. "1h" (token_ttl); "0": '
        "Vault's default. " + _OMITTED,
    )
    token_max_ttl: Duration | None = Field(
        default=None,
        alias="tokenMaxTTL",
        description="Longest lifetime of those tokens, renewals included (token_max_ttl); "
        '"0": Vault\'s default. ' + _OMITTED,
    )
    audience: str | None = Field(
        default=None,
        max_length=253,
        description='The audience the role requires of ServiceAccount tokens; "": none is '
        "checked. " + _OMITTED,
    )

    @model_validator(mode="after")
    def _wildcards_alone(self) -> Self:
        for name, values in (
            ("serviceAccounts", self.service_accounts),
            ("namespaces", self.namespaces),
        ):
            if values and "*" in values and len(values) > 1:
                raise ValueError(f'"*" cannot be mixed with other {name}')
        return self


class VaultPolicySpec(CheckedModel):
    """The policy (and role) to keep in Vault, once or per matching namespace."""

    auth_ref: K8sName = Field(
        default="default",
        description="VaultAuth in the operator's namespace that the operator logs in with.",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Fan out: one policy (and role) per matching namespace, {namespace} "
        "replaced by its name; {} matches every namespace. Absent: one policy, no fan-out.",
    )
    policy_name: Annotated[str, validator([NOT_A_DOT_SEGMENT])] = Field(
        min_length=1,
        max_length=128,
        pattern=POLICY_NAME_PATTERN,
        json_schema_extra=cel([NOT_A_DOT_SEGMENT]),
        description="Name of the Vault ACL policy; with a namespaceSelector it must contain "
        "{namespace}.",
    )
    rules: list[PolicyRule] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The policy as path rules, rendered to HCL. Exactly one of rules and hcl. "
        "vaultsync writes a comment line of its own before the policy (who wrote it, see "
        "status.policies).",
    )
    hcl: str | None = Field(
        default=None,
        min_length=1,
        max_length=65536,
        description="The policy text itself; {namespace} is replaced, Vault's {{identity...}} "
        "templates are left alone. Exactly one of rules and hcl. vaultsync writes a comment "
        "line of its own before it (who wrote it, see status.policies).",
    )
    kubernetes_role: KubernetesRole | None = Field(
        default=None,
        description="A role of Vault's Kubernetes auth method that grants exactly this policy "
        "(with a namespaceSelector, one per namespace). vaultsync manages the fields below; "
        "the role's other settings are left as they are.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete: remove the policies and roles this object created when it is "
        "deleted (adopted ones are kept). Retain: leave everything in Vault.",
    )

    def problems(self) -> list[str]:
        return spec_problems(self)

    def uses_placeholder(self) -> bool:
        texts = [self.policy_name, self.hcl or "", *(r.path for r in self.rules or [])]
        if self.kubernetes_role is not None:
            texts += [self.kubernetes_role.name, *(self.kubernetes_role.namespaces or [])]
        return any(PLACEHOLDER in text for text in texts)


def spec_problems(spec: VaultPolicySpec) -> list[str]:
    """The CEL rules below, in Python."""
    problems = []
    if (spec.rules is None) == (spec.hcl is None):
        problems.append(MESSAGES["one_source"])
    fan_out = spec.namespace_selector is not None
    if not fan_out and spec.uses_placeholder():
        problems.append(MESSAGES["placeholder"])
    if fan_out and PLACEHOLDER not in spec.policy_name:
        problems.append(MESSAGES["policy_name"])
    role = spec.kubernetes_role
    if role is not None and fan_out and PLACEHOLDER not in role.name:
        problems.append(MESSAGES["role_name"])
    if role is not None and not fan_out and role.namespaces is None:
        problems.append(MESSAGES["role_namespaces"])
    return problems


MESSAGES = {
    "one_source": "exactly one of rules or hcl must be set",
    "placeholder": "{namespace} can only be used with a namespaceSelector",
    "policy_name": "with a namespaceSelector, policyName must contain {namespace}",
    "role_name": "with a namespaceSelector, kubernetesRole.name must contain {namespace}",
    "role_namespaces": "kubernetesRole.namespaces is required without a namespaceSelector",
}

_USES_PLACEHOLDER = (
    "self.policyName.contains('{namespace}')"
    " || (has(self.hcl) && self.hcl.contains('{namespace}'))"
    " || (has(self.rules) && self.rules.exists(r, r.path.contains('{namespace}')))"
    " || (has(self.kubernetesRole) && (self.kubernetesRole.name.contains('{namespace}')"
    " || (has(self.kubernetesRole.namespaces)"
    " && self.kubernetesRole.namespaces.exists(n, n.contains('{namespace}')))))"
)

VAULT_POLICY_RULES = [
    {
        "rule": "(has(self.rules) ? 1 : 0) + (has(self.hcl) ? 1 : 0) == 1",
        "message": MESSAGES["one_source"],
    },
    {
        "rule": f"has(self.namespaceSelector) || !({_USES_PLACEHOLDER})",
        "message": MESSAGES["placeholder"],
    },
    {
        "rule": "!has(self.namespaceSelector) || self.policyName.contains('{namespace}')",
        "message": MESSAGES["policy_name"],
    },
    {
        "rule": "!has(self.namespaceSelector) || !has(self.kubernetesRole)"
        " || self.kubernetesRole.name.contains('{namespace}')",
        "message": MESSAGES["role_name"],
    },
    {
        "rule": "!has(self.kubernetesRole) || has(self.namespaceSelector)"
        " || has(self.kubernetesRole.namespaces)",
        "message": MESSAGES["role_namespaces"],
    },
]


class ManagedPolicy(Model):
    """One policy (and role) this object wrote; adopted ones existed before and are kept."""

    namespace: str | None = Field(
        default=None, description="The namespace it is for; absent without a namespaceSelector."
    )
    policy: str = Field(description="Name of the policy.")
    adopted: bool = Field(
        default=False,
        description="The policy existed before vaultsync first wanted it: kept in step, never "
        "deleted.",
    )
    role: str | None = Field(default=None, description="Name of the role, if there is one.")
    role_mount: str | None = Field(
        default=None, description="Mount path of the Kubernetes auth method holding the role."
    )
    role_adopted: bool = Field(
        default=False,
        description="The role existed before vaultsync first wanted it: kept in step, never "
        "deleted.",
    )
    role_fields: list[str] = Field(
        default_factory=list,
        description="The role's optional fields (Vault names: token_ttl, token_max_ttl, "
        "audience) that vaultsync wrote because the spec declared them. A field the spec "
        "omits is never written, so a value set in Vault by hand stays; one listed here that "
        "the spec no longer declares is set back to Vault's default once, then dropped.",
    )


class VaultPolicyStatus(ConditionedStatus):
    """What this VaultPolicy owns in Vault."""

    policies: list[ManagedPolicy] = Field(
        default_factory=list,
        description="The policies and roles this object wrote or adopted, one entry per "
        "namespace with a namespaceSelector. Recorded before the first write, so a crash "
        "cannot make vaultsync forget (or take its own objects for adopted ones). The same is "
        "recorded in Vault, in the first line of each policy (# managed-by: vaultsync "
        "VaultPolicy/<name>; policy created|adopted; role <mount>/<role> created|adopted), "
        "so an object re-created from its manifest without status recognises what it created.",
    )
