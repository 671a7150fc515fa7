"""The rotation record in custom metadata and the protocol around it: a crash at every point,
an external writer, two replicas — at most one new version per slot, no write lost."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vaultsync.secrets.rotation.intent import (
    LAST_REQUEST,
    LAST_ROTATION_TIME,
    LAST_SLOT,
    MAX_KEYS,
    OWNED_KEYS,
    PENDING,
    PREFIX,
    REMEMBERED_REQUESTS,
    ROTATED_VERSION,
    Action,
    FinishPending,
    Idle,
    MetadataFull,
    Pending,
    Record,
    RetryPending,
    Rotate,
    decide,
    read_record,
    request_hash,
    with_done,
    with_pending,
)
from vaultsync.vault.errors import CheckAndSetFailed

SLOT = datetime(2025, 1, 11, 2, 0, tzinfo=UTC)
NOW = SLOT + timedelta(seconds=7)
FOREIGN = {"owner": "team-a", "vaultsync-future-key": "kept too"}


@dataclass
class FakeKV:
    """One KV v2 secret: versions, custom metadata, check-and-set."""

    versions: list[dict[str, Any]] = field(default_factory=lambda: [{"password": "v1"}])
    custom_metadata: dict[str, str] = field(default_factory=lambda: dict(FOREIGN))

    @property
    def version(self) -> int:
        return len(self.versions)

    def write(self, data: dict[str, Any], cas: int) -> int:
        if cas != self.version:
            raise CheckAndSetFailed("check-and-set")
        self.versions.append(dict(data))
        return self.version

    def write_custom_metadata(self, custom_metadata: dict[str, str]) -> None:
        self.custom_metadata = dict(custom_metadata)


class Crash(Exception):
    pass


@dataclass
class Plan:
    """What a replica read and decided (step 1 of the protocol)."""

    version: int
    custom_metadata: dict[str, str]
    action: Action


def plan(kv: FakeKV, slot: datetime | None = SLOT, request: str | None = None) -> Plan:
    metadata = dict(kv.custom_metadata)
    return Plan(kv.version, metadata, decide(read_record(metadata), kv.version, slot, request))


def execute(
    kv: FakeKV,
    planned: Plan,
    *,
    crash_after: str | None = None,
    before_write: Callable[[], None] = lambda: None,
    value: str = "rotated",
) -> None:
    """Steps 2-4 of the protocol in intent's docstring, with a crash after any of them."""
    action = planned.action
    if isinstance(action, Idle):
        return
    metadata = planned.custom_metadata
    if isinstance(action, Rotate):
        metadata = with_pending(metadata, action.pending)
        kv.write_custom_metadata(metadata)
        if crash_after == "pending":
            raise Crash
    if isinstance(action, (Rotate, RetryPending)):
        before_write()
        # A check-and-set failure: someone else wrote; their write wins, the slot is done.
        with contextlib.suppress(CheckAndSetFailed):
            kv.write({"password": value}, cas=action.pending.base_version)
        if crash_after == "data":
            raise Crash
    kv.write_custom_metadata(with_done(metadata, action.pending, NOW))
    if crash_after == "done":
        raise Crash


def run(kv: FakeKV, **kwargs: Any) -> Action:
    planned = plan(kv, kwargs.pop("slot", SLOT), kwargs.pop("request", None))
    execute(kv, planned, **kwargs)
    return planned.action


def assert_done(kv: FakeKV, slot: datetime = SLOT, rotated: int = 2) -> None:
    record = read_record(kv.custom_metadata)
    assert record.pending is None
    assert record.last_slot == slot
    assert record.last_rotation_time == NOW
    assert record.rotated_version == rotated
    assert {k: kv.custom_metadata[k] for k in FOREIGN} == FOREIGN


def test_rotation_writes_one_version_and_records_it() -> None:
    kv = FakeKV()
    assert isinstance(run(kv), Rotate)
    assert kv.versions == [{"password": "v1"}, {"password": "rotated"}]
    assert_done(kv)
    assert isinstance(run(kv), Idle), "the same slot again"
    assert kv.version == 2


