"""A transit key kept as declared: created when missing, rotated when its schedule says,
its config set back when it drifted.

What Vault fixes at creation (type, key size, derivation, convergent encryption) is never
changed: a key whose fixed settings differ from the spec is KeyMismatch, and nothing is
written. Settings Vault lets go one way only (exportable, allowPlaintextBackup) are switched
on when the spec wants them, and a key that has one on while the spec has it off is
KeyMismatch too. deletion_allowed is kept false: only a deletion vaultsync carries out sets
it, just before deleting.

A vaultsync rotation schedule needs no record of its own: the latest key version's creation
time is when the key was last rotated (by vaultsync, Vault's scheduler or a person), so a
due time rotates it once, also across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import hvac

from vaultsync.api.base import parse_duration
from vaultsync.api.transit import VaultTransitKeySpec
from vaultsync.kube.claims import Claim
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome
from vaultsync.schedule import evaluate
from vaultsync.vault import transit
from vaultsync.vault.errors import VaultUnavailable
from vaultsync.vault.transit import TransitKey


@dataclass(frozen=True)
class Note:
    """Something done to the key, for an Event."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class KeyResult:
    outcome: Outcome
    managed: bool
    key: TransitKey | None = None
    next_rotation: datetime | None = None
    notes: list[Note] = field(default_factory=list)


def creation_settings(spec: VaultTransitKeySpec) -> dict[str, Any]:
    """What the create request sends."""
    settings: dict[str, Any] = {
        "type": spec.type.value,
        "derived": spec.derived,
        "convergent_encryption": spec.convergent_encryption,
        "exportable": spec.exportable,
        "allow_plaintext_backup": spec.allow_plaintext_backup,
        "auto_rotate_period": f"{int(parse_duration(spec.auto_rotate_period))}s",
    }
    size = spec.wanted_key_size()
    if size is not None:
        settings["key_size"] = size
    return settings


def fixed_differences(spec: VaultTransitKeySpec, key: TransitKey) -> list[str]:
    """What the key has that the spec differs in and that cannot be changed."""
    found = []
    if key.type != spec.type.value:
        found.append(f"type is {key.type}, not {spec.type.value}")
    size = spec.wanted_key_size()
    if size is not None and key.key_size is not None and key.key_size != size:
        found.append(f"keySize is {key.key_size}, not {size}")
    if key.derived != spec.derived:
        found.append(f"derived is {str(key.derived).lower()}")
    if key.convergent_encryption != spec.convergent_encryption:
        found.append(f"convergentEncryption is {str(key.convergent_encryption).lower()}")
    if key.exportable and not spec.exportable:
        found.append("exportable is on and cannot be switched off")
    if key.allow_plaintext_backup and not spec.allow_plaintext_backup:
        found.append("allowPlaintextBackup is on and cannot be switched off")
    return found


def config_drift(spec: VaultTransitKeySpec, key: TransitKey) -> dict[str, tuple[object, object]]:
    """Config fields whose value in Vault is not the spec's: field -> (Vault's, wanted)."""
    wanted: dict[str, object] = {
        "min_decryption_version": spec.min_decryption_version,
        "min_encryption_version": spec.min_encryption_version,
        "auto_rotate_period": int(parse_duration(spec.auto_rotate_period)),
        "deletion_allowed": False,
    }
    have: dict[str, object] = {
        "min_decryption_version": key.min_decryption_version,
        "min_encryption_version": key.min_encryption_version,
        "auto_rotate_period": key.auto_rotate_period,
        "deletion_allowed": key.deletion_allowed,
    }
    if spec.exportable:
        wanted["exportable"], have["exportable"] = True, key.exportable
    if spec.allow_plaintext_backup:
        wanted["allow_plaintext_backup"] = True
        have["allow_plaintext_backup"] = key.allow_plaintext_backup
    return {name: (have[name], value) for name, value in wanted.items() if have[name] != value}


def _config_value(name: str, value: object) -> object:
    return f"{value}s" if name == "auto_rotate_period" else value


