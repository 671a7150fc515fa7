"""The control plane's binaries: etcd, kube-apiserver, kube-controller-manager and kubectl,
built from their Go modules (`VAULTSYNC_K8S_VERSION`, `VAULTSYNC_ETCD_VERSION`)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from e2e.harness import log
from e2e.harness.gobuild import build_lock, cache_dir, go_build, module_gomod

K8S_VERSION = os.environ.get("VAULTSYNC_K8S_VERSION", "1.35.4")
ETCD_VERSION = os.environ.get("VAULTSYNC_ETCD_VERSION", "3.6.16")


@dataclass(frozen=True)
class Binaries:
    """Paths of the built control-plane binaries (they may not exist yet)."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    etcd: Path

    @classmethod
    def cached(cls) -> Self:
        kube = cache_dir() / "bin" / f"k8s-v{K8S_VERSION}"
        return cls(
            kube_apiserver=kube / "kube-apiserver",
            kube_controller_manager=kube / "kube-controller-manager",
            kubectl=kube / "kubectl",
            etcd=cache_dir() / "bin" / f"etcd-v{ETCD_VERSION}" / "etcd",
        )

    @property
    def kube(self) -> tuple[Path, Path, Path]:
        return self.kube_apiserver, self.kube_controller_manager, self.kubectl

    def exist(self) -> bool:
        return all(path.is_file() for path in (*self.kube, self.etcd))


def build() -> Binaries:
    """Build the binaries unless cached; a file lock serialises concurrent callers."""
    binaries = Binaries.cached()
    if binaries.exist():
        return binaries
    with build_lock():
        if not all(path.is_file() for path in binaries.kube):
            _build_kube(binaries)
        if not binaries.etcd.is_file():
            _build_etcd(binaries)
    return binaries


def _build_kube(binaries: Binaries) -> None:
    src = cache_dir() / "src" / f"k8s-v{K8S_VERSION}"
    replaces = "".join(
        f"replace {module} => {module} {_staging_version(K8S_VERSION)}\n"
        for module in _unversioned_requirements(f"k8s.io/kubernetes@v{K8S_VERSION}")
    )
    gomod = (
        "module vaultsync.io/localcluster\n\ngo 1.25.0\n\n"
        f"require k8s.io/kubernetes v{K8S_VERSION}\n\n{replaces}"
    )
    packages = [f"k8s.io/kubernetes/cmd/{path.name}" for path in binaries.kube]
    log(
        f"building {', '.join(p.name for p in binaries.kube)} v{K8S_VERSION} in {src} ... "
        "(cold builds take many minutes)"
    )
    go_build(src, gomod, packages, list(binaries.kube))


def _build_etcd(binaries: Binaries) -> None:
    src = cache_dir() / "src" / f"etcd-v{ETCD_VERSION}"
    gomod = (
        "module vaultsync.io/localetcd\n\ngo 1.25.0\n\n"
        f"require go.etcd.io/etcd/server/v3 v{ETCD_VERSION}\n"
    )
    log(f"building etcd v{ETCD_VERSION} in {src} ... (cold builds take many minutes)")
    go_build(src, gomod, ["go.etcd.io/etcd/server/v3"], [binaries.etcd])


def _staging_version(k8s_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y pairs with its staging modules (k8s.io/api, ...) at v0.X.Y."""
    return "v0." + k8s_version.split(".", 1)[1]


def _unversioned_requirements(module_at_version: str) -> list[str]:
    """Modules that the given module's go.mod requires at v0.0.0 (its in-repo replacements)."""
    pattern = re.compile(r"^\s*(?:require\s+)?(\S+)\s+v0\.0\.0\s*(?://.*)?$", re.MULTILINE)
    return sorted(set(pattern.findall(module_gomod(module_at_version))))


def run_kubectl(
    binaries: Binaries,
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the built kubectl with kubeconfig; with check, a failure raises with its stderr."""
    argv = [str(binaries.kubectl), "--kubeconfig", str(kubeconfig), *args]
    result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        error = subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
        error.add_note(result.stderr)
        raise error
    return result
