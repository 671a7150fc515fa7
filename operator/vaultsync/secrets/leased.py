"""What a VaultDynamicSecret holds and what to do next: pure (no Vault, no Kubernetes).

The Secret is the record: an annotation on it (`vaultsync.io/lease`) names the lease of the
credential it holds, the request it was issued for, a keyed digest of the data written, the
leases of replaced credentials still to revoke, and whose record it is (`Binding`). It never
holds the credential. Status
mirrors it and adds the lease's expiry, which moves with every renewal (a Secret write per
renewal would be churn): when status does not describe the Secret's lease (lost, or behind
after a crash), the lease is renewed at once, which tells its expiry again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vaultsync.api.dynamic import VaultDynamicSecretSpec
from vaultsync.secrets.destination import Owner as Owner
from vaultsync.secrets.destination import drifted, is_managed_by, written
from vaultsync.secrets.digest import keyed_digest
from vaultsync.secrets.renewal import Lifetime, lease_renewal, parse_time, replacement, rfc3339
from vaultsync.vault.leases import Credential

LEASE_ANNOTATION = "vaultsync.io/lease"
ROTATION_MARGIN = 2.0
"""Seconds after a static role's rotation time before its password is read again, so that
the read sees the new one."""


def request_digest(spec: VaultDynamicSecretSpec) -> str:
    """Who asks for what, shaped how: a new value means a new credential (the Secret holds
    the shaped data only, so a new shape needs the credential read again)."""
    shape = {
        "keys": [k.model_dump(by_alias=True) for k in spec.keys],
        "template": spec.template,
    }
    text = json.dumps([spec.auth_ref, spec.mount, spec.path, shape], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Pending:
    """A replaced credential's lease and when it is revoked."""

    lease_id: str
    at: datetime

    def status(self) -> dict[str, str]:
        return {"leaseID": self.lease_id, "revokeAt": rfc3339(self.at)}


@dataclass(frozen=True)
class Binding:
    """Whose a record is: the object's namespace, kind and name, and the Secret it is on. The
    MAC covers it, so a record copied from another Secret (another namespace's, another
    object's, or the same object's under another name) is no record here."""

    namespace: str
    kind: str
    name: str
    secret: str

    @classmethod
    def of(cls, owner: Owner, secret: str) -> Binding:
        return cls(owner.namespace, owner.kind, owner.name, secret)

    def fields(self) -> list[str]:
        return [self.namespace, self.kind, self.name, self.secret]


@dataclass(frozen=True)
class Record:
    """The annotation: lease ("" for a static role), request digest, when issued, the
    duration Vault gave then, whether renewable, the data's keyed digest, pending
    revocations, and its Binding ("for"); sealed with a keyed MAC over all of it, so that
    whoever may edit Secrets cannot make vaultsync renew or revoke a lease of their choosing,
    nor take another object's record for this one's (a record that fails it is none).

    Records sealed before the binding existed have no "for": such a record is honoured only
    when status (which only vaultsync writes, and only for this object) names the same,
    non-empty lease, and is sealed again with the binding at the next write of the Secret.
    Without that (status lost, a static role's record) it is none: a new credential is read,
    and the old lease, no longer renewed, ends at its expiry; nothing is revoked on its
    word."""

    lease_id: str
    request: str
    issued: datetime
    ttl: int
    renewable: bool
    data: str
    revoke: tuple[Pending, ...] = ()

    def text(self, key: bytes, binding: Binding) -> str:
        body = {
            "lease": self.lease_id,
            "request": self.request,
            "issued": rfc3339(self.issued),
            "ttl": self.ttl,
            "renewable": self.renewable,
            "data": self.data,
            "revoke": [[p.lease_id, rfc3339(p.at)] for p in self.revoke],
            "for": binding.fields(),
        }
        return json.dumps({**body, "mac": _mac(key, body)}, separators=(",", ":"))

    @classmethod
    def parse(
        cls, text: str | None, key: bytes, binding: Binding, listed: str | None = None
    ) -> Record | None:
        """The record in text if its MAC holds and it is binding's; listed: the lease status
        names, which alone vouches for a record sealed before the binding."""
        try:
            raw = json.loads(text or "")
            mac = raw.pop("mac")
            if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, raw)):
                return None
            if "for" in raw:
                if raw.pop("for") != binding.fields():
                    return None
            elif not listed or raw["lease"] != listed:
                return None
            issued = parse_time(raw["issued"])
            pending = tuple(
                Pending(str(lease), at)
                for lease, when in raw.get("revoke") or []
                if (at := parse_time(when)) is not None
            )
            if issued is None:
                return None
            return cls(
                str(raw["lease"]),
                str(raw["request"]),
                issued,
                int(raw["ttl"]),
                bool(raw["renewable"]),
                str(raw["data"]),
                pending,
            )
        except (ValueError, KeyError, TypeError):
            return None