@pytest.mark.parametrize(
    ("crash_after", "resumed_by"),
    [("pending", RetryPending), ("data", FinishPending), ("done", Idle)],
)
def test_crash_at_every_point_ends_with_exactly_one_new_version(
    crash_after: str, resumed_by: type[Action]
) -> None:
    kv = FakeKV()
    with pytest.raises(Crash):
        run(kv, crash_after=crash_after)
    restarted = plan(kv)
    assert isinstance(restarted.action, resumed_by)
    execute(kv, restarted, value="after restart")
    assert kv.version == 2
    assert kv.versions[0] == {"password": "v1"}
    assert_done(kv)
    assert isinstance(run(kv), Idle)
    assert kv.version == 2


def test_crashing_again_while_retrying_still_writes_once() -> None:
    kv = FakeKV()
    with pytest.raises(Crash):
        run(kv, crash_after="pending")
    with pytest.raises(Crash):
        run(kv, crash_after="data")
    assert isinstance(run(kv), FinishPending)
    assert kv.version == 2
    assert_done(kv)


def test_external_write_racing_the_rotation_wins() -> None:
    kv = FakeKV()

    def someone_writes() -> None:
        kv.write({"password": "by hand"}, cas=kv.version)

    run(kv, before_write=someone_writes)
    assert kv.versions == [{"password": "v1"}, {"password": "by hand"}]
    assert_done(kv)
    assert isinstance(run(kv), Idle)


def test_external_write_while_the_operator_was_down_is_not_overwritten() -> None:
    kv = FakeKV()
    with pytest.raises(Crash):
        run(kv, crash_after="pending")
    kv.write({"password": "by hand"}, cas=kv.version)
    assert isinstance(run(kv), FinishPending)
    assert kv.versions[-1] == {"password": "by hand"} and kv.version == 2
    assert_done(kv)


def test_two_replicas_deciding_on_the_same_read_write_once() -> None:
    kv = FakeKV()
    first, second = plan(kv), plan(kv)
    assert isinstance(first.action, Rotate) and isinstance(second.action, Rotate)
    execute(kv, first, value="from first")
    execute(kv, second, value="from second")
    assert kv.versions == [{"password": "v1"}, {"password": "from first"}]
    assert_done(kv)


def test_a_replica_reading_mid_rotation_finishes_it_without_writing() -> None:
    kv = FakeKV()
    first = plan(kv)
    with pytest.raises(Crash):
        execute(kv, first, crash_after="pending")
    second = plan(kv)
    assert isinstance(second.action, RetryPending)
    execute(kv, second, value="from second")
    execute(kv, plan(kv))
    assert kv.version == 2 and kv.versions[-1] == {"password": "from second"}
    assert_done(kv)


def test_each_distinct_manual_request_rotates_once_and_is_stored_hashed() -> None:
    kv = FakeKV()
    assert isinstance(run(kv, slot=None, request="2025-01-11 please"), Rotate)
    assert isinstance(run(kv, slot=None, request="2025-01-11 please"), Idle)
    assert isinstance(run(kv, slot=None, request=None), Idle)
    assert isinstance(run(kv, slot=None, request=""), Idle)
    assert kv.version == 2
    record = read_record(kv.custom_metadata)
    assert record.requests == (request_hash("2025-01-11 please"),)
    assert record.last_slot is None, "a manual rotation does not take a schedule slot"
    assert not any("please" in v for v in kv.custom_metadata.values())
    assert isinstance(run(kv, slot=None, request="again"), Rotate)
    assert kv.version == 3


def test_a_value_set_again_after_others_rotates_nothing() -> None:
    """A GitOps tool reverting a `kubectl annotate` sets the value it had before."""
    kv = FakeKV()
    for value in ("from-git", "by-hand", "from-git", "by-hand"):
        run(kv, slot=None, request=value)
    assert kv.version == 3
    for n in range(REMEMBERED_REQUESTS):
        run(kv, slot=None, request=f"request-{n}")
    assert kv.version == 3 + REMEMBERED_REQUESTS
    assert isinstance(run(kv, slot=None, request="by-hand"), Rotate), "forgotten after 16"
    assert all(len(v.encode()) <= 512 for v in kv.custom_metadata.values())


