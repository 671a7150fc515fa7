"""Server processes that outlive the Python process that started them, and their state files.

Every server runs in its own session, so a CLI ``up`` outlives its Python process; pids are
recorded in JSON state files next to each server's log, with the process's start time so that
a reused pid is never mistaken for our server. Linux only: /proc tells them apart.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from e2e.harness import HarnessError
from e2e.harness.polling import eventually

HOST = "127.0.0.1"
STOP_TIMEOUT = 20.0


_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A port to listen on, below the kernel's ephemeral range: a port the kernel picks for
    port 0 comes from the range that outgoing connections use, so between this check and
    the server's bind a client connection (thousands in a benchmark) could take it. Never
    the same port twice in this process."""
    low = 32768
    if _EPHEMERAL.exists():
        low = int(_EPHEMERAL.read_text().split()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError("no free port below the ephemeral range")


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the third (state) on; None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str | None:
    """Start time (clock ticks since boot) of a live, non-zombie process; None if gone."""
    fields = proc_stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


def http_status(url: str, context: ssl.SSLContext | None = None) -> int | None:
    """HTTP status of a GET, or None if the server does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, http.client.HTTPException):
        return None


@dataclass
class Process:
    """A server process in its own session, possibly started by an earlier Python process."""

    name: str
    pid: int
    start_time: str | None
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str | Path],
        workdir: Path,
        env: dict[str, str] | None = None,
    ) -> Self:
        log = workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(arg) for arg in argv],
                cwd=workdir,
                env={**os.environ, **env} if env else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, popen.pid, _start_time(popen.pid), log, popen)

    @classmethod
    def load(cls, name: str, state: dict[str, Any], workdir: Path) -> Self:
        return cls(name, state["pid"], state["start_time"], workdir / f"{name}.log")

    def dump(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time}

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.start_time is not None and _start_time(self.pid) == self.start_time

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send `sig`, escalating to SIGKILL if the process outlives the stop timeout."""
        for attempt in (sig, signal.SIGKILL):
            if not self.alive():
                return
            with suppress(ProcessLookupError):
                os.kill(self.pid, attempt)
            with suppress(HarnessError):
                eventually(
                    lambda: not self.alive(), STOP_TIMEOUT, f"{self.name} to exit", interval=0.2
                )
        if self.alive():
            raise HarnessError(f"{self.name} (pid {self.pid}) survived SIGKILL")

    def log_tail(self) -> str:
        try:
            return tail(self.log.read_text(errors="replace"))
        except OSError:
            return "(no log)"


class Server:
    """Something made of server processes: started, stopped, and a context manager doing both."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


class OneProcessServer(Server):
    """A Server that is a single process (None until started, or re-attached from state)."""

    process: Process | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the server, None if it is not running."""
        return self.process.pid if self.process and self.process.alive() else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def stop(self) -> None:
        """Graceful stop (SIGTERM; SIGKILL only if it hangs)."""
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """Crash-stop with SIGKILL: no graceful shutdown."""
        if self.process is not None:
            self.process.stop(signal.SIGKILL)


class JsonFile:
    """A small JSON document in a work dir (0600: it may hold credentials)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def write(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.path)
