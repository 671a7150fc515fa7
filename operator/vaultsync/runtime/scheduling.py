"""One scheduler per kind: every object known here, each due at a time, reconciled by a
bounded number of workers.

An object's next reconcile is due after its refresh or resync interval, a backoff after a
failure, or at once when something wakes it (a spec change, its Secret edited, Vault back).
One task serves the whole kind: a heap of due times and at most `concurrency` reconciles at
once. A loop per object (the design before it) kept several tasks and futures per object
alive while it waited, and let thousands of due objects queue up for the worker threads at
once: memory grew with the number of objects, not with the work in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]
log = logging.getLogger(__name__)


class Entry:
    """One object: when it is due, whether a reconcile runs, and the caller's own state."""

    __slots__ = ("again", "context", "due", "failing", "key", "running")

    def __init__(self, key: Key, context: Any) -> None:
        self.key = key
        self.context = context
        self.due: float | None = None  # loop time; None: only when woken
        self.running = False
        self.again = False  # woken while running: due again as soon as it ends
        self.failing = False  # waits for a retry after a failure


def sooner(a: float | None, b: float | None) -> float | None:
    """The shorter of two waits, None meaning none."""
    return b if a is None else a if b is None else min(a, b)


@dataclass(slots=True)
class Pacing:
    """When one object is due again, from the outcomes of its reconciles."""

    failures: int = 0
    ready: bool | None = None
    first: bool = True
    retrying: bool = False  # the last wait is a retry after a failure

    def after(
        self,
        *,
        ready: bool,
        retryable: bool,
        healthy: float | None,
        wake_after: float | None,
        backoff: Callable[[int], float],
        probe: float | None = None,
    ) -> tuple[float | None, bool]:
        """(seconds until due, whether the object just turned Ready after a failure).

        A retryable failure waits its backoff (at most `probe` seconds, for an object whose
        recovery others wait for); a success or a failure a person must fix waits `healthy`
        or `wake_after`, whichever is sooner. The first healthy wait is a random 50-100 % of
        it, so that objects that started together do not keep refreshing together."""
        recovered = ready and self.ready is False
        self.ready = ready
        self.failures = 0 if ready else self.failures + 1
        self.retrying = not ready and retryable
        if self.retrying:
            return sooner(backoff(self.failures), probe), recovered
        if self.first and healthy is not None:
            healthy *= random.uniform(0.5, 1.0)
        self.first = False
        return sooner(healthy, wake_after), recovered

    def failed(self, backoff: Callable[[int], float]) -> float:
        """A reconcile that could not even record its outcome: retried after a backoff."""
        self.failures += 1
        self.retrying = True
        return backoff(self.failures)


Run = Callable[[Entry], Awaitable[float | None]]
"""Reconcile entry's object once; seconds until it is due again (None: only when woken)."""


class Scheduler:
    def __init__(self, run: Run, concurrency: int) -> None:
        self._run = run
        self._concurrency = concurrency
        self._entries: dict[Key, Entry] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._order = 0  # ties in the heap go first come, first served
        self._running = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def add(self, key: Key, context: Any) -> Entry:
        """Know key's object (due at once); an object known already keeps its entry."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry(key, context)
            self._at(entry, 0.0)
        return entry

    def remove(self, key: Key) -> None:
        """Forget key's object: not reconciled again (a reconcile that runs ends as it is)."""
        self._entries.pop(key, None)

    def wake(self, key: Key) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry.running:
            entry.again = True
        else:
            self._at(entry, 0.0)
        return True

    def wake_all(self) -> None:
        for key in list(self._entries):
            self.wake(key)

    def wake_where(self, wanted: Callable[[Key], bool]) -> None:
        for key in [k for k in self._entries if wanted(k)]:
            self.wake(key)

    def running_where(self, wanted: Callable[[Key], bool]) -> bool:
        """Whether a reconcile of one of these objects runs."""
        return any(e.running and wanted(k) for k, e in self._entries.items())

    def keys(self) -> list[Key]:
        return list(self._entries)

    def wake_failing(self) -> None:
        """Reconcile now every object that waits for a retry after a failure."""
        for key in [k for k, e in self._entries.items() if e.failing]:
            self.wake(key)

    def _at(self, entry: Entry, delay: float | None) -> None:
        now = asyncio.get_running_loop().time()
        entry.due = None if delay is None else now + max(0.0, delay)
        if entry.due is not None:
            self._order += 1
            heapq.heappush(self._heap, (entry.due, self._order, entry.key))
            self._changed.set()

    async def serve(self) -> None:
        """Start due reconciles, at most `concurrency` at once, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            while self._heap and self._running < self._concurrency:
                due, _, key = self._heap[0]
                if due > loop.time():
                    break
                heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is None or entry.due != due or entry.running:
                    continue  # forgotten, rescheduled since, or running (it runs again after)
                self._start(entry)
            # a timer that sets the event, not wait_for: that would cost a task per turn
            timer = None
            if self._heap and self._running < self._concurrency:
                timer = loop.call_at(self._heap[0][0], self._changed.set)
            try:
                await self._changed.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _start(self, entry: Entry) -> None:
        entry.running, entry.due = True, None
        self._running += 1
        task = asyncio.create_task(self._one(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, entry: Entry) -> None:
        delay: float | None = None
        try:
            delay = await self._run(entry)
        except asyncio.CancelledError:
            raise
        except Exception:  # never the end of the scheduler; the run says its own failures
            log.exception("reconcile of %s/%s failed unexpectedly", *entry.key)
            delay = 60.0
        finally:
            entry.running = False
            self._running -= 1
            self._changed.set()
        if self._entries.get(entry.key) is entry:
            self._at(entry, 0.0 if entry.again else delay)
            entry.again = False

    async def stop(self) -> None:
        """Cancel the reconciles that run (their threads finish on their own)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
