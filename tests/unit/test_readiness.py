"""The readiness endpoint: gating and informational checks, over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from vaultsync.runtime.readiness import OK, PENDING, Readiness


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else {}


@pytest.fixture
def served() -> Iterator[tuple[Readiness, str]]:
    readiness = Readiness(interval=0.05)
    host, port = readiness.serve("http://127.0.0.1:0/readyz")
    yield readiness, f"http://{host}:{port}"
    readiness.close()


def eventually_status(url: str, status: int, startup: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        got, body = get(url)
        if got == status and body["checks"]["startup"] == startup:
            return body
        assert time.monotonic() < deadline, (got, body)
        time.sleep(0.02)


def test_no_gating_check_is_not_ready() -> None:
    readiness = Readiness()
    assert readiness.report() == (False, {"ready": False, "checks": {}, "informational": []})
    readiness.add("vault", lambda: None, gating=False)
    readiness.refresh()
    assert readiness.report()[0] is False


def test_ready_when_every_gating_check_passed_its_last_run() -> None:
    readiness = Readiness()
    state = {"watch": "cannot watch namespaces: 403 Forbidden"}
    readiness.add("startup", lambda: None)
    readiness.add("watch namespaces", lambda: state["watch"])
    readiness.add("vault", lambda: "unreachable", gating=False)
    assert readiness.report()[1]["checks"]["startup"] == PENDING  # not run yet: not ready
    readiness.refresh()
    ready, body = readiness.report()
    assert not ready
    assert body["checks"] == {
        "startup": OK,
        "watch namespaces": "cannot watch namespaces: 403 Forbidden",
        "vault": "unreachable",
    }
    state["watch"] = None  # type: ignore[assignment]
    readiness.refresh()
    ready, body = readiness.report()
    assert ready, body
    assert body["informational"] == ["vault"]  # reported, never gating


def test_a_check_that_raises_fails_without_breaking_the_others() -> None:
    readiness = Readiness()

    def broken() -> str | None:
        raise RuntimeError("boom")

    readiness.add("broken", broken)
    readiness.add("fine", lambda: None)
    readiness.refresh()
    ready, body = readiness.report()
    assert not ready
    assert body["checks"] == {"broken": "RuntimeError: boom", "fine": OK}


def test_slow_checks_run_side_by_side() -> None:
    readiness = Readiness()
    for name in ("a", "b", "c", "d"):
        readiness.add(name, lambda: time.sleep(0.3))  # type: ignore[func-returns-value]
    started = time.monotonic()
    readiness.refresh()
    assert time.monotonic() - started < 0.9
    assert readiness.report()[0]


def test_http_answers_503_then_200_and_404_elsewhere(served: tuple[Readiness, str]) -> None:
    readiness, base = served
    started = threading.Event()
    readiness.add("startup", lambda: None if started.is_set() else "starting")
    body = eventually_status(f"{base}/readyz", 503, "starting")
    assert body == {"ready": False, "checks": {"startup": "starting"}, "informational": []}
    started.set()
    body = eventually_status(f"{base}/readyz?verbose=1", 200, OK)
    assert body["checks"] == {"startup": OK}
    assert get(f"{base}/healthz")[0] == 404


def test_serve_refuses_what_is_not_an_http_url() -> None:
    with pytest.raises(ValueError, match="expected http://HOST:PORT/PATH"):
        Readiness().serve("tcp://0.0.0.0:8082")
