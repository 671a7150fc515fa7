"""The informer's bookkeeping and its list/watch/resume/relist cycle, over scripted answers
(its streaming against the real API server: e2e/test_informer.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from vaultsync.kube import informer
from vaultsync.kube.informer import Event, Informer, Known


def _obj(name: str, version: str, namespace: str = "ns", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version, **meta}}


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


class _Response:
    def __init__(self, chunks: list[bytes], then: BaseException | None = None) -> None:
        self.chunks = chunks
        self.then = then
        self.closed = threading.Event()

    def stream(self, _amount: int) -> Iterator[bytes]:
        yield from self.chunks
        if self.then is not None:
            raise self.then

    def shutdown(self) -> None:
        self.closed.set()

    def close(self) -> None:
        self.closed.set()

    def release_conn(self) -> None:
        return None


class _Server:
    """Scripted answers: lists by continue token, then one watch response per call; once the
    script is used up a watch blocks until the informer is stopped."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[_Response]) -> None:
        self.lists = lists  # each: the pages of one list, the last one's version its own
        self.watches = watches
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None) -> bytes:
        query = dict(query or {})
        self.queries.append(("list", query))
        pages = self.lists[0]
        index = int(query.get("continue") or 0)
        page = pages[index]
        meta: dict[str, Any] = {"resourceVersion": page["version"]}
        if index + 1 < len(pages):
            meta["continue"] = str(index + 1)
        else:
            self.lists.pop(0)
        return json.dumps({"metadata": meta, "items": page["items"]}).encode()

    def stream(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None, timeout: float
    ) -> Any:
        self.queries.append(("watch", dict(query or {})))
        if self.watches:
            return self.watches.pop(0)
        return _Blocking()


class _Blocking(_Response):
    def __init__(self) -> None:
        super().__init__([])

    def stream(self, _amount: int) -> Iterator[bytes]:
        self.closed.wait(10)
        return iter(())


def _run(server: _Server, wanted: int, **options: Any) -> list[Event]:
    """The events the informer delivers in the event loop, once `wanted` have come."""
    got: list[Event] = []

    async def main() -> None:
        arrived = asyncio.Event()

        def deliver(kind: str, obj: dict[str, Any]) -> None:
            got.append((kind, obj))
            if len(got) >= wanted:
                arrived.set()

        follower = Informer(server, "/api/v1/secrets", deliver, **options)
        follower.start()
        try:
            await asyncio.wait_for(arrived.wait(), 10)
            await asyncio.sleep(0.05)  # nothing more arrives
        finally:
            await asyncio.to_thread(follower.stop)

    asyncio.run(main())
    return got


def _names(events: list[Event]) -> list[tuple[str, str]]:
    return [(kind, obj["metadata"]["name"]) for kind, obj in events]


def test_known_reports_new_changed_and_repeated_versions() -> None:
    known = Known()
    assert known.seen("ADDED", _obj("a", "1")) == ("ADDED", _obj("a", "1"))
    assert known.seen("ADDED", _obj("a", "1")) is None  # a list repeating what was delivered
    assert known.seen("MODIFIED", _obj("a", "2")) == ("MODIFIED", _obj("a", "2"))
    assert known.seen("DELETED", _obj("a", "3"))[0] == "DELETED"
    assert known.vanished(set()) == []  # nothing known any more


def test_known_tells_what_a_new_list_lacks_by_name_only() -> None:
    known = Known()
    known.listed([_obj("a", "1"), _obj("b", "1", namespace="other")])
    assert known.vanished({("ns", "a")}) == [
        ("DELETED", {"metadata": {"namespace": "other", "name": "b"}})
    ]
    assert known.vanished({("ns", "a")}) == []


def test_pages_then_watch_events_and_bookmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer, "SHORTEST_WATCH", 0.0)  # the scripted watch ends at once
    server = _Server(
        lists=[
            [
                {"version": "5", "items": [_obj("a", "3")]},
                {"version": "5", "items": [_obj("b", "4")]},
            ]
        ],
        watches=[
            _Response(
                [
                    _line("ADDED", _obj("c", "6")),
                    # one event cut across two chunks is decoded once whole
                    _line("MODIFIED", _obj("a", "7"))[:20],
                    _line("MODIFIED", _obj("a", "7"))[20:] + _line("BOOKMARK", _obj("", "8")),
                    _line("DELETED", _obj("b", "9")),
                ]
            )
        ],
    )
    got = _run(server, 5, page=1)
    assert _names(got) == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    lists = [q for what, q in server.queries if what == "list"]
    assert [q.get("continue") for q in lists] == [None, "1"] and lists[0]["limit"] == 1
    watches = [q for what, q in server.queries if what == "watch"]
    assert watches[0]["resourceVersion"] == "5" and watches[0]["allowWatchBookmarks"]
    # the server ended the first watch: the next one resumes from the last version seen
    assert watches[1]["resourceVersion"] == "9"


