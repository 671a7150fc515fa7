"""Rotation schedule math: cron in a DST zone, downtime, one rotation per slot, intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultsync.api.rotation import RotationSpec
from vaultsync.schedule import evaluate

BERLIN = ZoneInfo("Europe/Berlin")
KEYS = [{"name": "password", "generate": {}}]


def spec(**timing: Any) -> RotationSpec:
    return RotationSpec.model_validate({**timing, "keys": KEYS})


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold).astimezone(UTC)


DAILY_3AM = spec(schedule="0 3 * * *", timeZone="Europe/Berlin")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def test_daily_slot_is_due_at_its_time_in_the_zone_and_not_before() -> None:
    last = berlin(2025, 1, 10, 3, 0)
    before = evaluate(DAILY_3AM, last, LONG_AGO, berlin(2025, 1, 11, 2, 59))
    assert not before.rotate
    assert before.next_rotation == berlin(2025, 1, 11, 3, 0) == datetime(2025, 1, 11, 2, tzinfo=UTC)
    at = evaluate(DAILY_3AM, last, LONG_AGO, berlin(2025, 1, 11, 3, 0))
    assert at.rotate and at.slot == berlin(2025, 1, 11, 3, 0)
    assert at.next_rotation == berlin(2025, 1, 12, 3, 0)


def test_summer_time_moves_the_slot_in_utc() -> None:
    due = evaluate(DAILY_3AM, berlin(2025, 7, 1, 3, 0), LONG_AGO, berlin(2025, 7, 2, 9, 0))
    assert due.slot == datetime(2025, 7, 2, 1, tzinfo=UTC)


def test_slot_in_the_skipped_hour_runs_when_the_clock_jumps() -> None:
    # 2025-03-30: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    at_230 = spec(schedule="30 2 * * *", timeZone="Europe/Berlin")
    last = berlin(2025, 3, 29, 2, 30)
    due = evaluate(at_230, last, LONG_AGO, berlin(2025, 3, 30, 3, 0))
    assert due.rotate and due.slot == datetime(2025, 3, 30, 1, tzinfo=UTC)
    assert due.next_rotation == berlin(2025, 3, 31, 2, 30)
    again = evaluate(at_230, due.slot, LONG_AGO, berlin(2025, 3, 30, 3, 40))
    assert not again.rotate


def test_slot_in_the_repeated_hour_runs_once() -> None:
    # 2025-10-26: Berlin goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    at_230 = spec(schedule="30 2 * * *", timeZone="Europe/Berlin")
    first_pass = berlin(2025, 10, 26, 2, 30, fold=0)
    assert first_pass == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    due = evaluate(at_230, berlin(2025, 10, 25, 2, 30), LONG_AGO, berlin(2025, 10, 26, 2, 45))
    assert due.rotate and due.slot == first_pass
    for now in (berlin(2025, 10, 26, 2, 15, fold=1), berlin(2025, 10, 26, 2, 45, fold=1)):
        later = evaluate(at_230, first_pass, LONG_AGO, now)
        assert not later.rotate
        assert later.next_rotation == berlin(2025, 10, 27, 2, 30)


def test_slot_of_the_first_pass_is_found_from_the_second_pass() -> None:
    # Walking back from 02:15 CET (second pass) by wall clock would miss 02:30 CEST.
    at_230 = spec(schedule="30 2 * * *", timeZone="Europe/Berlin")
    due = evaluate(
        at_230, berlin(2025, 10, 25, 2, 30), LONG_AGO, berlin(2025, 10, 26, 2, 15, fold=1)
    )
    assert due.rotate and due.slot == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)


def test_every_half_hour_counts_both_passes_of_the_repeated_hour() -> None:
    half_hourly = spec(schedule="*/30 * * * *", timeZone="Europe/Berlin")
    first = berlin(2025, 10, 26, 2, 30, fold=0)
    due = evaluate(half_hourly, first, LONG_AGO, berlin(2025, 10, 26, 2, 10, fold=1))
    assert due.rotate and due.slot == berlin(2025, 10, 26, 2, 0, fold=1)
    assert due.slot - first == timedelta(minutes=30)


def test_downtime_across_three_slots_rotates_once_with_the_latest() -> None:
    last = berlin(2025, 1, 10, 3, 0)
    back = berlin(2025, 1, 13, 12, 0)  # slots of the 11th, 12th and 13th were missed
    due = evaluate(DAILY_3AM, last, LONG_AGO, back)
    assert due.rotate and due.slot == berlin(2025, 1, 13, 3, 0)
    assert due.next_rotation == berlin(2025, 1, 14, 3, 0)
    for later in (back, back + timedelta(seconds=1), berlin(2025, 1, 14, 2, 59)):
        assert not evaluate(DAILY_3AM, due.slot, LONG_AGO, later).rotate


def test_a_slot_is_due_exactly_once() -> None:
    slot = berlin(2025, 1, 11, 3, 0)
    assert evaluate(DAILY_3AM, berlin(2025, 1, 10, 3, 0), LONG_AGO, slot).slot == slot
    assert not evaluate(DAILY_3AM, slot, LONG_AGO, slot).rotate
    assert not evaluate(DAILY_3AM, slot, LONG_AGO, slot + timedelta(hours=23)).rotate


def test_baseline_stands_in_for_an_unrecorded_last_slot() -> None:
    written = berlin(2025, 1, 10, 12, 0)
    stale = evaluate(DAILY_3AM, None, written, berlin(2025, 1, 11, 4, 0))
    assert stale.rotate and stale.slot == berlin(2025, 1, 11, 3, 0)
    fresh = evaluate(DAILY_3AM, None, written, berlin(2025, 1, 11, 2, 0))
    assert not fresh.rotate and fresh.next_rotation == berlin(2025, 1, 11, 3, 0)
    recorded_wins = evaluate(DAILY_3AM, berlin(2025, 1, 11, 3, 0), written, berlin(2025, 1, 11, 4))
    assert not recorded_wins.rotate


def test_recorded_slot_in_the_future_waits_for_the_slot_after_it() -> None:
    # A replica whose clock runs behind sees a slot recorded "in the future".
    recorded = berlin(2025, 1, 12, 3, 0)
    due = evaluate(DAILY_3AM, recorded, LONG_AGO, berlin(2025, 1, 12, 2, 59))
    assert not due.rotate and due.next_rotation == berlin(2025, 1, 13, 3, 0)


def test_interval() -> None:
    hourly = spec(interval="1h")
    last = datetime(2025, 1, 1, 10, tzinfo=UTC)
    early = evaluate(hourly, last, LONG_AGO, last + timedelta(minutes=59, seconds=59))
    assert not early.rotate and early.next_rotation == last + timedelta(hours=1)
    on_time = evaluate(hourly, last, LONG_AGO, last + timedelta(hours=1))
    assert on_time.rotate and on_time.slot == last + timedelta(hours=1)
    assert on_time.next_rotation == last + timedelta(hours=2)


def test_interval_after_downtime_rotates_once_and_counts_from_then() -> None:
    hourly = spec(interval="1h")
    last = datetime(2025, 1, 1, 10, tzinfo=UTC)
    now = last + timedelta(hours=5, minutes=20)
    due = evaluate(hourly, last, LONG_AGO, now)
    assert due.rotate and due.slot == now
    assert due.next_rotation == now + timedelta(hours=1)
    assert not evaluate(hourly, due.slot, LONG_AGO, now + timedelta(minutes=59)).rotate


def test_interval_baseline() -> None:
    written = datetime(2025, 1, 1, 10, 0, 0, 250000, tzinfo=UTC)
    now = written + timedelta(minutes=31)
    due = evaluate(spec(interval="30m"), None, written, now)
    assert due.rotate and due.slot == now


def test_times_come_back_in_utc_and_naive_times_are_refused() -> None:
    due = evaluate(DAILY_3AM, None, LONG_AGO, datetime(2025, 1, 1, 12, tzinfo=BERLIN))
    assert due.slot is not None and due.slot.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        evaluate(DAILY_3AM, None, LONG_AGO, datetime(2025, 1, 1, 12))


SCHEDULES = ["0 3 * * *", "30 2 * * *", "*/20 * * * *", "15 1,2,3 * * *", "0 0 * * MON"]
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]
START = datetime(2025, 10, 20, tzinfo=UTC)


@settings(max_examples=60, deadline=None)
@given(
    schedule=st.sampled_from(SCHEDULES),
    zone=st.sampled_from(ZONES),
    gaps=st.lists(st.integers(min_value=1, max_value=4 * 24 * 60), min_size=1, max_size=40),
)
def test_polling_at_any_times_rotates_once_per_window_that_holds_a_slot(
    schedule: str, zone: str, gaps: list[int]
) -> None:
    """An operator that looks at arbitrary times (downtime included) rotates at a poll iff a
    slot fell since the previous rotation, records strictly increasing slots, each at or
    before the poll, and never one twice."""
    rotation = spec(schedule=schedule, timeZone=zone)
    last: datetime | None = None
    now = START
    recorded: list[datetime] = []
    for gap in gaps:
        previous_now, now = now, now + timedelta(minutes=gap)
        due = evaluate(rotation, last, START, now)
        if due.rotate:
            # a slot at or before the previous poll would have been taken then
            assert due.slot is not None and max(last or START, previous_now) < due.slot <= now
            recorded.append(due.slot)
            last = due.slot
        assert due.next_rotation is not None and due.next_rotation > now
    assert recorded == sorted(set(recorded))
