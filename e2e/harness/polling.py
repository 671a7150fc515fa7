"""The one polling loop of the harness, its tests and its benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from e2e.harness import HarnessError

T = TypeVar("T")


class TimedOut(HarnessError, AssertionError):
    """A condition did not hold in time: a failed step of the harness (HarnessError) and, in a
    test, a failed check (AssertionError)."""


@dataclass(frozen=True)
class Pending:
    """A check's "not yet" that says how far things have got (shown if the wait times out)."""

    progress: str

    def __bool__(self) -> bool:
        return False


class Watched(Protocol):
    """A server process whose death ends a wait at once (e2e.harness.processes.Process)."""

    name: str

    def alive(self) -> bool: ...

    def log_tail(self) -> str: ...


def eventually(
    check: Callable[[], T | None],
    timeout: float = 60,
    what: str = "",
    *,
    interval: float = 0.5,
    retry_on: tuple[type[Exception], ...] = (),
    watch: Watched | None = None,
) -> T:
    """Poll check every interval seconds until it returns something truthy, and return that.

    AssertionErrors and the exceptions in retry_on count as "not yet", like a falsy result or a
    Pending; on timeout, TimedOut says what the check last returned or raised. With watch, a
    server process that exits meanwhile fails the wait at once (HarnessError, with its log).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (AssertionError, *retry_on) as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if watch is not None and not watch.alive():
            raise HarnessError(
                f"{watch.name} exited while waiting for {what}; log tail:\n{watch.log_tail()}"
            )
        time.sleep(interval)
    said = "" if last is None or last is False else f": {_said(last)}"
    tail = f"; {watch.name} log tail:\n{watch.log_tail()}" if watch is not None else ""
    raise TimedOut(f"timed out after {timeout:g}s waiting for {what or check}{said}{tail}")


def _said(last: object) -> str:
    return last.progress if isinstance(last, Pending) else repr(last)