def _mac(key: bytes, body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return keyed_digest(key, {LEASE_ANNOTATION: text.encode()})


@dataclass(frozen=True)
class Held:
    """A credential a Secret of ours holds: its record and the data we wrote."""

    record: Record
    data: dict[str, bytes] = field(repr=False)


def ours(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """The data we wrote to the Secret (with Merge: the keys we recorded)."""
    encoded = dict(secret.get("data") or {})
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    if "vaultsync.io/managed-keys" in annotations:
        keys = written(secret).keys
        encoded = {k: v for k, v in encoded.items() if k in keys}
    return {k: base64.b64decode(v) for k, v in encoded.items()}


def record_on(
    secret: Mapping[str, Any], owner: Owner, key: bytes, listed: str | None
) -> Record | None:
    """The record on secret if it is owner's record for that Secret (Record.parse; listed:
    the lease owner's status names)."""
    meta = secret.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(LEASE_ANNOTATION)
    return Record.parse(text, key, Binding.of(owner, str(meta.get("name"))), listed)


def kept(
    current: Mapping[str, Any] | None, owner: Owner, key: bytes, listed: str | None
) -> Held | str:
    """The credential the Secret holds, or why it holds none we can keep (listed: the lease
    status names). Only the data counts: labels or annotations edited by hand are repaired
    around the same credential."""
    if current is None:
        return "the Secret does not exist"
    if not is_managed_by(current, owner):
        return f"the Secret holds no credential of this {owner.kind}"
    record = record_on(current, owner, key, listed)
    if record is None:
        return "the Secret holds no lease record vaultsync wrote"
    try:
        data = ours(current)
    except ValueError:
        return "the Secret's data is unreadable"
    if drifted(current, key=key) and keyed_digest(key, data) != record.data:
        return "the Secret's data was changed by someone else"
    return Held(record, data)


@dataclass(frozen=True)
class Lease:
    """What status says of the Secret's lease: its current lifetime (last renewal or issue
    to expiry) and, once known, when the credential ends for good."""

    life: Lifetime
    credential_end: datetime | None

    @classmethod
    def issued(cls, ttl: int, renewable: bool, now: datetime) -> Lease:
        """The lease of a credential read now: a static role's (not renewable) ends for good."""
        end = now + timedelta(seconds=ttl)
        return cls(Lifetime(now, end), None if renewable else end)


def lease_of(status: Mapping[str, Any], record: Record) -> Lease | None:
    """The lease status describes, if it is the record's; None when status cannot say."""
    if status.get("leaseID", None) != record.lease_id:
        return None
    expiry = parse_time(status.get("leaseExpiry"))
    if expiry is None:
        return None
    renewed = parse_time(status.get("lastRenewalTime"))
    start = max(record.issued, renewed) if renewed is not None else record.issued
    return Lease(Lifetime(start, expiry), parse_time(status.get("credentialExpiry")))


def pending(
    held: Held | str, status: Mapping[str, Any], current: str | None
) -> tuple[Pending, ...]:
    """The revocations still to do: the Secret's and status's (either may have been lost),
    without the lease the Secret holds (current)."""
    found: dict[str, Pending] = {}
    recorded = held.record.revoke if isinstance(held, Held) else ()
    listed = [
        Pending(str(p.get("leaseID")), at)
        for p in status.get("pendingRevocations") or []
        if isinstance(p, Mapping)
        and p.get("leaseID")
        and (at := parse_time(p.get("revokeAt"))) is not None
    ]
    for item in (*recorded, *listed):
        if item.lease_id != current and item.lease_id not in found:
            found[item.lease_id] = item
    return tuple(found.values())


def replaced(
    held: Held | str,
    status: Mapping[str, Any],
    grace: float,
    now: datetime,
    known: Iterable[str | Pending] = (),
) -> tuple[Pending, ...]:
    """Leases a new credential replaces, revoked after the grace period: the one the Secret
    held and the one status names (a Secret restored from a backup, or deleted by hand),
    without those known already (pending, or gone from Vault)."""
    ids = [held.record.lease_id] if isinstance(held, Held) else []
    ids.append(str(status.get("leaseID") or ""))
    skip = {k.lease_id if isinstance(k, Pending) else k for k in known}
    at = now + timedelta(seconds=grace)
    return tuple(Pending(lease, at) for lease in dict.fromkeys(ids) if lease and lease not in skip)


class Step(StrEnum):
    KEEP = "keep"  # nothing due
    RENEW = "renew"  # extend the lease
    ISSUE = "issue"  # read a new credential (a static role: read the rotated password)


@dataclass(frozen=True)
class Decision:
    step: Step
    why: str = ""
    at: datetime | None = None
    """With KEEP: when something is due next."""
    gone: str = ""
    """With ISSUE: the lease Vault no longer knows (nothing to revoke)."""


def decide(
    held: Held | str, request: str, lease: Lease | None, percent: int, now: datetime
) -> Decision:
    """What to do now with the credential a Secret holds."""
    if isinstance(held, str):
        return Decision(Step.ISSUE, held)
    record = held.record
    if record.request != request:
        return Decision(Step.ISSUE, "the spec asks for another credential")
    if not record.lease_id:  # a static role: read again once Vault rotated the password
        if lease is None:
            return Decision(Step.ISSUE, "the rotation time is not recorded")
        at = lease.life.end + timedelta(seconds=ROTATION_MARGIN)
        if now >= at:
            return Decision(Step.ISSUE, "Vault rotated the password")
        return Decision(Step.KEEP, at=at)
    if lease is None:
        return Decision(Step.RENEW, "the lease's expiry is not recorded")
    end = lease.credential_end or (None if record.renewable else lease.life.end)
    if end is not None:
        at = replacement(end, record.ttl, percent)
        if now >= at:
            return Decision(Step.ISSUE, f"the credential ends at {rfc3339(end)}")
        return Decision(Step.KEEP, at=at)
    at = lease_renewal(lease.life, percent, record.lease_id)
    if now >= at:
        return Decision(Step.RENEW, "its renewal time has come")
    return Decision(Step.KEEP, at=at)


def renewed(lease: Lifetime, requested: int, got: int, renewable: bool) -> Lease:
    """The lease after a renewal that asked for requested seconds and got got: a shorter
    extension (Vault's max_ttl) or one that cannot be renewed again is the credential's end."""
    capped = got < requested or not renewable
    return Lease(lease, lease.end if capped else None)


def with_revoke(record: Record, revoke: tuple[Pending, ...]) -> Record:
    return replace(record, revoke=revoke)


def new_record(
    held: Held | str, fresh: Credential, request: str, digest: str, now: datetime
) -> Record:
    """The record of a credential just read. A static role's password read again unchanged
    keeps the record it had, so that nothing is written."""
    if (
        not fresh.leased
        and isinstance(held, Held)
        and (held.record.lease_id, held.record.request, held.record.data) == ("", request, digest)
    ):
        return held.record
    return Record(fresh.lease_id, request, now, fresh.ttl, fresh.renewable, digest)
