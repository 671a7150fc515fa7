"""Transit: VaultTransitKey (a key of Vault's transit engine, cluster-scoped) and the encrypted
values a VaultSecret may carry in its own spec.

Settings Vault fixes when a key is created (type, key size, derivation, convergent
encryption) are immutable here too (CEL transition rules); exportable and
allowPlaintextBackup can only be switched on, as in Vault. The pydantic validators repeat
the CEL rules that need no old object, so a spec an API server let through still ends as a
clear InvalidSpec.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from vaultsync.api.base import (
    CheckedModel,
    ConditionedStatus,
    DeletionPolicy,
    Duration,
    K8sName,
    Model,
    parse_duration,
)
from vaultsync.api.names import SECRET_KEY_CHECKS, SecretKey, VaultMount, cel_on_keys
from vaultsync.api.rotation import RotationTiming

KEY_NAME_PATTERN = r"^[A-Za-z0-9_]([-._A-Za-z0-9]*[A-Za-z0-9_])?$"
"""Vault's transit key names: \\w, with '-' and '.' inside (its route \\w(([\\w-.]+)?\\w)?)."""
CIPHERTEXT_PATTERN = r"^vault:v[1-9][0-9]*:[A-Za-z0-9+/]+={0,2}$"
MIN_AUTO_ROTATE_SECONDS = 3600  # Vault refuses a shorter auto_rotate_period
HMAC_KEY_SIZE = 32  # bytes, when an hmac key's keySize is not given

KeyName = Annotated[str, Field(min_length=1, max_length=128, pattern=KEY_NAME_PATTERN)]


class KeyType(StrEnum):
    """The key types OpenBao's transit engine creates (Vault has all but the ML-DSA ones)."""

    AES128_GCM96 = "aes128-gcm96"
    AES256_GCM96 = "aes256-gcm96"
    CHACHA20_POLY1305 = "chacha20-poly1305"
    XCHACHA20_POLY1305 = "xchacha20-poly1305"
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ECDSA_P521 = "ecdsa-p521"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    HMAC = "hmac"
    MLDSA_44 = "mldsa-44"
    MLDSA_65 = "mldsa-65"
    MLDSA_87 = "mldsa-87"


ENCRYPTING_TYPES = frozenset(
    {
        KeyType.AES128_GCM96,
        KeyType.AES256_GCM96,
        KeyType.CHACHA20_POLY1305,
        KeyType.XCHACHA20_POLY1305,
        KeyType.RSA_2048,
        KeyType.RSA_3072,
        KeyType.RSA_4096,
    }
)
DERIVABLE_TYPES = frozenset(
    {
        KeyType.AES128_GCM96,
        KeyType.AES256_GCM96,
        KeyType.CHACHA20_POLY1305,
        KeyType.XCHACHA20_POLY1305,
        KeyType.ED25519,
    }
)

MESSAGES = {
    "immutable": "mount, keyName, type, keySize, derived and convergentEncryption are fixed "
    "when the key is created; declare another VaultTransitKey for another key",
    "exportable": "exportable cannot be switched off once on (Vault keeps it)",
    "backup": "allowPlaintextBackup cannot be switched off once on (Vault keeps it)",
    "key_size": "keySize applies to hmac keys only",
    "convergent": "convergentEncryption needs derived: true",
    "derivable": "derived is only for aes128-gcm96, aes256-gcm96, chacha20-poly1305, "
    "xchacha20-poly1305 and ed25519 keys",
    "auto_rotate": "autoRotatePeriod must be 0 (off) or at least 1h",
    "one_rotation": "autoRotatePeriod and rotation cannot both be set: choose Vault's "
    "scheduler or vaultsync's",
    "min_versions": "minEncryptionVersion must be 0 (the latest) or at least minDecryptionVersion",
    "hmac_rotation": "rotation needs the creation times of key versions, which Vault does "
    "not report for hmac keys: use autoRotatePeriod",
}


_CREATION_DEFAULTS = {
    "mount": "'transit'",
    "type": "'aes256-gcm96'",
    "keySize": str(HMAC_KEY_SIZE),
    "derived": "false",
    "convergentEncryption": "false",
}
"""CEL literals of what an absent creation setting means: writing it out, or leaving it out
again, changes no key and is no change (keyName's default, the object's name, is out of a
spec rule's reach)."""


def _immutable(field: str) -> str:
    default = _CREATION_DEFAULTS.get(field)
    if default is None:
        return (
            f"has(self.{field}) == has(oldSelf.{field}) && "
            f"(!has(self.{field}) || self.{field} == oldSelf.{field})"
        )
    return (
        f"(has(self.{field}) ? self.{field} : {default}) == "
        f"(has(oldSelf.{field}) ? oldSelf.{field} : {default})"
    )


