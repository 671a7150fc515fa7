"""VaultSecret: KV v2 data rendered into a Kubernetes Secret (namespaced)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import ConfigDict, Field, model_validator

from vaultsync.api.base import ConditionedStatus, DeletionPolicy, Duration, K8sName, Model
from vaultsync.api.names import (
    NOT_OURS,
    SECRET_KEY_CHECKS,
    DeclaredKey,
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
from vaultsync.api.transit import EncryptedValues


class CreationPolicy(StrEnum):
    OWNER = "Owner"
    MERGE = "Merge"
    ORPHAN = "Orphan"


KEY_FROM_MESSAGE = "from is the Secret key when to is not set, so it"


class KeyMapping(Model):
    """A KV key copied into the Secret, maybe renamed or base64-decoded."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": cel_rules(
                SECRET_KEY_CHECKS, "self.from", unless="has(self.to)", what=KEY_FROM_MESSAGE
            )
        }
    )

    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=253,
        description="Key in the Vault data (KeyNotFound when the data lacks it). Without to it "
        "is the Secret key too, so it must be a valid one.",
    )
    to: SecretKey | None = Field(
        default=None,
        max_length=253,
        json_schema_extra=cel(SECRET_KEY_CHECKS),
        description="Key in the Secret; absent: the same as from.",
    )
    decode_base64: bool = Field(
        default=False,
        description="The Vault value is base64: store the decoded bytes (binary data); a value "
        "that is not valid base64 is InvalidBase64.",
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


Keys = Annotated[
    list[KeyMapping],
    Field(
        max_length=256,
        description="The keys of the Vault data to copy, maybe renamed; no two may write the "
        "same Secret key. Empty: every key, or with a template only the template's keys.",
    ),
]
Template = Annotated[
    dict[SecretKey, str],
    Field(
        max_length=64,
        json_schema_extra=cel_on_keys(SECRET_KEY_CHECKS, "template keys"),
        description="Secret keys rendered by a sandboxed Jinja2 template over the Vault data: "
        "each of its keys is a variable and data the whole map; filters b64encode, b64decode "
        "and tojson. A template that fails, takes longer than 5 s or more than 256 MiB of "
        "memory is TemplateError; one that renders more than 1 MiB is SecretTooLarge.",
    ),
]


class Shape(Protocol):
    """How a spec shapes Vault data into Secret data (VaultSecret, VaultDynamicSecret)."""

    @property
    def keys(self) -> list[KeyMapping]: ...

    @property
    def template(self) -> dict[str, str]: ...


def shape_problems(keys: list[KeyMapping], template: dict[str, str]) -> list[str]:
    """What SHAPE_RULES say, for objects an older API server let through."""
    targets = [k.target for k in keys]
    found = []
    if len(targets) != len(set(targets)):
        found.append(MESSAGES["unique_keys"])
    if set(targets) & set(template):
        found.append(MESSAGES["keys_and_template"])
    return found


class SecretDestination(Model):
    """The Kubernetes Secret written, in the object's namespace: what every kind that writes
    a Secret declares about it (VaultSecret's Destination adds its type)."""

    name: K8sName = Field(
        description="Name of the Secret. After a rename the new Secret is written first, then "
        "deletionPolicy is applied to the old one (status.secretName)."
    )
    creation_policy: CreationPolicy = Field(
        default=CreationPolicy.OWNER,
        description="Owner: vaultsync creates the Secret and owns it (an ownerReference); an "
        "existing Secret that this object does not manage is SecretConflict. Orphan: the "
        "same without an ownerReference. Merge: add the keys to a Secret that exists already "
        "(DestinationMissing until it does) and leave the rest; a key there that vaultsync did "
        "not write, or a declared label or annotation there with another value, is KeyConflict "
        "and nothing is written.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="What deleting this object (or renaming destination.name) does to the "
        "Secret. Delete: delete it (Merge: remove only the keys, labels and annotations "
        "vaultsync wrote). Retain: leave its data (Owner: without our ownerReference, so the "
        "garbage collector keeps it).",
    )
    labels: dict[DeclaredKey, str] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=cel_on_keys([NOT_OURS], "label keys"),
        description="Labels set on the Secret and kept as declared: a hand edit is repaired, a "
        "label removed from here is removed from the Secret. At most 64; none under "
        "vaultsync.io/, where vaultsync keeps its own.",
    )
    annotations: dict[DeclaredKey, str] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=cel_on_keys([NOT_OURS], "annotation keys"),
        description="Annotations set on the Secret and kept as declared, like labels (at most "
        "64; none under vaultsync.io/).",
    )


