"""The rotation record kept in the secret's KV v2 custom metadata, and the crash-safe protocol.

The record lives in Vault, next to the data it describes, so that a restarted operator, a
second replica or a VaultSecret whose status was lost all see the same history. Its keys
start with `vaultsync-`; every other custom metadata key is carried over untouched (writing
custom metadata replaces the whole map, so the functions here return the complete new map).

The protocol, for a secret read at version V with custom metadata M:

1. `decide(read_record(M), V, slot, request)`; on `Rotate(pending)`:
2. write custom metadata `with_pending(M, pending)`: the intent to rotate from version V;
3. write the new data with check-and-set `cas=V`;
4. write custom metadata `with_done(..., pending, now)`: slot, time and version recorded,
   intent cleared. A check-and-set failure in step 3 means someone else wrote since V: their
   write wins (nothing is overwritten) and the slot is recorded as done all the same.

A crash after step 2 leaves the intent with the version still at V: `RetryPending`, write
again with `cas=V`. A crash after step 3 leaves the intent with the version past V:
`FinishPending`, record it done without writing (the write happened, ours or an external
one). A crash after step 4 leaves nothing pending, and the recorded slot makes the schedule
idle. Two replicas racing through the same steps write at most one version: only one
`cas=V` can succeed. The annotation value of a manual request is never stored, only a short
SHA-256 of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from vaultsync.runtime.errors import SyncError

PREFIX = "vaultsync-"
LAST_SLOT = PREFIX + "last-slot"
LAST_ROTATION_TIME = PREFIX + "last-rotation-time"
ROTATED_VERSION = PREFIX + "rotated-version"
LAST_REQUEST = PREFIX + "last-request"
PENDING = PREFIX + "pending"
OWNED_KEYS = (LAST_SLOT, LAST_ROTATION_TIME, ROTATED_VERSION, LAST_REQUEST, PENDING)

# Vault and OpenBao allow a secret at most 64 custom metadata keys of at most 128 bytes with
# values of at most 512 bytes. Ours stay far below the sizes; the count is what foreign keys
# can exhaust.
MAX_KEYS = 64

REQUEST_HASH_CHARS = 16
REMEMBERED_REQUESTS = 16
"""Manual requests remembered (newest first, comma-separated in LAST_REQUEST: 271 bytes of the
512 a value may hold): a value set again after others, as a GitOps tool reverting a
`kubectl annotate` does, is not a new request."""


class MetadataFull(SyncError):
    """Foreign custom metadata keys leave no room for ours: a person must remove some."""

    reason = "RotationMetadataFull"
    retryable = False


@dataclass(frozen=True)
class Pending:
    """An intent to rotate from base_version, for a schedule slot, a manual request or both."""

    base_version: int
    slot: datetime | None = None
    request: str | None = None
    """request_hash of the annotation value."""


@dataclass(frozen=True)
class Record:
    """What the custom metadata says about past rotations; absent or unreadable values are
    None (the KV version's creation time then stands in for the last slot)."""

    last_slot: datetime | None = None
    last_rotation_time: datetime | None = None
    rotated_version: int | None = None
    requests: tuple[str, ...] = ()
    """request_hash of the manual requests done, newest first."""
    pending: Pending | None = None


@dataclass(frozen=True)
class Idle:
    """Nothing pending and nothing due."""


@dataclass(frozen=True)
class Rotate:
    """Due: record pending, write with cas=pending.base_version, record done."""

    pending: Pending


@dataclass(frozen=True)
class RetryPending:
    """Pending and the version is still the base: the data write did not happen; write
    again with cas=pending.base_version, then record done."""

    pending: Pending


@dataclass(frozen=True)
class FinishPending:
    """Pending and the version moved past the base: the write happened (ours or an external
    one); record done without writing."""

    pending: Pending


Action = Idle | Rotate | RetryPending | FinishPending


def request_hash(value: str) -> str:
    """What is stored for a manual request: a short SHA-256 of the annotation value."""
    return hashlib.sha256(value.encode()).hexdigest()[:REQUEST_HASH_CHARS]


def decide(
    record: Record, current_version: int, slot: datetime | None, request: str | None
) -> Action:
    """What to do for a secret at current_version.

    slot: the schedule's due slot (None when not due); request: the value of the
    `vaultsync.io/rotate` annotation (None or "" when absent). A pending intent is resolved
    before anything new starts; a slot not after the recorded one and a request among the
    last REMEMBERED_REQUESTS handled are not due.
    """
    if record.pending is not None:
        if current_version == record.pending.base_version:
            return RetryPending(record.pending)
        return FinishPending(record.pending)
    if slot is not None and record.last_slot is not None and slot <= record.last_slot:
        slot = None
    wanted = request_hash(request) if request else None
    if wanted in record.requests:
        wanted = None
    if slot is None and wanted is None:
        return Idle()
    return Rotate(Pending(base_version=current_version, slot=slot, request=wanted))


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _parse_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _parse_pending(value: str | None) -> Pending | None:
    if value is None:
        return None
    try:
        raw = json.loads(value)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("base"), int):
        return None
    slot = raw.get("slot")
    request = raw.get("request")
    return Pending(
        base_version=raw["base"],
        slot=_parse_time(slot) if isinstance(slot, str) else None,
        request=request if isinstance(request, str) else None,
    )


