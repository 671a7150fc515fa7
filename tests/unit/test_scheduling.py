"""Wake-ups of object loops, and the watch's copies of our Secrets."""

from __future__ import annotations

import asyncio

from vaultsync.kube.api import Seen
from vaultsync.runtime.scheduling import Wakers, wait


def test_wake_failing_wakes_only_objects_waiting_after_a_failure() -> None:
    async def run() -> tuple[bool, bool, bool]:
        wakers = Wakers()
        ok, bad, healed = (wakers.register(("ns", n)) for n in ("ok", "bad", "healed"))
        wakers.failing(("ns", "bad"), True)
        wakers.failing(("ns", "healed"), True)
        wakers.failing(("ns", "healed"), False)
        wakers.wake_failing()
        return ok.is_set(), bad.is_set(), healed.is_set()

    assert asyncio.run(run()) == (False, True, False)


def test_a_forgotten_object_is_no_longer_failing() -> None:
    async def run() -> bool:
        wakers = Wakers()
        wakers.register(("ns", "a"))
        wakers.failing(("ns", "a"), True)
        wakers.forget(("ns", "a"))
        again = wakers.register(("ns", "a"))  # re-created under the same name
        wakers.wake_failing()
        return again.is_set()

    assert asyncio.run(run()) is False


def test_wait_returns_when_woken_and_clears_the_signal() -> None:
    async def run() -> tuple[float, bool]:
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, event.set)
        started = loop.time()
        await wait(event, asyncio.sleep(30), 30)
        return loop.time() - started, event.is_set()

    elapsed, still_set = asyncio.run(run())
    assert elapsed < 5 and not still_set


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
