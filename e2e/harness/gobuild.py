"""Go binaries built from the module proxy into a cache outside the work tree.

`VAULTSYNC_CACHE` (default ~/.cache/vaultsync) holds the generated modules (src/) and the
binaries (bin/); a file lock serialises concurrent builds, from any process.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2e.harness import HarnessError, log
from e2e.harness.processes import tail


def cache_dir() -> Path:
    return Path(os.environ.get("VAULTSYNC_CACHE", "~/.cache/vaultsync")).expanduser()


@contextmanager
def build_lock() -> Iterator[None]:
    """Held while building into the cache: callers check again for their binaries inside it."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def module_gomod(module_at_version: str) -> str:
    """The go.mod of a module version, as `go mod download` fetches it."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        info = json.loads(go(["mod", "download", "-json", module_at_version], outside_any_module))
    return Path(info["GoMod"]).read_text()


def go_build(
    src: Path, gomod: str, packages: list[str], outputs: list[Path], ldflags: str = "-s -w"
) -> None:
    """Build `packages` in a generated module; the i-th package's binary becomes outputs[i].

    Go writes into a scratch dir first and each binary is then renamed into place, so an
    interrupted build never leaves a truncated binary behind.
    """
    started = time.monotonic()
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(gomod)
    imports = "".join(f'\t_ "{package}"\n' for package in packages)
    (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports})\n")
    go(["mod", "tidy"], src)
    out_dir = outputs[0].parent
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        go(["build", f"-ldflags={ldflags}", "-o", f"{scratch}/", *packages], src)
        for package, output in zip(packages, outputs, strict=True):
            os.replace(scratch / _binary_name(package), output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"built {', '.join(o.name for o in outputs)} in {time.monotonic() - started:.0f}s")


def _binary_name(package: str) -> str:
    """`go build -o dir/` names a binary after the last path element, skipping a /vN suffix."""
    parts = package.split("/")
    return parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]


def go(args: list[str], cwd: Path | str) -> str:
    binary = shutil.which("go")
    if binary is None:
        raise HarnessError("the Go toolchain ('go') is needed to build the control plane")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HarnessError(f"go {' '.join(args)} failed:\n{tail(result.stderr)}")
    return result.stdout
