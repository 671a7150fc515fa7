"""Guard: a cleanup waits for a running reconcile, and no reconcile runs after it."""

import threading

from vaultsync.runtime.guard import Guard


def test_cleanup_waits_for_the_running_reconcile_and_stops_later_ones() -> None:
    guard = Guard()
    order: list[str] = []
    started, release = threading.Event(), threading.Event()

    def reconcile() -> str:
        started.set()
        release.wait(5)
        order.append("reconcile")
        return "done"

    running = threading.Thread(target=guard.run, args=(reconcile,))
    running.start()
    started.wait(5)
    cleanup = threading.Thread(target=guard.finish, args=(lambda: order.append("cleanup"),))
    cleanup.start()
    cleanup.join(0.2)
    assert order == [], "the cleanup waits while a reconcile runs"
    release.set()
    running.join(5)
    cleanup.join(5)
    assert order == ["reconcile", "cleanup"]
    assert guard.run(reconcile) is None
    assert order == ["reconcile", "cleanup"]
