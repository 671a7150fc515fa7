"""External Secrets Operator (ESO) built from the Go module proxy and run out of cluster.

The binary is its module root (`main.go`: the controller command; no webhook, no
cert-controller), built like the control plane's binaries (e2e.harness.gobuild) in a
generated module that requires ESO at ESO_VERSION and carries ESO's own `replace` directives:
`go install` refuses a module that has them, but in the generated main module they apply, so
the dependency versions are ESO's own. Sources and binary are cached under VAULTSYNC_CACHE;
the CRDs come from the same module's `config/crds/bases`.

    python -m e2e.harness.bench.peers.eso   # build (or find) the binary, print its path
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from e2e.harness import HarnessError, log
from e2e.harness.gobuild import build_lock, cache_dir, go, go_build, module_gomod
from e2e.harness.processes import HOST, OneProcessServer, Process, free_port

ESO_MODULE = "github.com/external-secrets/external-secrets"
ESO_VERSION = "v0.16.2"
API_VERSION = "external-secrets.io/v1"
STORE = "vault"
"""The name of each tenant's SecretStore."""
TARGET_PREFIX = "eso-"
"""ESO's Secrets are named after the object with this prefix (vaultsync's keep the name)."""
MANAGED_LABEL = "reconcile.external-secrets.io/managed=true"
"""The label ESO puts on every Secret it manages."""
UNUSED_RECONCILERS = (
    "cluster-store",
    "cluster-external-secret",
    "push-secret",
    "cluster-push-secret",
)
"""Reconcilers of kinds this benchmark does not use, switched off (they would only watch)."""


def binary() -> Path:
    """Where the built binary is cached (it may not exist yet)."""
    return cache_dir() / "bin" / f"eso-{ESO_VERSION}" / "external-secrets"


def module_dir() -> Path:
    """ESO's module source in the Go module cache (downloaded if missing; read-only)."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        answer = go(["mod", "download", "-json", f"{ESO_MODULE}@{ESO_VERSION}"], outside_any_module)
    info: dict[str, Any] = json.loads(answer)
    if "Error" in info or "Dir" not in info:
        raise HarnessError(f"go mod download {ESO_MODULE}@{ESO_VERSION}: {info.get('Error')}")
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    """ESO's CRDs (config/crds/bases, without its kustomization.yaml)."""
    files = sorted((module_dir() / "config" / "crds" / "bases").glob("*.io_*.yaml"))
    if not files:
        raise HarnessError(f"no CRDs in config/crds/bases of {ESO_MODULE}@{ESO_VERSION}")
    return files


def replaces(gomod: str) -> str:
    """The `replace` directives of a go.mod (single-line and block form), one per line."""
    found = re.findall(r"^replace\s+([^(\s].*)$", gomod, re.MULTILINE)
    for block in re.findall(r"^replace\s*\((.*?)^\)", gomod, re.MULTILINE | re.DOTALL):
        found += [line.split("//")[0] for line in block.splitlines()]
    return "".join(f"replace {line.strip()}\n" for line in found if line.strip())


def build() -> Path:
    """Build the ESO binary unless cached (the build lock serialises concurrent callers)."""
    if binary().is_file():
        return binary()
    with build_lock():
        if not binary().is_file():
            src = cache_dir() / "src" / f"eso-{ESO_VERSION}"
            gomod = (
                "module vaultsync.io/peereso\n\ngo 1.25.0\n\n"
                f"require {ESO_MODULE} {ESO_VERSION}\n\n"
                + replaces(module_gomod(f"{ESO_MODULE}@{ESO_VERSION}"))
            )
            log(f"building External Secrets Operator {ESO_VERSION} in {src} ... (many minutes)")
            go_build(src, gomod, [ESO_MODULE], [binary()])
    return binary()


class Eso(OneProcessServer):
    """The ESO controller as a process, as the kubeconfig's user (the bench's: admin)."""

    def __init__(self, workdir: Path, kubeconfig: Path, concurrent: int) -> None:
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.concurrent = concurrent
        self.metrics_port = free_port()
        self.process: Process | None = None

    def args(self) -> list[str]:
        return [
            f"--concurrent={self.concurrent}",
            f"--metrics-addr={HOST}:{self.metrics_port}",
            "--enable-leader-election=false",
            *(f"--enable-{name}-reconciler=false" for name in UNUSED_RECONCILERS),
        ]

    @property
    def log(self) -> Path:
        return self.workdir / "eso.log"

    def start(self) -> None:
        """Start the process (unless running); the caller waits for what it wants to see."""
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process.spawn(
            "eso", [binary(), *self.args()], self.workdir, {"KUBECONFIG": str(self.kubeconfig)}
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def secret_store(namespace: str, vault_address: str) -> dict[str, Any]:
    """The tenant's SecretStore: KV v2 at `secret`, Kubernetes auth as the namespace's
    `default` ServiceAccount with the Vault role named after the namespace (what the tenant's
    VaultAuth says to vaultsync)."""
    kubernetes = {
        "mountPath": "kubernetes",
        "role": namespace,
        "serviceAccountRef": {"name": "default"},
    }
    vault = {"server": vault_address, "path": "secret", "version": "v2"}
    return {
        "apiVersion": API_VERSION,
        "kind": "SecretStore",
        "metadata": {"name": STORE, "namespace": namespace},
        "spec": {"provider": {"vault": {**vault, "auth": {"kubernetes": kubernetes}}}},
    }


def external_secret(
    namespace: str, name: str, path: str, refresh: int, labels: dict[str, str]
) -> dict[str, Any]:
    """An ExternalSecret copying every key of the KV entry at path into `eso-<name>`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "refreshInterval": f"{refresh}s",
            "secretStoreRef": {"name": STORE, "kind": "SecretStore"},
            "target": {"name": f"{TARGET_PREFIX}{name}", "creationPolicy": "Owner"},
            "dataFrom": [{"extract": {"key": path}}],
        },
    }


def main() -> int:
    """Build (or find) the binary and print its path; a failure says what failed."""
    try:
        print(build())
    except HarnessError as exc:
        print(
            f"bench-peers: FAILED: External Secrets Operator {ESO_VERSION} could not be built "
            f"from the Go module proxy ({ESO_MODULE}), so there is nothing to compare with:\n"
            f"{exc}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