def _one_way(field: str) -> str:
    return f"!has(oldSelf.{field}) || !oldSelf.{field} || (has(self.{field}) && self.{field})"


def _cel_list(values: frozenset[KeyType]) -> str:
    return "[" + ", ".join(f"'{v.value}'" for v in sorted(values)) + "]"


_TYPE = "(has(self.type) ? self.type : 'aes256-gcm96')"

VAULT_TRANSIT_KEY_RULES = [
    {
        "rule": " && ".join(
            _immutable(f)
            for f in ("mount", "keyName", "type", "keySize", "derived", "convergentEncryption")
        ),
        "message": MESSAGES["immutable"],
    },
    {"rule": _one_way("exportable"), "message": MESSAGES["exportable"]},
    {"rule": _one_way("allowPlaintextBackup"), "message": MESSAGES["backup"]},
    {"rule": f"!has(self.keySize) || {_TYPE} == 'hmac'", "message": MESSAGES["key_size"]},
    {
        "rule": "!has(self.convergentEncryption) || !self.convergentEncryption "
        "|| (has(self.derived) && self.derived)",
        "message": MESSAGES["convergent"],
    },
    {
        "rule": f"!has(self.derived) || !self.derived || {_TYPE} in {_cel_list(DERIVABLE_TYPES)}",
        "message": MESSAGES["derivable"],
    },
    {
        "rule": "!has(self.autoRotatePeriod) || self.autoRotatePeriod == '0' "
        f"|| duration(self.autoRotatePeriod) >= duration('{MIN_AUTO_ROTATE_SECONDS}s')",
        "message": MESSAGES["auto_rotate"],
    },
    {
        "rule": "!has(self.rotation) || !has(self.autoRotatePeriod) "
        "|| self.autoRotatePeriod == '0'",
        "message": MESSAGES["one_rotation"],
    },
    {
        "rule": f"!has(self.rotation) || {_TYPE} != 'hmac'",
        "message": MESSAGES["hmac_rotation"],
    },
    {
        "rule": "!has(self.minEncryptionVersion) || self.minEncryptionVersion == 0 || "
        "self.minEncryptionVersion >= (has(self.minDecryptionVersion) ? "
        "self.minDecryptionVersion : 1)",
        "message": MESSAGES["min_versions"],
    },
]
"""CEL rules of VaultTransitKey's spec; the transition rules (oldSelf) run on updates only."""


class VaultTransitKeySpec(CheckedModel):
    """The transit key to keep in Vault, as declared."""

    auth_ref: K8sName = Field(
        default="default",
        description="VaultAuth in the operator's namespace that the operator logs in with.",
    )
    mount: VaultMount = Field(
        default="transit",
        description="Mount path of the transit secrets engine; immutable.",
    )
    key_name: KeyName | None = Field(
        default=None,
        description="Name of the key in Vault (<mount>/keys/<keyName>); absent: the object's "
        "name. Immutable.",
    )
    type: KeyType = Field(
        default=KeyType.AES256_GCM96,
        description="The key type, fixed at creation (immutable). Encrypted values in "
        "VaultSecrets need a type that encrypts: aes128-gcm96, aes256-gcm96, "
        "chacha20-poly1305, xchacha20-poly1305 or rsa-*; the others sign or make HMACs.",
    )
    key_size: int | None = Field(
        default=None,
        ge=32,
        le=512,
        description="Size in bytes of an hmac key (32 to 512; absent: 32). Immutable.",
    )
    derived: bool = Field(
        default=False,
        description="Key derivation: every request carries a context and the key used is "
        "derived from it. vaultsync decrypts a VaultSecret's values with its namespace as the "
        "context (and `vaultsync encrypt` encrypts with it), so with a derived key a "
        "ciphertext only decrypts in the namespace it was made for. Immutable.",
    )
    convergent_encryption: bool = Field(
        default=False,
        description="Convergent encryption (needs derived): the same plaintext and context "
        "give the same ciphertext. Immutable.",
    )
    exportable: bool = Field(
        default=False,
        description="Allow the key to be exported. Once true it cannot be switched off "
        "(Vault keeps it).",
    )
    allow_plaintext_backup: bool = Field(
        default=False,
        description="Allow a plaintext backup of the key. Once true it cannot be switched off "
        "(Vault keeps it).",
    )
    auto_rotate_period: Duration = Field(
        default="0",
        description='Vault rotates the key itself this often, e.g. "720h" (at least 1h); '
        '"0": Vault does not. Not with rotation.',
    )
    rotation: RotationTiming | None = Field(
        default=None,
        description="vaultsync rotates the key on this schedule or interval instead (not with "
        "autoRotatePeriod). The time of the latest key version is the record: a due time "
        "rotates the key once, whatever restarts happen, and a rotation by hand counts too.",
    )
    min_decryption_version: int = Field(
        default=1,
        ge=1,
        description="The oldest key version that may decrypt (or verify): raise it to retire "
        "older versions, after `vaultsync rewrap`. Above the latest version it is "
        "MinVersionAboveLatest and nothing is changed.",
    )
    min_encryption_version: int = Field(
        default=0,
        ge=0,
        description="The oldest key version that may encrypt; 0: the latest. At least "
        "minDecryptionVersion when not 0.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain: deleting this object leaves the key in Vault. Delete: delete the "
        "key too, if vaultsync created it (never an adopted key): vaultsync sets "
        "deletion_allowed just before. DELETING A KEY DESTROYS EVERY VERSION OF IT: every "
        "ciphertext made with it, anywhere, can never be decrypted again.",
    )

    def problems(self) -> list[str]:
        return spec_problems(self)

    def name_in_vault(self, object_name: str) -> str:
        return self.key_name if self.key_name is not None else object_name

    def wanted_key_size(self) -> int | None:
        if self.type is not KeyType.HMAC:
            return None
        return self.key_size if self.key_size is not None else HMAC_KEY_SIZE


