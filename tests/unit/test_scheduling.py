"""The per-kind scheduler of reconciles, and the watch's copies of our Secrets."""

from __future__ import annotations

import asyncio

from vaultsync.kube.api import Seen
from vaultsync.runtime.scheduling import Entry, Key, Pacing, Scheduler, sooner


class Recorder:
    """A run that notes each reconcile and returns the delay it is told to."""

    def __init__(self, delay: float | None = None, hold: float = 0.0) -> None:
        self.delay = delay
        self.hold = hold  # how long each reconcile takes
        self.runs: list[Key] = []
        self.at_once = 0
        self.most_at_once = 0

    async def __call__(self, entry: Entry) -> float | None:
        self.runs.append(entry.key)
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await asyncio.sleep(self.hold)
        finally:
            self.at_once -= 1
        if entry.context == "boom":
            raise RuntimeError("unexpected")
        return self.delay


async def _serving(scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.serve())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await scheduler.stop()


def test_new_objects_run_at_once_but_never_more_than_the_concurrency() -> None:
    async def run() -> Recorder:
        recorder = Recorder(delay=None, hold=0.02)
        scheduler = Scheduler(recorder, concurrency=3)
        for i in range(10):
            scheduler.add(("ns", f"o{i}"), None)
        await _serving(scheduler, 0.3)
        return recorder

    recorder = asyncio.run(run())
    assert sorted(recorder.runs) == sorted(("ns", f"o{i}") for i in range(10))
    assert recorder.most_at_once == 3


def test_an_object_runs_again_after_its_delay_and_not_after_removal() -> None:
    async def run() -> tuple[int, int]:
        recorder = Recorder(delay=0.05)
        scheduler = Scheduler(recorder, concurrency=2)
        scheduler.add(("ns", "a"), None)
        await _serving(scheduler, 0.28)
        before = len(recorder.runs)
        scheduler.remove(("ns", "a"))
        await _serving(scheduler, 0.15)
        return before, len(recorder.runs)

    before, after = asyncio.run(run())
    assert 3 <= before <= 7 and after == before


def test_a_wake_during_a_reconcile_runs_it_again_once_right_after() -> None:
    async def run() -> list[Key]:
        recorder = Recorder(delay=None, hold=0.05)
        scheduler = Scheduler(recorder, concurrency=2)
        scheduler.add(("ns", "a"), None)
        task = asyncio.create_task(scheduler.serve())
        await asyncio.sleep(0.01)  # running now
        assert scheduler.wake(("ns", "a")) and scheduler.wake(("ns", "a"))
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return recorder.runs

    assert asyncio.run(run()) == [("ns", "a"), ("ns", "a")]


def test_wake_failing_wakes_only_objects_waiting_after_a_failure() -> None:
    async def run() -> list[Key]:
        recorder = Recorder(delay=None)
        scheduler = Scheduler(recorder, concurrency=2)
        for name in ("ok", "bad"):
            scheduler.add(("ns", name), None)
        await _serving(scheduler, 0.05)
        recorder.runs.clear()
        entry = scheduler.get(("ns", "bad"))
        assert entry is not None
        entry.failing = True
        scheduler.wake_failing()
        await _serving(scheduler, 0.05)
        return recorder.runs

    assert asyncio.run(run()) == [("ns", "bad")]


def test_an_unexpected_error_is_logged_and_retried_later() -> None:
    async def run() -> tuple[list[Key], float | None]:
        recorder = Recorder(delay=None)
        scheduler = Scheduler(recorder, concurrency=2)
        scheduler.add(("ns", "x"), "boom")
        scheduler.add(("ns", "y"), None)
        await _serving(scheduler, 0.05)
        entry = scheduler.get(("ns", "x"))
        assert entry is not None
        return recorder.runs, entry.due

    runs, due = asyncio.run(run())
    assert sorted(runs) == [("ns", "x"), ("ns", "y")] and due is not None


def test_seen_keeps_a_compact_copy_without_managed_fields() -> None:
    seen = Seen()
    body = {
        "metadata": {
            "name": "db",
            "namespace": "team",
            "resourceVersion": "7",
            "managedFields": [{"manager": "vaultsync"}],
        },
        "data": {"k": "dg=="},
    }
    seen.put(body)
    copy = seen.get("team", "db")
    assert copy == {
        "metadata": {"name": "db", "namespace": "team", "resourceVersion": "7"},
        "data": {"k": "dg=="},
    }
    assert copy is not None
    copy["data"]["k"] = "changed"  # a caller's edit never reaches the stored copy
    assert seen.get("team", "db") == {**copy, "data": {"k": "dg=="}}
    assert seen.get("other", "db") is None and len(seen) == 1
    seen.drop("team", "db")
    assert seen.get("team", "db") is None and len(seen) == 0


def _backoff(failures: int) -> float:
    return min(300.0, 5.0 * 2 ** (failures - 1))


def test_pacing_backs_off_on_retryable_failures_and_resets_on_success() -> None:
    pacing = Pacing()
    waits = [
        pacing.after(ready=False, retryable=True, healthy=60, wake_after=None, backoff=_backoff)
        for _ in range(4)
    ]
    assert waits == [(5.0, False), (10.0, False), (20.0, False), (40.0, False)]
    assert pacing.retrying
    wait, recovered = pacing.after(
        ready=True, retryable=True, healthy=60, wake_after=None, backoff=_backoff
    )
    assert recovered and 30 <= (wait or 0) <= 60 and pacing.failures == 0
    assert not pacing.retrying


def test_pacing_of_a_recovery_probe_never_waits_longer_than_the_probe() -> None:
    pacing = Pacing()
    for _ in range(8):
        wait, recovered = pacing.after(
            ready=False, retryable=True, healthy=60, wake_after=None, backoff=_backoff, probe=1.0
        )
        assert wait == 1.0 and not recovered


def test_only_the_first_healthy_wait_is_spread_and_wake_after_can_cut_it() -> None:
    pacing = Pacing()
    first = [
        Pacing().after(ready=True, retryable=True, healthy=60, wake_after=None, backoff=_backoff)[0]
        for _ in range(200)
    ]
    assert all(30 <= (w or 0) <= 60 for w in first) and len(set(first)) > 100
    pacing.after(ready=True, retryable=True, healthy=60, wake_after=None, backoff=_backoff)
    assert pacing.after(
        ready=True, retryable=True, healthy=60, wake_after=None, backoff=_backoff
    ) == (60, False)
    assert pacing.after(ready=True, retryable=True, healthy=60, wake_after=7, backoff=_backoff) == (
        7,
        False,
    )
    # a failure a person must fix waits like a success: no backoff, no recovery said
    assert pacing.after(
        ready=False, retryable=False, healthy=60, wake_after=None, backoff=_backoff
    ) == (60, False)
    assert not pacing.retrying
    assert pacing.after(
        ready=True, retryable=True, healthy=None, wake_after=None, backoff=_backoff
    ) == (None, True)


def test_a_first_ready_outcome_is_no_recovery_and_a_failed_record_backs_off() -> None:
    pacing = Pacing()
    assert pacing.after(
        ready=True, retryable=True, healthy=None, wake_after=None, backoff=_backoff
    ) == (None, False)
    assert (pacing.failed(_backoff), pacing.failed(_backoff)) == (5.0, 10.0)
    assert pacing.retrying
    assert sooner(None, None) is None and sooner(3, None) == 3 and sooner(None, 2) == 2
    assert sooner(3, 2) == 2
