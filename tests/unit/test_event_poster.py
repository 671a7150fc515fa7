"""The Event poster's queue: order, a bounded backlog that drops (counted), a drain at exit.
The API client is a stand-in that records (and can hold) each post."""

import threading
from typing import Any

from kubernetes import client

from vaultsync.kube import events
from vaultsync.kube.api import Kube
from vaultsync.runtime import metrics


class Core:
    def __init__(self) -> None:
        self.posted: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.entered.set()
        self.hold.wait(10)
        self.posted.append(f"{namespace}/{body['reason']}")


def _body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": name, "namespace": "team-a", "uid": "u-1"},
    }


def _dropped() -> float:
    value = metrics.REGISTRY.get_sample_value("vaultsync_events_dropped_total")
    return value or 0.0


def test_events_are_posted_in_order_after_emit_returns() -> None:
    core = Core()
    direct = Kube(core, client.CustomObjectsApi())  # type: ignore[arg-type]
    poster = events.Poster(direct)
    kube = Kube(core, direct.custom, events=poster)  # type: ignore[arg-type]
    core.hold.clear()  # the first post waits: emit does not
    for reason in ("A", "B", "C"):
        events.emit(kube, _body("x"), warning=False, reason=reason, message="m")
    assert core.posted == []
    core.hold.set()
    poster.close(timeout=5)
    assert core.posted == ["team-a/A", "team-a/B", "team-a/C"]


def test_a_full_queue_drops_new_events_and_counts_them() -> None:
    core = Core()
    direct = Kube(core, client.CustomObjectsApi())  # type: ignore[arg-type]
    poster = events.Poster(direct, size=2)
    kube = Kube(core, direct.custom, events=poster)  # type: ignore[arg-type]
    core.hold.clear()
    before = _dropped()
    events.emit(kube, _body("x"), warning=True, reason="First", message="m")
    assert core.entered.wait(5)  # the thread took the first: it waits in its post
    for reason in ("Q1", "Q2", "Dropped1", "Dropped2"):
        events.emit(kube, _body("x"), warning=True, reason=reason, message="m")
    assert _dropped() - before == 2
    core.hold.set()
    poster.close(timeout=5)
    assert core.posted == ["team-a/First", "team-a/Q1", "team-a/Q2"]


def test_without_a_poster_an_event_is_posted_at_once() -> None:
    core = Core()
    events.emit(
        Kube(core, client.CustomObjectsApi()),  # type: ignore[arg-type]
        _body("y"),
        warning=False,
        reason="Now",
        message="m",
    )
    assert core.posted == ["team-a/Now"]
