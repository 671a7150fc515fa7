"""When a credential with a lifetime is replaced: pure timing for the kinds whose Secret
expires (VaultPKISecret's certificates; a leased credential's max TTL works the same way).

The point is taken from the lifetime the credential really has (a certificate's notBefore to
notAfter, a lease's issue to its expiry), never from what was asked: Vault may cap a TTL, and
a restarted operator or a lost status must come to the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
