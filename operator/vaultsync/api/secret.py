"""VaultSecret: KV v2 data rendered into a Kubernetes Secret (namespaced)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from vaultsync.api.base import ConditionedStatus, DeletionPolicy, Duration, K8sName, Model
from vaultsync.api.names import (
    SECRET_KEY_CHECKS,
    SecretKey,
    VaultMount,
    VaultPath,
    cel,
    cel_on_keys,
    cel_rules,
    problems,
)
from vaultsync.api.restart import RESTART_DESCRIPTION, RestartSpec, RolloutRestartTargets
from vaultsync.api.rotation import RotationSpec


class CreationPolicy(StrEnum):
    OWNER = "Owner"
    MERGE = "Merge"
    ORPHAN = "Orphan"


KEY_FROM_MESSAGE = "from is the Secret key when to is not set, so it"


class KeyMapping(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": cel_rules(
                SECRET_KEY_CHECKS, "self.from", unless="has(self.to)", what=KEY_FROM_MESSAGE
            )
        }
    )

    from_: str = Field(
        alias="from", min_length=1, max_length=253, description="Key in the KV data."
    )
    to: SecretKey | None = Field(
        default=None,
        max_length=253,
        json_schema_extra=cel(SECRET_KEY_CHECKS),
        description="Key in the Secret; defaults to the KV key.",
    )
    decode_base64: bool = Field(
        default=False, description="The KV value is base64; store the decoded bytes."
    )

    @model_validator(mode="after")
    def _from_is_a_secret_key(self) -> KeyMapping:
        found = [] if self.to is not None else problems(SECRET_KEY_CHECKS, self.from_)
        if found:
            raise ValueError(f"{KEY_FROM_MESSAGE} {found[0]}")
        return self

    @property
    def target(self) -> str:
        """The Secret key this entry writes."""
        return self.to if self.to is not None else self.from_


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
    mount: VaultMount = "secret"
    path: VaultPath
    version: int = Field(default=0, ge=0, description="KV v2 version to read; 0 = latest.")
    refresh_interval: Duration = Field(
        default="1m", description='How often Vault is read again; "0" = only on spec change.'
    )
    keys: list[KeyMapping] = Field(
        default_factory=list,
        max_length=256,
        description="Keys to copy (and rename); empty = all keys.",
    )
    template: dict[SecretKey, str] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=cel_on_keys(SECRET_KEY_CHECKS, "template keys"),
        description="Secret keys rendered by a sandboxed Jinja2 template over the KV data.",
    )
    destination: Destination
    rotation: RotationSpec | None = Field(
        default=None,
        description="Give the listed keys new values on a schedule (or on the annotation "
        "vaultsync.io/rotate=<new value>) and write them back to Vault with check-and-set. "
        "The tenant's Vault policy needs create/update on <mount>/data/<path> and "
        "read/update on <mount>/metadata/<path>.",
    )
    rollout_restart_targets: RolloutRestartTargets = Field(default_factory=list)
    restart: RestartSpec | None = Field(default=None, description=RESTART_DESCRIPTION)

    @model_validator(mode="after")
    def _unique_targets(self) -> VaultSecretSpec:
        targets = [k.target for k in self.keys]
        if len(targets) != len(set(targets)):
            raise ValueError(MESSAGES["unique_keys"])
        if set(targets) & set(self.template):
            raise ValueError(MESSAGES["keys_and_template"])
        if self.rotation is not None and self.version != 0:
            raise ValueError(MESSAGES["rotation_latest"])
        return self


MESSAGES = {
    "unique_keys": "two keys entries write the same Secret key",
    "keys_and_template": "a keys entry and a template key write the same Secret key; "
    "rename one with keys[].to or the template key",
    "rotation_latest": "rotation writes new versions: version must be 0 (latest)",
}


VAULT_SECRET_RULES = [
    {
        "rule": "!has(self.keys) || self.keys.all(a, self.keys.exists_one(b, "
        "(has(b.to) ? b.to : b.from) == (has(a.to) ? a.to : a.from)))",
        "message": MESSAGES["unique_keys"],
    },
    {
        "rule": "!has(self.keys) || !has(self.template) || "
        "!self.keys.exists(k, (has(k.to) ? k.to : k.from) in self.template)",
        "message": MESSAGES["keys_and_template"],
    },
    {
        "rule": "!has(self.rotation) || !has(self.version) || self.version == 0",
        "message": MESSAGES["rotation_latest"],
    },
]


class VaultSecretStatus(ConditionedStatus):
    vault_version: int | None = None
    last_sync_time: str | None = None
    secret_name: str | None = Field(
        default=None, description="The Secret last written; a renamed destination releases it."
    )
    last_rotation_time: str | None = Field(
        default=None, description="When vaultsync last rotated the secret (from Vault's record)."
    )
    next_rotation_time: str | None = Field(
        default=None, description="When the schedule rotates the secret next."
    )
    rotated_version: int | None = Field(
        default=None, description="The KV version the last rotation produced."
    )
