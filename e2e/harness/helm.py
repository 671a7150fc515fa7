"""Helm v3 built from the Go module proxy into the control plane's binary cache.

``python -m e2e.harness.helm`` builds it (unless cached) and prints its path; the chart tests
call :func:`build_helm` themselves, so they never skip for want of a helm binary.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from e2e.harness import HarnessError, log
from e2e.harness.gobuild import build_lock, cache_dir, go_build, module_gomod

HELM_VERSION = os.environ.get("VAULTSYNC_HELM_VERSION", "3.22.0")
HELM_MODULE = "helm.sh/helm/v3"


def helm_path() -> Path:
    return cache_dir() / "bin" / f"helm-v{HELM_VERSION}" / "helm"


def build_helm() -> Path:
    """Build helm unless cached; the control plane's build lock serialises concurrent callers."""
    helm = helm_path()
    if helm.is_file():
        return helm
    with build_lock():
        if not helm.is_file():
            _build(helm)
    return helm


def _build(helm: Path) -> None:
    src = cache_dir() / "src" / f"helm-v{HELM_VERSION}"
    gomod = f"module vaultsync.io/localhelm\n\ngo 1.26.0\n\nrequire {HELM_MODULE} v{HELM_VERSION}\n"
    log(f"building helm v{HELM_VERSION} in {src} ... (a cold build takes minutes)")
    go_build(src, gomod, [f"{HELM_MODULE}/cmd/helm"], [helm], ldflags=_ldflags())


def _ldflags() -> str:
    """What helm's own Makefile sets: its version, and the Kubernetes version that
    `.Capabilities.KubeVersion` and lint's deprecation checks assume (derived from the
    client-go it is built with; unset, both fall back to v1.20)."""
    major, minor = _client_go_version()
    flags = ["-s", "-w", f"-X {HELM_MODULE}/internal/version.version=v{HELM_VERSION}"]
    for package in ("pkg/chartutil", "pkg/lint/rules"):
        flags += [
            f"-X {HELM_MODULE}/{package}.k8sVersionMajor={major}",
            f"-X {HELM_MODULE}/{package}.k8sVersionMinor={minor}",
        ]
    return " ".join(flags)


def _client_go_version() -> tuple[int, int]:
    """Kubernetes major/minor of the client-go in helm's go.mod (v0.37.0 -> 1, 37)."""
    gomod = module_gomod(f"{HELM_MODULE}@v{HELM_VERSION}")
    found = re.search(r"^\s*k8s\.io/client-go\s+v(\d+)\.(\d+)\.", gomod, re.MULTILINE)
    if found is None:
        raise HarnessError(f"no k8s.io/client-go requirement in helm v{HELM_VERSION}")
    return int(found[1]) + 1, int(found[2])


if __name__ == "__main__":
    try:
        print(build_helm())
    except HarnessError as error:
        print(f"helm: error: {error}", file=sys.stderr)
        sys.exit(1)
