"""Templates run in a worker process of their own, with limits on time and memory.

Jinja's sandbox keeps a template from Python's internals, not from computing for hours
(`{{ 7 ** 1000000000 }}` holds the interpreter lock all the while: every object of the
operator stops) or from allocating gigabytes (`{{ 'x' * 10**9 }}`: the container is
OOM-killed, restarts and renders it again). A tenant writes the template, so it is rendered
where it can take neither the operator nor other tenants down: a worker process, imported
with nothing but Jinja, whose address space may grow MEMORY_HEADROOM beyond what it starts
with, and which is killed when a template takes longer than TIMEOUT seconds. Either is a
TemplateFailed of that template; a new worker serves the next render.

The protocol is JSON lines over the worker's stdin and stdout: a request names the templates
(in order) and the context; the answer is a line per template, in the same order, up to the
first that fails. The worker's stderr goes nowhere: an error text may quote a value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import IO, Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_SECRET_BYTES = 1024 * 1024
"""What a Secret holds at most; a template rendering more fails without going on."""
TIMEOUT = 5.0
"""Seconds one template may take; real ones take milliseconds."""
STARTUP_TIMEOUT = 60.0
"""Seconds a new worker may take to import Jinja and say it is ready."""
MEMORY_HEADROOM = 256 * 1024 * 1024
"""Bytes of address space a worker may take beyond what it starts with."""
READY = b"ready\n"
REMEMBERED_FAILURES = 4096
"""Requests that hit a limit (a digest and a short message each), remembered so that
retrying one costs no TIMEOUT again: while one is stopped, every other template waits. The
least recently met is forgotten first."""


class TemplateFailed(Exception):
    """The template of Secret key `key` failed; message may quote a value (redact it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class TemplateOversized(TemplateFailed):
    """The template of Secret key `key` renders more than a Secret holds."""


# --- in the worker --------------------------------------------------------------------------


class _Oversized(ValueError):
    pass


def as_text(value: Any) -> str:
    """A Vault value as the Secret holds it: strings as they are, the rest compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _b64encode(value: Any) -> str:
    raw = value if isinstance(value, bytes) else as_text(value).encode()
    return base64.b64encode(raw).decode()


def _b64decode(value: Any) -> str:
    return base64.b64decode(as_text(value), validate=True).decode()


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["b64encode"] = _b64encode
    env.filters["b64decode"] = _b64decode
    return env


def _rendered(template: Template, context: Mapping[str, Any]) -> str:
    """The output, up to MAX_SECRET_BYTES: beyond that it fails without going on."""
    parts: list[str] = []
    size = 0
    for part in template.generate(context):
        size += len(part)
        if size > MAX_SECRET_BYTES:
            raise _Oversized(f"renders more than {MAX_SECRET_BYTES} characters")
        parts.append(part)
    text = "".join(parts)
    text.encode()  # a lone surrogate cannot be written into a Secret
    return text


def _answers(
    env: ImmutableSandboxedEnvironment, compiled: dict[str, Template], request: dict[str, Any]
) -> Iterator[dict[str, str]]:
    context = request["context"]
    for key, source in request["templates"]:
        try:
            if source not in compiled:
                if len(compiled) >= 1024:
                    compiled.clear()
                compiled[source] = env.from_string(source)
            yield {"key": key, "value": _rendered(compiled[source], context)}
        except _Oversized as exc:
            yield {"key": key, "error": str(exc), "oversized": "true"}
            return
        except MemoryError:
            headroom = MEMORY_HEADROOM // (1024 * 1024)
            yield {"key": key, "error": f"needs more than {headroom} MiB of memory"}
            return
        except Exception as exc:  # anything a template does is its own failure
            yield {"key": key, "error": f"{type(exc).__name__}: {exc}"}
            return


def _limit_memory() -> None:
    import resource  # Unix only, as the worker is

    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
    except OSError:
        return  # not Linux: no address space to measure, and none enforced
    limit = pages * os.sysconf("SC_PAGE_SIZE") + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The worker: answer each request line until stdin closes."""
    _limit_memory()
    env = _environment()
    compiled: dict[str, Template] = {}
    answers.write(READY)
    answers.flush()
    for line in requests:
        for answer in _answers(env, compiled, json.loads(line)):
            answers.write(json.dumps(answer).encode() + b"\n")
            answers.flush()


# --- in the operator ------------------------------------------------------------------------


class _LimitHit(TemplateFailed):
    """The worker was stopped for a template: the same request would be stopped again."""


class _Lines:
    """Lines read from a pipe, each within a deadline (a buffered file would hide a line it
    read ahead from select)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def next(self, timeout: float) -> bytes | None:
        """The next line; None when none came in time or the pipe closed without one."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        end = self.buffer.index(b"\n") + 1
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        return line


class _Worker:
    """One worker process, started when first needed; one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._lines = _Lines(-1)
        self._failures: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def render(self, templates: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
        request = json.dumps({"templates": list(templates.items()), "context": context}) + "\n"
        digest = hashlib.sha256(request.encode()).hexdigest()
        with self._lock:
            known = self._failures.get(digest)
            if known is not None:
                self._failures.move_to_end(digest)
                raise _LimitHit(*known)
            try:
                return self._exchange(request.encode(), list(templates))
            except _LimitHit as exc:
                self._failures[digest] = (exc.key, exc.message)
                if len(self._failures) > REMEMBERED_FAILURES:
                    self._failures.popitem(last=False)
                raise

    def _exchange(self, request: bytes, keys: list[str]) -> dict[str, str]:
        process = self._started(keys[0])
        assert process.stdin is not None
        try:
            process.stdin.write(request)
            process.stdin.flush()
        except OSError:
            self._stop()
            raise TemplateFailed(keys[0], "the template worker exited; retried later") from None
        out: dict[str, str] = {}
        for key in keys:
            line = self._lines.next(TIMEOUT)
            if line is None:
                raise _LimitHit(key, self._stopped())
            answer = json.loads(line)
            if "error" in answer:
                failed = TemplateOversized if answer.get("oversized") else TemplateFailed
                raise failed(key, str(answer["error"]))
            out[key] = str(answer["value"])
        return out

    def _started(self, key: str) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert process.stdout is not None
        self._process, self._lines = process, _Lines(process.stdout.fileno())
        if self._lines.next(STARTUP_TIMEOUT) != READY:
            self._stop()
            raise TemplateFailed(key, "the template worker did not start; retried later")
        return process

    def _stopped(self) -> str:
        """Stop the worker that did not answer in time, or died (the kernel kills a process
        over its cgroup's memory); what happened."""
        died = self._process is not None and self._process.poll() is not None
        self._stop()
        if died:
            return "the template worker died rendering it (out of memory?); stopped"
        return f"took longer than {TIMEOUT:g} s to render; stopped"

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


_WORKER = _Worker()


def render_all(templates: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    """Each template (Secret key -> source) rendered over context (JSON values), in the
    worker; TemplateFailed names the first that fails."""
    return _WORKER.render(templates, context) if templates else {}


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
