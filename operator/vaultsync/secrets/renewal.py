"""When a credential with a lifetime is renewed or replaced: pure timing for the kinds whose
Secret expires (VaultPKISecret's certificates, VaultDynamicSecret's leases).

The point is taken from the lifetime the credential really has (a certificate's notBefore to
notAfter, a lease's issue to its expiry), never from what was asked: Vault may cap a TTL, and
a restarted operator or a lost status must come to the same time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_FRACTION = 2 / 3
"""Without a setting: replace at two thirds of the lifetime."""
MIN_WAIT = 1.0
"""The shortest wait before looking again, so that a credential whose renewal point has
passed as soon as it was issued (a lifetime of a second) is not replaced in a busy loop."""


@dataclass(frozen=True)
class Lifetime:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


@dataclass(frozen=True)
class Renewal:
    at: datetime
    note: str = ""
    """Said in the condition's message when the setting could not apply as written."""


def renewal(life: Lifetime, *, before: float | None = None, percent: int | None = None) -> Renewal:
    """When to replace a credential of this lifetime: `before` seconds before its end, or at
    `percent` of it, else at DEFAULT_FRACTION. A `before` not shorter than the lifetime (the
    server shortened it) falls back to the default, and says so."""
    span = life.seconds
    note = ""
    if before is not None:
        if before < span:
            return Renewal(life.end - timedelta(seconds=before))
        note = (
            f"renewBefore ({_human(before)}) is not shorter than the lifetime Vault gave "
            f"({_human(span)}): renewing at two thirds of it instead"
        )
    fraction = percent / 100 if percent is not None else DEFAULT_FRACTION
    return Renewal(life.start + timedelta(seconds=span * fraction), note)


def wait(moment: datetime, now: datetime) -> float:
    """Seconds from now until moment, at least MIN_WAIT."""
    return max(MIN_WAIT, (moment - now).total_seconds())


def _human(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return (
        "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
        or "0s"
    )


JITTER = 0.1
"""A lease is renewed early by up to this fraction of its duration."""


def jitter(seed: str, span: float) -> float:
    """Seconds in [0, JITTER * span), the same for the same seed: many leases issued together
    spread their renewals, and a restarted operator comes to the same times."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * JITTER * span


def lease_renewal(life: Lifetime, percent: int, seed: str) -> datetime:
    """When to renew a lease of this lifetime (its last renewal or issue to its expiry): at
    percent of it, earlier by jitter(seed)."""
    span = life.seconds
    return life.start + timedelta(seconds=span * percent / 100 - jitter(seed, span))


def replacement(end: datetime, duration: float, percent: int) -> datetime:
    """When to replace a credential that ends at end (its lease no longer extends): while
    (100 - percent)% of a lease duration is left, the time the old credential's users have
    to move to the new one."""
    return end - timedelta(seconds=duration * (100 - percent) / 100)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time as status and annotations hold it, or None (absent or unreadable)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
