"""When a rotation is due: pure time arithmetic over a RotationTiming, shared by VaultSecret
rotation and VaultTransitKey's own schedule.

A cron schedule is a sequence of slots; a slot is due when it lies in (last, now], where
`last` is the slot recorded in Vault by the previous rotation, or, when nothing is recorded,
the creation time of the KV version in use (so data newer than every slot is left alone).
Only the latest due slot is returned: an operator that was down across several slots rotates
once, and recording that slot makes it impossible to rotate twice for it. An interval counts
from the last rotation: its slot is the time it was found due, so after downtime the next
rotation is a whole interval after the late one, not on a grid that may be a second away.

Cron is evaluated by cronsim rather than croniter: it is small, typed, dependency-free, walks
backwards as well as forwards (the latest slot before now is one step, whatever the downtime)
and handles DST transitions as Debian cron does: a fixed-time job inside a skipped hour runs
when the clock jumps, and one inside a repeated hour runs once. Every datetime handed out is
in UTC: Python compares two datetimes of the same zone by wall clock, ignoring `fold`, so
01:30 before and after a fall-back transition would compare equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from vaultsync.api.base import parse_duration
from vaultsync.api.rotation import RotationTiming

_JUST_AFTER = timedelta(microseconds=1)


@dataclass(frozen=True)
class Due:
    """Whether to rotate now, why, which slot to record, and when the next rotation falls.

    `slot` is set only when `rotate` is; `next_rotation` is None when a cron schedule has no
    further slot (cronsim looks 50 years ahead). All times are UTC.
    """

    rotate: bool
    reason: str
    slot: datetime | None
    next_rotation: datetime | None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: rotation times must carry a time zone")
    return moment.astimezone(UTC)


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(spec: RotationTiming, last: datetime | None, baseline: datetime, now: datetime) -> Due:
    """Whether spec wants a rotation at now.

    last: the slot recorded by the previous rotation, None when nothing is recorded;
    baseline: the creation time of the KV version in use, which stands in for last then.
    """
    start = _utc(last if last is not None else baseline)
    since = "the last rotation" if last is not None else "the current version was written"
    now = _utc(now)
    if spec.interval is not None:
        return _interval(timedelta(seconds=parse_duration(spec.interval)), start, since, now)
    assert spec.schedule is not None  # RotationTiming holds exactly one of them
    return _cron(spec.schedule, ZoneInfo(spec.time_zone), start, since, now)


def _cron(schedule: str, zone: ZoneInfo, start: datetime, since: str, now: datetime) -> Due:
    latest = _latest_slot(schedule, zone, now)
    if latest is not None and latest > start:
        return Due(
            rotate=True,
            reason=f"schedule slot {_text(latest)} is due ({since}: {_text(start)})",
            slot=latest,
            next_rotation=_next_slot(schedule, zone, now),
        )
    following = _next_slot(schedule, zone, max(now, start))
    return Due(
        rotate=False,
        reason="no schedule slot since " + _text(start),
        slot=None,
        next_rotation=following,
    )


def _interval(every: timedelta, start: datetime, since: str, now: datetime) -> Due:
    """An interval counts from the last rotation itself: its slot is the moment it is due
    and found, so the next one is a full interval later, also after downtime."""
    if now - start < every:
        return Due(
            rotate=False,
            reason=f"interval not elapsed since {_text(start)}",
            slot=None,
            next_rotation=start + every,
        )
    return Due(
        rotate=True,
        reason=f"interval elapsed ({since}: {_text(start)})",
        slot=now,
        next_rotation=now + every,
    )


def _slots_after(schedule: str, zone: ZoneInfo, moment: datetime) -> Iterator[datetime]:
    """The slots strictly after moment, in order.

    cronsim walks wall-clock times; starting in the second pass of a repeated hour it yields
    the first pass's instant (earlier in real time) first, which is skipped here.
    """
    for slot in CronSim(schedule, moment.astimezone(zone)):
        instant = _utc(slot)
        if instant > moment:
            yield instant


def _latest_slot(schedule: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The latest slot at or before now."""
    # Backwards from just after now, as cronsim yields slots strictly before its start.
    found = next(CronSim(schedule, (now + _JUST_AFTER).astimezone(zone), reverse=True), None)
    if found is None:
        return None
    latest = _utc(found)
    # Walking back over a repeated hour can step past a slot of its first pass; walking
    # forwards from there finds it.
    for slot in _slots_after(schedule, zone, latest):
        if slot > now:
            break
        latest = slot
    return latest


def _next_slot(schedule: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    return next(_slots_after(schedule, zone, after), None)