def read_record(custom_metadata: Mapping[str, str]) -> Record:
    """The rotation record in a secret's custom metadata."""
    return Record(
        last_slot=_parse_time(custom_metadata.get(LAST_SLOT)),
        last_rotation_time=_parse_time(custom_metadata.get(LAST_ROTATION_TIME)),
        rotated_version=_parse_int(custom_metadata.get(ROTATED_VERSION)),
        requests=tuple(filter(None, custom_metadata.get(LAST_REQUEST, "").split(","))),
        pending=_parse_pending(custom_metadata.get(PENDING)),
    )


def _checked(custom_metadata: dict[str, str]) -> dict[str, str]:
    if len(custom_metadata) > MAX_KEYS:
        raise MetadataFull(
            f"the secret's custom metadata would hold {len(custom_metadata)} keys, more than "
            f"Vault's {MAX_KEYS}: remove some that are not vaultsync's"
        )
    return custom_metadata


def with_pending(custom_metadata: Mapping[str, str], pending: Pending) -> dict[str, str]:
    """custom_metadata with the intent recorded (step 2 of the protocol)."""
    raw: dict[str, str | int] = {"base": pending.base_version}
    if pending.slot is not None:
        raw["slot"] = _time(pending.slot)
    if pending.request is not None:
        raw["request"] = pending.request
    encoded = json.dumps(raw, separators=(",", ":"), sort_keys=True)
    return _checked({**custom_metadata, PENDING: encoded})


def with_done(
    custom_metadata: Mapping[str, str], pending: Pending, now: datetime
) -> dict[str, str]:
    """custom_metadata with the rotation of pending recorded and the intent cleared (step 4).

    The rotated version recorded is base_version + 1: the version that answered the intent,
    ours or the external write that won the race, the same whoever finishes it.
    """
    done = {k: v for k, v in custom_metadata.items() if k != PENDING}
    done[LAST_ROTATION_TIME] = _time(now)
    done[ROTATED_VERSION] = str(pending.base_version + 1)
    if pending.slot is not None:
        recorded = _parse_time(custom_metadata.get(LAST_SLOT))
        latest = pending.slot if recorded is None else max(recorded, pending.slot)
        done[LAST_SLOT] = _time(latest)
    if pending.request is not None:
        earlier = read_record(custom_metadata).requests
        recent = [pending.request, *(r for r in earlier if r != pending.request)]
        done[LAST_REQUEST] = ",".join(recent[:REMEMBERED_REQUESTS])
    return _checked(done)