class Destination(SecretDestination):
    """The Kubernetes Secret written, in the VaultSecret's namespace."""

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

    type: str = Field(
        default="Opaque",
        min_length=1,
        max_length=253,
        description="The Secret's type, e.g. kubernetes.io/tls or kubernetes.io/dockerconfigjson. "
        "Not with creationPolicy Merge, which keeps the existing Secret's type. An existing "
        "Secret of another type is SecretTypeImmutable (a type cannot change).",
    )

    @model_validator(mode="after")
    def _merge_keeps_type(self) -> Destination:
        if self.creation_policy is CreationPolicy.MERGE and "type" in self.model_fields_set:
            raise ValueError("type cannot be set with creationPolicy Merge")
        return self


class VaultSecretSpec(Model):
    """Where the data comes from (a KV v2 secret, transit ciphertext in the spec, or both), how
    to shape it, and the Secret to write it to."""

    auth_ref: K8sName = Field(
        default="default",
        description="The VaultAuth to log in with: the one of this name in the VaultSecret's "
        "namespace, else the one in the operator's namespace if its allowedNamespaces lists "
        "this namespace (AuthNotAllowed otherwise).",
    )
    mount: VaultMount = Field(
        default="secret", description="Mount path of the KV v2 secrets engine."
    )
    path: VaultPath | None = Field(
        default=None,
        description="Path of the secret under the mount, e.g. team-a/db (read from "
        "<mount>/data/<path>). At least one of path and encrypted; keys, rotation and a "
        "version other than 0 need it.",
    )
    version: int = Field(
        default=0,
        ge=0,
        description="KV v2 version to read; 0: the latest. Must be 0 with rotation.",
    )
    refresh_interval: Duration = Field(
        default="1m",
        description='How often Vault is read again, e.g. "30s", "5m" or "1h30m"; "0": only '
        "when the spec changes, the annotation vaultsync.io/refresh gets a new value or the "
        "Secret is edited or deleted.",
    )
    keys: Keys = Field(default_factory=list)
    template: Template = Field(default_factory=dict)
    destination: Destination = Field(
        description="The Kubernetes Secret written, in the VaultSecret's namespace."
    )
    encrypted: EncryptedValues | None = Field(
        default=None,
        description="Values kept in this spec as transit ciphertext (made by `vaultsync "
        "encrypt`), safe to commit to Git: decrypted at each sync with this VaultSecret's own "
        "identity and written under their keys, beside the KV data (a key may come from one "
        "source only); templates see them as variables. A value that does not decrypt is "
        "DecryptFailed, a refusal DecryptDenied, and the Secret is kept as it is.",
    )
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
        shape = shape_problems(self.keys, self.template)
        if shape:
            raise ValueError(shape[0])
        if self.rotation is not None and self.version != 0:
            raise ValueError(MESSAGES["rotation_latest"])
        if self.path is None and self.encrypted is None:
            raise ValueError(MESSAGES["one_source"])
        if self.path is None and (self.keys or self.rotation is not None or self.version):
            raise ValueError(MESSAGES["kv_needs_path"])
        encrypted = set(self.encrypted.data) if self.encrypted is not None else set()
        if encrypted & ({k.target for k in self.keys} | set(self.template)):
            raise ValueError(MESSAGES["encrypted_keys"])
        return self


MESSAGES = {
    "unique_keys": "two keys entries write the same Secret key",
    "keys_and_template": "a keys entry and a template key write the same Secret key; "
    "rename one with keys[].to or the template key",
    "rotation_latest": "rotation writes new versions: version must be 0 (latest)",
    "one_source": "at least one of path (KV) and encrypted must be set",
    "kv_needs_path": "keys, rotation and version read the KV secret: they need path",
    "encrypted_keys": "an encrypted.data key is also written by keys or template; each "
    "Secret key has one source",
}


SHAPE_RULES = [
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
]
"""The rules on keys and template of every spec that shapes Vault data into a Secret."""

VAULT_SECRET_RULES = [
    *SHAPE_RULES,
    {
        "rule": "!has(self.rotation) || !has(self.version) || self.version == 0",
        "message": MESSAGES["rotation_latest"],
    },
    {"rule": "has(self.path) || has(self.encrypted)", "message": MESSAGES["one_source"]},
    {
        "rule": "has(self.path) || ((!has(self.keys) || size(self.keys) == 0) "
        "&& !has(self.rotation) && (!has(self.version) || self.version == 0))",
        "message": MESSAGES["kv_needs_path"],
    },
    {
        "rule": "!has(self.encrypted) || ((!has(self.template) || "
        "!self.encrypted.data.exists(k, k in self.template)) && (!has(self.keys) || "
        "!self.keys.exists(m, (has(m.to) ? m.to : m.from) in self.encrypted.data)))",
        "message": MESSAGES["encrypted_keys"],
    },
]


class VaultSecretStatus(ConditionedStatus):
    """What the last sync wrote, and the rotation record."""

    vault_version: int | None = Field(
        default=None, description="The KV version whose data the Secret holds (with path)."
    )
    last_sync_time: str | None = Field(
        default=None,
        description="When vaultsync last wrote the Secret, or first found it in step (RFC "
        "3339); a refresh that finds the same data writes nothing and leaves it.",
    )
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