def _read(client: hvac.Client, spec: VaultTransitKeySpec, name: str) -> TransitKey:
    key = transit.read_key(client, spec.mount, name)
    if key is None:
        raise SyncError(
            f"transit key {spec.mount}/{name} disappeared while vaultsync kept it",
            reason="TransitKeyNotFound",
        )
    return key


def _create(
    client: hvac.Client, spec: VaultTransitKeySpec, name: str, managed: bool, claim: Claim
) -> KeyResult | None:
    """Create the key, claimed first; a KeyResult only if that failed."""
    if not managed:
        claim(True)
    try:
        transit.create_key(client, spec.mount, name, creation_settings(spec))
    except VaultUnavailable as exc:  # it may have been created after all: keep the claim
        return KeyResult(Outcome.failed(exc), True)
    except SyncError as exc:
        claim(False)
        return KeyResult(Outcome.failed(exc), False)
    return None


def next_rotation(spec: VaultTransitKeySpec, key: TransitKey, now: datetime) -> datetime | None:
    """When the key is rotated next: spec.rotation's next due time, or Vault's own."""
    if key.latest_created is None:
        return None
    if spec.rotation is not None:
        return evaluate(spec.rotation, key.latest_created, key.latest_created, now).next_rotation
    if key.auto_rotate_period:
        return key.latest_created + timedelta(seconds=key.auto_rotate_period)
    return None


def converge(
    client: hvac.Client,
    spec: VaultTransitKeySpec,
    name: str,
    managed: bool,
    claim: Claim,
    now: datetime,
) -> KeyResult:
    """Keep the key `name` as spec declares; managed: status says vaultsync created it."""
    where = f"transit key {spec.mount}/{name}"
    notes: list[Note] = []
    key = transit.read_key(client, spec.mount, name)
    if key is None:
        failed = _create(client, spec, name, managed, claim)
        if failed is not None:
            return failed
        managed = True
        key = _read(client, spec, name)
        notes.append(Note("Created", f"{where} created ({spec.type.value})"))
    fixed = fixed_differences(spec, key)
    if fixed:
        message = (
            f"{where} differs from the spec in what Vault fixes at creation: {'; '.join(fixed)}. "
            "vaultsync changes nothing; declare another key, or make the spec match"
        )
        return KeyResult(Outcome(False, "KeyMismatch", message, retryable=False), managed, key)
    if spec.rotation is not None and key.latest_created is not None:
        due = evaluate(spec.rotation, key.latest_created, key.latest_created, now)
        if due.rotate:
            transit.rotate_key(client, spec.mount, name)
            key = _read(client, spec, name)
            notes.append(
                Note("Rotated", f"{where} rotated to version {key.latest_version} ({due.reason})")
            )
    highest = max(spec.min_decryption_version, spec.min_encryption_version)
    if highest > key.latest_version:
        message = (
            f"{where}: minDecryptionVersion {spec.min_decryption_version} and "
            f"minEncryptionVersion {spec.min_encryption_version} cannot be above the latest "
            f"version, {key.latest_version}; the key's config is left as it is"
        )
        outcome = Outcome(False, "MinVersionAboveLatest", message, retryable=False)
        return KeyResult(outcome, managed, key, next_rotation(spec, key, now), notes)
    drift = config_drift(spec, key)
    if drift:
        transit.configure_key(
            client, spec.mount, name, {f: _config_value(f, want) for f, (_, want) in drift.items()}
        )
        if not any(n.reason == "Created" for n in notes):
            changes = ", ".join(f"{f} {have} -> {want}" for f, (have, want) in drift.items())
            notes.append(Note("DriftRepaired", f"{where} set back as declared: {changes}", True))
        key = _read(client, spec, name)
    message = f"{spec.type.value} {where} at version {key.latest_version}"
    if not managed:
        message += " (adopted: it existed before; kept as declared, never deleted)"
    following = next_rotation(spec, key, now)
    outcome = Outcome(True, "Synced", message, wake_after=_until(following, now))
    return KeyResult(outcome, managed, key, following, notes)


def _until(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (moment - now).total_seconds())
