"""When every expected VaultSecret was Ready and every Secret of theirs existed, as seen by
watches of both kinds, each begun with one listing, timed as their events arrive.

Polling for it listed every VaultSecret every half second: at N=1000, 15 listings of 1000
objects in a 7 s sync, which took 0.4 s of the API server's CPU (its profile) and 0.5 s of
the benchmark's, on the 2 cores the operator and the servers share, and which timed the
sync to the next poll only. A watch of the same objects costs the API server little more
than the operator's own watch of them, whose serialised events it shares.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from e2e.harness.conditions import ready_is
from e2e.harness.polling import TimedOut

Key = tuple[str, str]
Lister = Callable[..., Any]
"""A kubernetes client list call that takes watch=, resource_version=, _preload_content=."""
READ_TIMEOUT = 330.0  # a watch asks for 300 s at most, bookmarks come every minute


def _key(obj: dict[str, Any]) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _lines(response: Any) -> Iterator[bytes]:
    pending = b""
    for chunk in response.stream(1 << 16):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())


class Progress:
    """Use as a context manager around what starts the work, then wait()."""

    def __init__(
        self,
        vaultsecrets: Lister,
        secrets: Lister,
        expected: set[Key],
        on_request: Callable[[str], None],
    ) -> None:
        """vaultsecrets, secrets: list calls (label selectors bound); on_request(resource)
        is told of each listing and watch sent, for the benchmark's own request counts."""
        self.expected = expected
        self.first_ready: dict[Key, float] = {}
        """When each expected VaultSecret was first seen Ready (and Ready since)."""
        self.done_at: float | None = None
        self._present: set[Key] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._responses: list[Any] = []
        self._errors: list[BaseException] = []
        self._on_request = on_request
        self._threads = [
            threading.Thread(
                target=self._follow, args=(vaultsecrets, "vaultsecrets", self._vs), daemon=True
            ),
            threading.Thread(
                target=self._follow, args=(secrets, "secrets", self._secret), daemon=True
            ),
        ]
        self._started = threading.Barrier(3)

    def __enter__(self) -> Progress:
        for thread in self._threads:
            thread.start()
        self._started.wait(60)  # both listed: what happens from here on is seen
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        for response in list(self._responses):
            response.shutdown()
        for thread in self._threads:
            thread.join(10)

    def wait(self, timeout: float) -> float:
        """The monotonic time at which everything expected held."""
        if not self._done.wait(timeout):
            with self._lock:
                ready, present = len(self.first_ready), len(self.expected & self._present)
            raise TimedOut(
                f"{len(self.expected)} Secrets and VaultSecrets Ready not seen in {timeout:.0f}s: "
                f"{ready} Ready, {present} Secrets; watch errors: {self._errors}"
            )
        assert self.done_at is not None
        return self.done_at

    # ----------------------------------------------------------------- watches

    def _follow(
        self, lister: Lister, resource: str, apply: Callable[[str, dict[str, Any]], None]
    ) -> None:
        """List, then watch from the listing's version; list again when the watch cannot
        go on (an ERROR event, such as 410 Gone), watch again when it ends."""
        first = True
        try:
            while not self._stopping.is_set():
                self._on_request(f"LIST {resource}")
                listing = json.loads(lister(_preload_content=False).data)
                with self._lock:
                    self._relisted(resource, listing["items"], apply)
                    self._check()
                if first:
                    self._started.wait(60)
                    first = False
                version = listing["metadata"]["resourceVersion"]
                while version and not self._stopping.is_set():
                    version = self._watch(lister, resource, version, apply)
        except Exception as exc:  # said by wait() if it times out
            if not self._stopping.is_set():
                self._errors.append(exc)
        finally:
            if first:
                self._started.abort()

    def _watch(
        self,
        lister: Lister,
        resource: str,
        version: str,
        apply: Callable[[str, dict[str, Any]], None],
    ) -> str:
        """Events from version on, until the watch ends: the version to go on from, or ""
        to list again."""
        self._on_request(f"WATCH {resource}")
        response = lister(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=300,
            _preload_content=False,
            _request_timeout=(10, READ_TIMEOUT),
        )
        self._responses.append(response)
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return ""
                version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    with self._lock:
                        apply(kind, obj)
                        self._check()
        finally:
            self._responses.remove(response)
            response.release_conn()
        return version

    def _relisted(
        self,
        resource: str,
        items: list[dict[str, Any]],
        apply: Callable[[str, dict[str, Any]], None],
    ) -> None:
        """The state as listed; an object Ready before and still keeps its first time."""
        before = self.first_ready.copy()
        if resource == "secrets":
            self._present.clear()
        else:
            self.first_ready.clear()
        for item in items:
            apply("ADDED", item)
        for key in self.first_ready.keys() & before.keys():
            self.first_ready[key] = before[key]

    def _vs(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if key not in self.expected:
            return
        if kind != "DELETED" and ready_is(obj, "True"):
            self.first_ready.setdefault(key, time.monotonic())
        else:
            self.first_ready.pop(key, None)  # must be Ready at the end, not once

    def _secret(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._present.discard(_key(obj))
        else:
            self._present.add(_key(obj))

    def _check(self) -> None:
        if self._done.is_set() or not self.expected <= self.first_ready.keys():
            return
        if self.expected <= self._present:
            self.done_at = time.monotonic()
            self._done.set()