def spec_problems(spec: VaultTransitKeySpec) -> list[str]:
    """The CEL rules above that need no old object, in Python."""
    found = []
    if spec.key_size is not None and spec.type is not KeyType.HMAC:
        found.append(MESSAGES["key_size"])
    if spec.convergent_encryption and not spec.derived:
        found.append(MESSAGES["convergent"])
    if spec.derived and spec.type not in DERIVABLE_TYPES:
        found.append(MESSAGES["derivable"])
    period = parse_duration(spec.auto_rotate_period)
    if period and period < MIN_AUTO_ROTATE_SECONDS:
        found.append(MESSAGES["auto_rotate"])
    if spec.rotation is not None and spec.auto_rotate_period != "0":
        found.append(MESSAGES["one_rotation"])
    if spec.rotation is not None and spec.type is KeyType.HMAC:
        found.append(MESSAGES["hmac_rotation"])
    if spec.min_encryption_version and spec.min_encryption_version < spec.min_decryption_version:
        found.append(MESSAGES["min_versions"])
    return found


class VaultTransitKeyStatus(ConditionedStatus):
    """The key as Vault last reported it, and whether vaultsync created it."""

    managed: bool | None = Field(
        default=None,
        description="True when vaultsync created the key (recorded before the create call); "
        "false when it existed before (adopted: kept as declared, never deleted).",
    )
    vault_key: str | None = Field(
        default=None,
        description="The key `managed` is about: the Vault address, Vault namespace and path. "
        "An authRef that leads to another Vault or namespace finds another key there, which "
        "vaultsync did not create: it is adopted, never deleted.",
    )
    latest_version: int | None = Field(default=None, description="The key's latest version.")
    min_decryption_version: int | None = Field(
        default=None, description="The oldest version that may decrypt, as Vault has it."
    )
    min_encryption_version: int | None = Field(
        default=None, description="The oldest version that may encrypt (0: the latest)."
    )
    last_rotation_time: str | None = Field(
        default=None,
        description="When the latest version was made (RFC 3339): the key's creation or its "
        "last rotation, by vaultsync, Vault's scheduler or by hand.",
    )
    next_rotation_time: str | None = Field(
        default=None, description="When spec.rotation rotates the key next."
    )


# --- encrypted values in a VaultSecret ------------------------------------------------------

Ciphertext = Annotated[str, Field(min_length=1, max_length=65536, pattern=CIPHERTEXT_PATTERN)]


class EncryptedValues(Model):
    """Secret values as transit ciphertext, decrypted by the VaultSecret's own identity."""

    mount: VaultMount = Field(
        default="transit", description="Mount path of the transit secrets engine."
    )
    key: KeyName = Field(
        description="The transit key that encrypted the values; the VaultSecret's Vault policy "
        "needs 'update' on <mount>/decrypt/<key>."
    )
    data: dict[SecretKey, Ciphertext] = Field(
        min_length=1,
        max_length=256,
        json_schema_extra=cel_on_keys(SECRET_KEY_CHECKS, "encrypted.data keys"),
        description="Secret key -> ciphertext (vault:v<N>:...), as `vaultsync encrypt` makes "
        "them. Each decrypted value is written under its key and is a template variable too. "
        "Decrypted with the VaultSecret's namespace as context: with a derived key, "
        "ciphertext copied from another namespace does not decrypt.",
    )


def context_for(namespace: str) -> str:
    """The transit context (base64) of a namespace's encrypted values: what binds ciphertext
    of a derived key to the namespace. A key that is not derived ignores it."""
    return base64.b64encode(f"vaultsync:{namespace}".encode()).decode()