def test_a_bookmark_moves_the_version_to_resume_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer, "SHORTEST_WATCH", 0.0)
    server = _Server(
        lists=[[{"version": "5", "items": [_obj("a", "3")]}]],
        watches=[_Response([_line("BOOKMARK", _obj("", "42"))])],
    )
    _run(server, 1)
    watches = [q for what, q in server.queries if what == "watch"]
    assert [q["resourceVersion"] for q in watches[:2]] == ["5", "42"]


def test_gone_lists_again_and_delivers_the_difference() -> None:
    gone = {"kind": "Status", "code": 410, "message": "too old resource version"}
    server = _Server(
        lists=[
            [{"version": "5", "items": [_obj("a", "3"), _obj("b", "4"), _obj("same", "2")]}],
            [{"version": "20", "items": [_obj("a", "11"), _obj("same", "2"), _obj("c", "12")]}],
        ],
        watches=[_Response([_line("ERROR", gone)])],
    )
    got = _run(server, 6)
    assert _names(got) == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "same"),
        ("MODIFIED", "a"),
        ("ADDED", "c"),
        ("DELETED", "b"),  # gone while the watch could not follow: by name only
    ]
    assert got[-1][1] == {"metadata": {"namespace": "ns", "name": "b"}}


def test_a_failed_watch_is_resumed_after_a_backoff_without_listing_again() -> None:
    server = _Server(
        lists=[[{"version": "5", "items": [_obj("a", "3")]}]],
        watches=[
            _Response([_line("ADDED", _obj("b", "6"))], then=OSError("connection reset")),
            _Response([_line("ADDED", _obj("c", "7"))]),
        ],
    )
    got = _run(server, 3)
    assert _names(got) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert [what for what, _ in server.queries][:3] == ["list", "watch", "watch"]
    watches = [q for what, q in server.queries if what == "watch"]
    assert watches[1]["resourceVersion"] == "6"


def test_a_refused_list_is_tried_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(informer, "BACKOFF", (0.01,))
    server = _Server(lists=[[{"version": "5", "items": [_obj("a", "3")]}]], watches=[])
    answers = iter([ApiException(status=403, reason="Forbidden")])
    listed = server.call

    def refusing(method: str, path: str, *, query: Mapping[str, Any] | None = None) -> bytes:
        refusal = next(answers, None)
        if refusal is not None:
            raise refusal
        return listed(method, path, query=query)

    server.call = refusing  # type: ignore[method-assign]
    assert _names(_run(server, 1)) == [("ADDED", "a")]


def test_stop_ends_a_watch_that_waits_for_events() -> None:
    server = _Server(lists=[[{"version": "5", "items": []}]], watches=[])

    async def main() -> None:
        follower = Informer(server, "/api/v1/secrets", lambda kind, obj: None)
        follower.start()
        await asyncio.to_thread(follower.listed.wait, 5)
        await asyncio.sleep(0.05)
        await asyncio.to_thread(follower.stop, 2)
        assert follower._thread is not None and not follower._thread.is_alive()

    asyncio.run(main())


def test_a_broken_line_loses_none_of_the_events_before_it() -> None:
    server = _Server(
        lists=[[{"version": "5", "items": []}]],
        watches=[
            _Response([_line("ADDED", _obj("a", "6")) + b"{not json\n"]),
            _Response([_line("ADDED", _obj("b", "7"))]),
        ],
    )
    got = _run(server, 2)
    assert _names(got) == [("ADDED", "a"), ("ADDED", "b")]
    watches = [q for what, q in server.queries if what == "watch"]
    assert watches[1]["resourceVersion"] == "6"


def test_a_failing_consumer_neither_stops_delivery_nor_logs_the_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = _obj("a", "6") | {"data": {"password": "c2VjcmV0LXZhbHVl"}}
    server = _Server(
        lists=[[{"version": "5", "items": []}]],
        # the next change of the same batch, and the next batch, still arrive
        watches=[
            _Response([_line("ADDED", secret) + _line("ADDED", _obj("b", "7"))]),
            _Response([_line("ADDED", _obj("c", "8"))]),
        ],
    )
    got: list[Event] = []

    def deliver(kind: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "a":
            raise KeyError(obj["metadata"]["name"])
        got.append((kind, obj))

    async def main() -> None:
        follower = Informer(server, "/api/v1/secrets", deliver)
        follower.start()
        try:
            for _ in range(100):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(follower.stop)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    assert _names(got) == [("ADDED", "b"), ("ADDED", "c")]
    assert "handling ADDED ns/a of /api/v1/secrets failed" in caplog.text
    assert "c2VjcmV0LXZhbHVl" not in caplog.text


def test_watches_that_end_at_once_are_resumed_after_a_backoff() -> None:
    server = _Server(
        lists=[[{"version": "5", "items": []}]],
        watches=[_Response([]), _Response([]), _Response([_line("ADDED", _obj("a", "6"))])],
    )
    started = time.monotonic()
    assert _names(_run(server, 1)) == [("ADDED", "a")]
    assert time.monotonic() - started >= informer.BACKOFF[0] + informer.BACKOFF[1]
