"""HTTP/1.1 connections to one server, kept alive and shared by threads, over http.client.

The clients' own machinery is most of a small request's CPU: a Vault KV read measured 575 us
of client CPU through hvac and requests, 330 us through a urllib3 pool and 200 us through
http.client; a Kubernetes Secret create 620-660 us through the kubernetes client and 370-420
us here, a status patch 700-780 us against 430-460 us. The Vault adapter (vault/transport.py)
and the Kubernetes requests (kube/transport.py) send the requests that matter over these.
"""

from __future__ import annotations

import http.client
import select
import ssl
from collections import deque
from urllib.parse import quote, urlsplit

IDEMPOTENT = frozenset({"GET", "HEAD", "LIST"})
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
"""What a request target keeps as it is; anything else (spaces, controls, non-ASCII) is
percent-encoded, as urllib3 does."""


def dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the server meanwhile (it is readable
    while no request is out: the end of the stream, or bytes nobody asked for)."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


def exchange(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request and its whole answer on conn, which is closed if anything fails."""
    try:
        conn.request(method, target, body=body, headers=headers)
        answer = conn.getresponse()
        return answer, answer.read()
    except BaseException:
        conn.close()
        raise


class Origin:
    """http.client connections to one server, kept alive and shared by threads: a request
    takes an idle one (or opens one) and gives it back once its answer is read whole."""

    def __init__(
        self, base_uri: str, *, context: ssl.SSLContext | None, timeout: float, size: int
    ) -> None:
        parts = urlsplit(base_uri)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if context else 80)
        self.prefix = parts.path.rstrip("/")
        self.context, self.timeout, self.size = context, timeout, size
        self._idle: deque[http.client.HTTPConnection] = deque()

    def _new(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it served a request before."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return self._new(), False
            if not dropped(conn):
                return conn, True
            conn.close()

    def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """The answer's status, headers and body. A reused connection that the server closed
        just as the request went out is retried once on a new one, for reads only: a write
        may have been done."""
        target = quote(self.prefix + path, safe=PRINTABLE)
        conn, reused = self._take()
        try:
            answer, data = exchange(conn, method, target, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused or method not in IDEMPOTENT:
                raise
            conn = self._new()
            answer, data = exchange(conn, method, target, body, headers)
        if answer.will_close or len(self._idle) >= self.size:
            conn.close()
        else:
            self._idle.append(conn)
        return answer.status, answer.getheaders(), data

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
