"""VaultSecret: KV v2 data rendered into a Kubernetes Secret (namespaced)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from vaultsync.api.base import ConditionedStatus, DeletionPolicy, Duration, K8sName, Model

SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"


class CreationPolicy(StrEnum):
    OWNER = "Owner"
    MERGE = "Merge"
    ORPHAN = "Orphan"


class KeyMapping(Model):
    from_: str = Field(
        alias="from", min_length=1, max_length=253, description="Key in the KV data."
    )
    to: str | None = Field(
        default=None,
        pattern=SECRET_KEY_PATTERN,
        max_length=253,
        description="Key in the Secret; defaults to the KV key.",
    )
    decode_base64: bool = Field(
        default=False, description="The KV value is base64; store the decoded bytes."
    )


class Destination(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.creationPolicy) && self.creationPolicy == 'Merge' "
                    "&& has(self.type))",
                    "message": "type cannot be set with creationPolicy Merge: "
                    "the existing Secret's type is kept",
                }
            ]
        }
    )

    name: K8sName
    type: str = Field(default="Opaque", min_length=1, max_length=253)
    creation_policy: CreationPolicy = CreationPolicy.OWNER
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _merge_keeps_type(self) -> Destination:
        if self.creation_policy is CreationPolicy.MERGE and "type" in self.model_fields_set:
            raise ValueError("type cannot be set with creationPolicy Merge")
        return self


class VaultSecretSpec(Model):
    auth_ref: K8sName = "default"
    mount: str = Field(default="secret", min_length=1)
    path: str = Field(min_length=1, pattern=r"^[^/].*[^/]$|^[^/]$")
    version: int = Field(default=0, ge=0, description="KV v2 version to read; 0 = latest.")
    refresh_interval: Duration = Field(
        default="1m", description='How often Vault is read again; "0" = only on spec change.'
    )
    keys: list[KeyMapping] = Field(
        default_factory=list,
        max_length=256,
        description="Keys to copy (and rename); empty = all keys.",
    )
    template: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="Secret keys rendered by a sandboxed Jinja2 template over the KV data.",
    )
    destination: Destination

    @model_validator(mode="after")
    def _unique_targets(self) -> VaultSecretSpec:
        targets = [k.to or k.from_ for k in self.keys]
        if len(targets) != len(set(targets)):
            raise ValueError("two keys entries write the same Secret key")
        return self


VAULT_SECRET_RULES = [
    {
        "rule": "!has(self.keys) || self.keys.all(a, self.keys.exists_one(b, "
        "(has(b.to) ? b.to : b.from) == (has(a.to) ? a.to : a.from)))",
        "message": "two keys entries write the same Secret key",
    },
    {
        "rule": "!has(self.template) || self.template.all(k, k.matches('^[-._a-zA-Z0-9]+$'))",
        "message": "template keys must be valid Secret keys ([-._a-zA-Z0-9]+)",
    },
]


class VaultSecretStatus(ConditionedStatus):
    vault_version: int | None = None
    last_sync_time: str | None = None
    secret_name: str | None = Field(
        default=None, description="The Secret last written; a renamed destination releases it."
    )
