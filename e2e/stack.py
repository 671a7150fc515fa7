"""The whole local stack: control plane + OpenBao + CRDs + the operator as a process.

Shared by `make dev` (e2e/dev.py) and the e2e fixtures (e2e/conftest.py).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hvac
import yaml

from e2e.localcluster import ControlPlane, Process, free_port

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_NAMESPACE = "vaultsync-system"
T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 60,
    what: str = "",
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll check until it returns something truthy; fail with what it last said.

    AssertionErrors and the exceptions in retry_on count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, *retry_on) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: {last!r}")


def install_crds(cp: ControlPlane) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


def examples(vault_address: str) -> list[dict[str, Any]]:
    """The objects under examples/, with the VaultConnection pointed at vault_address."""
    objects = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "VaultConnection":
                doc["spec"]["address"] = vault_address
            if doc:
                objects.append(doc)
    return objects


def apply(cp: ControlPlane, objects: list[dict[str, Any]]) -> None:
    manifest = {"apiVersion": "v1", "kind": "List", "items": objects}
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def tenant_policy(namespace: str) -> str:
    return f'path "secret/data/{namespace}/*" {{ capabilities = ["read"] }}\n'


def grant_tenant(vault: hvac.Client, namespace: str, service_account: str = "default") -> None:
    """Vault side of a tenant: a policy for secret/<ns>/* and a Kubernetes-auth role."""
    vault.sys.create_or_update_policy(f"{namespace}-read", tenant_policy(namespace))
    vault.auth.kubernetes.create_role(
        namespace,
        bound_service_account_names=[service_account],
        bound_service_account_namespaces=[namespace],
        policies=[f"{namespace}-read"],
        ttl="1h",
        mount_point="kubernetes",
    )


class Operator:
    """`vaultsync run` as a real process against the local cluster's kubeconfig."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        *,
        verbose: bool = False,
        peering: tuple[str, int] | None = None,
        **env: str,
    ) -> None:
        """verbose runs the operator at DEBUG, so that log scans see everything it says;
        peering (name, priority) joins a kopf peering instead of running standalone."""
        self.workdir = workdir
        self.verbose = verbose
        self.peering = peering
        self.kubeconfig = kubeconfig
        self.metrics_port = free_port()
        self.env = env
        self.process: Process | None = None
        state = workdir / "operator.json"
        if state.exists():
            saved = json.loads(state.read_text())
            self.metrics_port = saved["metrics_port"]
            self.process = Process.load("operator", saved["process"], workdir)

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def start(self) -> None:
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "PYTHONUNBUFFERED": "1",
            "KUBECONFIG": str(self.kubeconfig),
            "VAULTSYNC_NAMESPACE": OPERATOR_NAMESPACE,
            "VAULTSYNC_METRICS_PORT": str(self.metrics_port),
            "VAULTSYNC_MIN_BACKOFF": "1",
            "VAULTSYNC_MAX_BACKOFF": "5",
            "VAULTSYNC_RESYNC_INTERVAL": "2",
            "PYTHONPATH": str(ROOT / "operator"),
            **self.env,
        }
        self.process = Process.spawn(
            "operator",
            [
                sys.executable,
                "-m",
                "vaultsync",
                "run",
                *(
                    [f"--peering={self.peering[0]}", f"--priority={self.peering[1]}"]
                    if self.peering
                    else ["--standalone"]
                ),
                f"--liveness=http://127.0.0.1:{free_port()}/healthz",
                *(["--verbose"] if self.verbose else []),
            ],
            self.workdir,
            env,
        )
        (self.workdir / "operator.json").write_text(
            json.dumps({"metrics_port": self.metrics_port, "process": self.process.dump()})
        )
        eventually(self._serving, 60, "the operator's metrics endpoint")

    def _serving(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError(f"operator exited:\n{self.log_text()[-3000:]}")
        try:
            self.metrics()
        except OSError:
            return False
        return True

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include labels."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, value = line.rsplit(" ", 1)
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.alive() else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """A crash: SIGKILL, no clean shutdown."""
        if self.process is not None:
            self.process.stop(signal.SIGKILL)