def test_the_single_request_an_older_version_recorded_is_read() -> None:
    assert read_record({LAST_REQUEST: request_hash("r")}).requests == (request_hash("r"),)
    assert decide(read_record({LAST_REQUEST: request_hash("r")}), 3, None, "r") == Idle()


def test_a_request_and_a_slot_due_together_rotate_once() -> None:
    kv = FakeKV()
    action = run(kv, request="now")
    assert isinstance(action, Rotate)
    assert action.pending == Pending(base_version=1, slot=SLOT, request=request_hash("now"))
    assert isinstance(run(kv, request="now"), Idle)
    assert kv.version == 2


def test_a_crashed_manual_request_is_finished_not_repeated() -> None:
    kv = FakeKV()
    with pytest.raises(Crash):
        run(kv, slot=None, request="x", crash_after="data")
    assert isinstance(run(kv, slot=None, request="x"), FinishPending)
    assert isinstance(run(kv, slot=None, request="x"), Idle)
    assert kv.version == 2


def test_decide_ignores_a_slot_not_after_the_recorded_one() -> None:
    record = Record(last_slot=SLOT)
    assert decide(record, 5, SLOT, None) == Idle()
    assert decide(record, 5, SLOT - timedelta(days=1), None) == Idle()
    later = SLOT + timedelta(days=1)
    assert decide(record, 5, later, None) == Rotate(Pending(base_version=5, slot=later))


def test_pending_is_resolved_before_anything_new() -> None:
    pending = Pending(base_version=4, slot=SLOT)
    record = Record(pending=pending)
    later = SLOT + timedelta(days=1)
    assert decide(record, 4, later, "req") == RetryPending(pending)
    assert decide(record, 5, later, "req") == FinishPending(pending)
    assert decide(record, 3, None, None) == FinishPending(pending)


def test_record_round_trip_keeps_foreign_keys() -> None:
    pending = Pending(base_version=7, slot=SLOT, request=request_hash("r"))
    written = with_pending(FOREIGN, pending)
    assert set(written) == {*FOREIGN, PENDING}
    assert read_record(written).pending == pending
    done = with_done(written, pending, NOW)
    assert set(done) == {*FOREIGN, LAST_SLOT, LAST_ROTATION_TIME, ROTATED_VERSION, LAST_REQUEST}
    assert read_record(done) == Record(
        last_slot=SLOT,
        last_rotation_time=NOW,
        rotated_version=8,
        requests=(request_hash("r"),),
    )
    assert done[LAST_SLOT] == "2025-01-11T02:00:00Z"
    assert all(k.startswith(PREFIX) for k in OWNED_KEYS)
    assert all(len(k.encode()) <= 128 and len(v.encode()) <= 512 for k, v in done.items())


def test_recorded_slot_never_moves_back() -> None:
    later = SLOT + timedelta(days=1)
    metadata = with_done({}, Pending(base_version=1, slot=later), NOW)
    again = with_done(metadata, Pending(base_version=2, slot=SLOT), NOW)
    assert read_record(again).last_slot == later


def test_unreadable_values_count_as_absent() -> None:
    garbage = {
        LAST_SLOT: "yesterday",
        LAST_ROTATION_TIME: "2025-01-01T00:00:00",  # no zone
        ROTATED_VERSION: "²",
        PENDING: '{"slot": "x"}',
    }
    assert read_record(garbage) == Record()
    assert read_record({PENDING: "not json"}).pending is None
    assert read_record({PENDING: '{"base": 3, "slot": 1}'}).pending == Pending(base_version=3)


def test_full_custom_metadata_is_refused_with_a_reason() -> None:
    crowded = {f"k{i}": "v" for i in range(MAX_KEYS)}
    with pytest.raises(MetadataFull) as err:
        with_pending(crowded, Pending(base_version=1, slot=SLOT))
    assert err.value.reason == "RotationMetadataFull"
    almost = {f"k{i}": "v" for i in range(MAX_KEYS - 1)}
    assert len(with_pending(almost, Pending(base_version=1))) == MAX_KEYS
