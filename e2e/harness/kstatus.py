"""kstatus as Flux computes it: sigs.k8s.io/cli-utils' status.Compute, run on live objects by a
small Go helper (e2e/kstatus) built into the binary cache.

``python -m e2e.harness.kstatus KUBECONFIG TARGET...`` builds it (unless cached) and prints its
answer; e2e/test_kstatus.py calls :func:`kstatus`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from e2e.harness import ROOT, HarnessError, log
from e2e.harness.gobuild import build_lock, cache_dir, go
from vaultsync import GROUP, VERSION

SOURCE = ROOT / "e2e" / "kstatus"
MODULE = "sigs.k8s.io/cli-utils"


def cli_utils_version() -> str:
    """The cli-utils version that e2e/kstatus/go.mod pins."""
    found = re.search(rf"^\s*{re.escape(MODULE)}\s+(v\S+)", (SOURCE / "go.mod").read_text(), re.M)
    if found is None:
        raise HarnessError(f"no {MODULE} requirement in {SOURCE / 'go.mod'}")
    return found[1]


def helper_path() -> Path:
    """Cached per cli-utils version and per content of the helper's module."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    folder = f"kstatus-cli-utils-{cli_utils_version()}-{digest.hexdigest()[:12]}"
    return cache_dir() / "bin" / folder / "vaultsync-kstatus"


def build_kstatus() -> Path:
    helper = helper_path()
    if helper.is_file():
        return helper
    with build_lock():
        if not helper.is_file():
            log(f"building vaultsync-kstatus with {MODULE} {cli_utils_version()} ...")
            helper.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=helper.parent))
            try:
                # go.sum pins every module; -mod=readonly fails rather than change the tree
                go(["build", "-mod=readonly", "-ldflags=-s -w", "-o", str(scratch), "."], SOURCE)
                os.replace(scratch / "kstatus", helper)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return helper


@dataclass(frozen=True)
class Kstatus:
    """status.Compute's answer for one object."""

    status: str  # InProgress, Failed, Current, Terminating
    message: str
    conditions: dict[str, str]  # the standard conditions it derived: type -> reason

    def __str__(self) -> str:
        derived = ", ".join(f"{t}/{r}" for t, r in self.conditions.items())
        return f"{self.status} ({derived or 'no conditions'}): {self.message}"


def target(plural: str, name: str, namespace: str | None = None) -> str:
    """How the helper names an object: RESOURCE/NAME or RESOURCE/NAMESPACE/NAME."""
    return "/".join(filter(None, (plural, namespace, name)))


def kstatus(kubeconfig: Path, *targets: str) -> dict[str, Kstatus]:
    """kstatus of vaultsync objects, read from the API server by the Go helper in one go."""
    helper = build_kstatus()
    flags = [f"-kubeconfig={kubeconfig}", f"-group={GROUP}", f"-version={VERSION}"]
    result = subprocess.run(
        [str(helper), *flags, *targets],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise HarnessError(f"vaultsync-kstatus failed: {result.stderr.strip()}")
    answers = json.loads(result.stdout)
    return {
        name: Kstatus(
            answer["status"],
            answer["message"],
            {c["type"]: c.get("reason", "") for c in answer.get("conditions") or []},
        )
        for name, answer in answers.items()
    }


if __name__ == "__main__":
    try:
        if len(sys.argv) < 3:
            raise HarnessError("usage: python -m e2e.harness.kstatus KUBECONFIG TARGET...")
        for name, answer in kstatus(Path(sys.argv[1]), *sys.argv[2:]).items():
            print(f"{name}: {answer}")
    except HarnessError as error:
        print(f"kstatus: error: {error}", file=sys.stderr)
        sys.exit(1)
