"""Carrying out a rotation against Vault, step by step as intent.py describes.

Runs with the tenant's own client, inside one reconcile: decide from the record in the
secret's custom metadata, write the intent, write the new data with check-and-set on the
version that was read, record it done, and read back what Vault now holds so the Secret is
synced from Vault (never from values only this process knows). Every step can be cut short
by a crash; the next reconcile finishes it without writing a second version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import hvac

from vaultsync.api.rotation import RotationSpec
from vaultsync.schedule import evaluate
from vaultsync.secrets.rotation.generate import rotated_data
from vaultsync.secrets.rotation.intent import (
    FinishPending,
    Idle,
    Pending,
    RetryPending,
    Rotate,
    decide,
    read_record,
    request_hash,
    with_done,
    with_pending,
)
from vaultsync.vault import kv
from vaultsync.vault.errors import CheckAndSetFailed


@dataclass(frozen=True)
class Rotation:
    """The secret to sync after the rotation step, and what happened."""

    secret: kv.KVSecret
    result: str  # idle, created, rotated, lost-race, finished (a pending one completed)
    why: str
    status: dict[str, Any] = field(default_factory=dict)
    next_rotation: datetime | None = None

    @property
    def rotated(self) -> bool:
        return self.result in ("created", "rotated", "lost-race", "finished")


def _text(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def _write(
    client: hvac.Client, mount: str, path: str, spec: RotationSpec, secret: kv.KVSecret
) -> bool:
    """New values for the listed keys written with cas on secret's version; False when
    someone else wrote first (their write wins, nothing is overwritten)."""
    data = rotated_data(secret.data, spec.keys, lambda policy: kv.generate_password(client, policy))
    try:
        kv.write(client, mount, path, data, cas=secret.version)
    except CheckAndSetFailed:
        return False
    return True


def create(
    client: hvac.Client,
    mount: str,
    path: str,
    spec: RotationSpec,
    request: str | None,
    now: datetime,
) -> Rotation:
    """A secret that does not exist yet is created with generated values (check-and-set on
    version 0, so two writers cannot both create it); its creation counts as the first
    rotation, and as the one a `vaultsync.io/rotate` request there already asked for (a
    VaultSecret applied with it, or its secret created again): recorded as done, so the next
    reconcile does not rotate the new secret at once."""
    data = rotated_data({}, spec.keys, lambda policy: kv.generate_password(client, policy))
    try:
        kv.write(client, mount, path, data, cas=0)
        result = "created"
    except CheckAndSetFailed:
        result = "lost-race"
    latest = kv.read(client, mount, path)
    metadata = latest.custom_metadata
    if request:
        done = Pending(base_version=0, request=request_hash(request))
        metadata = with_done(metadata, done, now)
        kv.write_custom_metadata(client, mount, path, metadata)
    after = evaluate(spec, None, latest.created_time, now)
    return Rotation(
        latest,
        result,
        "the secret did not exist",
        _status(metadata, after.next_rotation),
        after.next_rotation,
    )


def rotate(
    client: hvac.Client,
    mount: str,
    path: str,
    spec: RotationSpec,
    secret: kv.KVSecret,
    request: str | None,
    now: datetime,
) -> Rotation:
    """Rotate secret (the latest version, just read) if its schedule or request is due."""
    record = read_record(secret.custom_metadata)
    due = evaluate(spec, record.last_slot, secret.created_time, now)
    action = decide(record, secret.version, due.slot if due.rotate else None, request)
    metadata = dict(secret.custom_metadata)
    if isinstance(action, Idle):
        return Rotation(
            secret, "idle", due.reason, _status(metadata, due.next_rotation), due.next_rotation
        )
    pending: Pending = action.pending
    if isinstance(action, Rotate):
        metadata = with_pending(metadata, pending)
        kv.write_custom_metadata(client, mount, path, metadata)
    if isinstance(action, Rotate | RetryPending):
        written = _write(client, mount, path, spec, secret)
        result = "rotated" if written else "lost-race"
    else:
        assert isinstance(action, FinishPending)
        result = "finished"
    metadata = with_done(metadata, pending, now)
    kv.write_custom_metadata(client, mount, path, metadata)
    latest = kv.read(client, mount, path)
    after = evaluate(spec, read_record(latest.custom_metadata).last_slot, latest.created_time, now)
    why = due.reason if pending.slot is not None else "requested by vaultsync.io/rotate"
    return Rotation(
        latest,
        result,
        why,
        _status(latest.custom_metadata, after.next_rotation),
        after.next_rotation,
    )


def _status(custom_metadata: dict[str, str], next_rotation: datetime | None) -> dict[str, Any]:
    record = read_record(custom_metadata)
    status: dict[str, Any] = {"nextRotationTime": _text(next_rotation)}
    if record.last_rotation_time is not None:
        status["lastRotationTime"] = _text(record.last_rotation_time)
    if record.rotated_version is not None:
        status["rotatedVersion"] = record.rotated_version
    return status
