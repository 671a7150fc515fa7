"""Per-object wake-up signals, so watches can cut a refresh wait short.

A VaultSecret's loop waits for its refresh interval or for a signal: a spec
change, a refresh annotation, or its destination Secret being edited or deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

Key = tuple[str, str]


class Wakers:
    def __init__(self) -> None:
        self._events: dict[Key, asyncio.Event] = {}
        self._failing: set[Key] = set()  # waiting for a retry after a failure

    def register(self, key: Key) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def forget(self, key: Key) -> None:
        self._events.pop(key, None)
        self._failing.discard(key)

    def failing(self, key: Key, failing: bool) -> None:
        """Mark key as waiting for a retry after a failure (or not any more)."""
        if failing:
            self._failing.add(key)
        else:
            self._failing.discard(key)

    def wake_failing(self) -> None:
        """Retry now every object that waits after a failure (Vault is back, say)."""
        for key in self._failing:
            self.wake(key)

    def wake_all(self) -> None:
        for event in self._events.values():
            event.set()

    def wake(self, key: Key) -> bool:
        event = self._events.get(key)
        if event is None:
            return False
        event.set()
        return True


async def wait(event: asyncio.Event, stopped: Awaitable[object], timeout: float | None) -> None:
    """Until event is set or stopped completes, or timeout seconds pass (None: no timeout)."""
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped)]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    event.clear()
