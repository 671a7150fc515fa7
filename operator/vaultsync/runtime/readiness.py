"""The readiness endpoint (`vaultsync run --readiness URL`): can this replica do its work?

A small HTTP server beside kopf's liveness endpoint. Checks are plain callables returning
None when fine or a short description of the problem; they run in a background thread every
`interval` seconds (never in the request, so a probe answers at once and slow checks never
pile up), and GET on the path answers 200 when every *gating* check passed its last run,
503 otherwise, with a JSON body naming each check's last result:

    {"ready": true, "checks": {"startup": "ok", "watch vaultsecrets.vaultsync.io": "ok",
                               "vault (VaultConnection default)": "unreachable: ..."}}

Informational checks (gating=False) are reported in the body but never make the replica
unready. What vaultsync gates on, and why Vault is only informational, is in cli.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
OK = "ok"
PENDING = "not checked yet"


@dataclass
class _Entry:
    check: Check
    gating: bool
    result: str = PENDING


def _run(check: Check) -> str:
    try:
        problem = check()
    except Exception as exc:  # a check that breaks is a failed check, never a crash
        problem = f"{type(exc).__name__}: {exc}"
    return OK if problem is None else problem


class Readiness:
    """Named checks, run in the background, and their verdict served over HTTP."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._closed = False

    def add(self, name: str, check: Check, *, gating: bool = True) -> None:
        """Register a check (replacing one of the same name) and run it soon."""
        with self._lock:
            self._entries[name] = _Entry(check, gating)
        self._wake.set()

    def refresh(self) -> None:
        """Run every check once now, side by side (a slow one delays no other), and record
        the results."""
        with self._lock:
            entries = list(self._entries.items())
        if not entries:
            return
        with ThreadPoolExecutor(len(entries), thread_name_prefix="readiness") as pool:
            results = list(pool.map(lambda item: _run(item[1].check), entries))
        for (name, entry), result in zip(entries, results, strict=True):
            if result != entry.result and entry.result != PENDING:
                log.info("readiness: %s: %s (was: %s)", name, result, entry.result)
            entry.result = result

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): ready when there is a gating check and all passed their last run."""
        with self._lock:
            entries = dict(self._entries)
        gating = [entry for entry in entries.values() if entry.gating]
        ready = bool(gating) and all(entry.result == OK for entry in gating)
        body = {
            "ready": ready,
            "checks": {name: entry.result for name, entry in entries.items()},
            "informational": sorted(name for name, e in entries.items() if not e.gating),
        }
        return ready, body

    def serve(self, url: str) -> tuple[str, int]:
        """Serve the verdict at url (http://HOST:PORT/PATH) and start the background checks;
        returns the address bound (port 0 picks a free one)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"readiness endpoint {url!r}: expected http://HOST:PORT/PATH")
        path = parts.path or "/"
        readiness = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != path:
                    self.send_error(404)
                    return
                ready, body = readiness.report()
                data = json.dumps(body, sort_keys=True).encode()
                self.send_response(200 if ready else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a probe every few seconds is not worth a log line

        server = ThreadingHTTPServer((parts.hostname, parts.port or 80), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="readiness-http", daemon=True).start()
        threading.Thread(target=self._loop, name="readiness-checks", daemon=True).start()
        host, port = server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _loop(self) -> None:
        """Every `interval` seconds while ready; every second while not, so that a replica
        becomes ready soon after it can, without a steady load when it is."""
        while not self._closed:
            started = time.monotonic()
            try:
                self.refresh()
            except RuntimeError:  # no new threads: the interpreter is shutting down
                return
            interval = self.interval if self.report()[0] else min(1.0, self.interval)
            self._wake.wait(max(0.0, interval - (time.monotonic() - started)))
            self._wake.clear()
