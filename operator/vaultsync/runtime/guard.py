"""Serialising one object's reconciles with its cleanup, in the worker threads.

Reconciles run in threads. When an object is deleted, kopf cancels its loop, but a
thread already reconciling runs on; holding the lock in the thread (not in the event
loop) makes the cleanup wait for it, and a reconcile that starts after the cleanup
began does nothing, so nothing is written to Vault after it was cleaned up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Guard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finishing = threading.Event()

    def run(self, work: Callable[[], T]) -> T | None:
        """work(), unless the cleanup has begun (then None)."""
        with self._lock:
            if self._finishing.is_set():
                return None
            return work()

    def finish(self, cleanup: Callable[[], T]) -> T:
        """cleanup() once no reconcile runs; no reconcile runs after it either."""
        self._finishing.set()
        with self._lock:
            return cleanup()
