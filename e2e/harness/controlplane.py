"""A real Kubernetes control plane on 127.0.0.1, envtest-style: etcd, kube-apiserver and
kube-controller-manager (the controllers for ServiceAccounts, tokens, namespaces, Deployments,
StatefulSets, DaemonSets and garbage collection). No kubelet: pods are created but never run.

    with ControlPlane(tmp / "cluster") as cp:
        cp.kubectl("get", "namespaces")
"""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from e2e.harness import log
from e2e.harness.binaries import Binaries, run_kubectl
from e2e.harness.pki import ControlPlanePki
from e2e.harness.polling import eventually
from e2e.harness.processes import HOST, JsonFile, Process, Server, free_port, http_status

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
KCM_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",  # a ControllerRevision per pod-template change (restart tests)
    "daemonset-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",  # the chart's roles aggregated into view/edit/admin
)

_KUBERNETES_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))  # 10.0.0.1


class ControlPlane(Server):
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, envtest-style.

    Ports, PKI, etcd data and pids persist in `workdir`; a ControlPlane constructed on a work
    dir that a previous (possibly still running) instance used picks all of that up again.
    """

    _COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
    _PORTS = (*_COMPONENTS, "etcd-peer")

    def __init__(self, workdir: Path | str, binaries: Binaries | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.binaries = binaries or Binaries.cached()
        self.kubeconfig = self.workdir / "kubeconfig"
        self._pki = ControlPlanePki(self.workdir / "pki", (HOST, _KUBERNETES_SERVICE_IP))
        self._state = JsonFile(self.workdir / "controlplane.json")
        state = self._state.read()
        self._ports: dict[str, int] = state.get("ports") or {n: free_port() for n in self._PORTS}
        self._processes = {
            name: Process.load(name, process, self.workdir)
            for name, process in state.get("processes", {}).items()
        }

    @property
    def server(self) -> str:
        return f"https://{HOST}:{self._ports['kube-apiserver']}"

    @property
    def ca_pem(self) -> str:
        return self._pki.ca_crt.read_text()

    @property
    def pids(self) -> dict[str, int | None]:
        """Pid of each component, None where it is not running."""
        alive = {name: p.pid for name, p in self._processes.items() if p.alive()}
        return {name: alive.get(name) for name in self._COMPONENTS}

    @property
    def running(self) -> bool:
        return None not in self.pids.values()

    def start(self) -> None:
        """Start all components (no-op if they all still run) and wait until usable."""
        if self.running:
            return
        self.stop()
        started = time.monotonic()
        try:
            self._start_components()
        except BaseException:
            self.stop()  # the servers outlive us (own sessions): never leave a partial cluster
            raise
        log(f"control plane ready at {self.server} in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Stop components in reverse start order (SIGTERM, then SIGKILL)."""
        if not self._processes:
            return
        for process in reversed(list(self._processes.values())):
            process.stop()
        self._processes.clear()
        self._save()

    def restart_apiserver(self, down: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM), leave it down for `down` seconds, start it again on
        the same port, etcd and certificates; wait until it is ready."""
        self._processes.pop("kube-apiserver").stop()
        self._save()
        time.sleep(down)
        self._start_apiserver()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster as cluster-admin."""
        return run_kubectl(self.binaries, self.kubeconfig, *args, input=input, check=check)

    def _start_components(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki.ensure()
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfig()
        self._start_controller_manager()

    def _spawn(self, name: str, argv: Sequence[str | Path]) -> Process:
        process = Process.spawn(name, argv, self.workdir)
        self._processes[name] = process
        self._save()
        return process

    def _save(self) -> None:
        self._state.write(
            {
                "ports": self._ports,
                "processes": {name: p.dump() for name, p in self._processes.items()},
            }
        )

    def _start_etcd(self) -> None:
        client = f"http://{HOST}:{self._ports['etcd']}"
        peer = f"http://{HOST}:{self._ports['etcd-peer']}"
        process = self._spawn(
            "etcd",
            [
                self.binaries.etcd,
                "--name=local",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
            ],
        )
        eventually(
            lambda: http_status(f"{client}/health") == 200,
            30,
            "etcd /health",
            interval=0.2,
            watch=process,
        )

    def _start_apiserver(self) -> None:
        pki = self._pki
        process = self._spawn(
            "kube-apiserver",
            [
                self.binaries.kube_apiserver,
                f"--etcd-servers=http://{HOST}:{self._ports['etcd']}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                "--endpoint-reconciler-type=none",  # Endpoints may not hold a loopback address
                f"--secure-port={self._ports['kube-apiserver']}",
                f"--cert-dir={pki.dir}",
                f"--tls-cert-file={pki.serving_crt}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=200",
            ],
        )
        context = pki.admin_context()
        eventually(
            lambda: http_status(f"{self.server}/readyz", context) == 200,
            120,
            "kube-apiserver /readyz",
            interval=0.2,
            watch=process,
        )

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines): every completed write to a Secret (who,
        with which User-Agent, when, its status code) and to a Lease (with the Lease sent)."""
        return self.workdir / "audit.log"

    def _audit_policy(self) -> Path:
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [
                {  # the control plane's own leader elections and node heartbeats
                    "level": "None",
                    "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
                    "namespaces": ["kube-system", "kube-node-lease"],
                },
                {
                    "level": "Request",
                    "verbs": ["create", "update", "patch", "delete"],
                    "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
                },
                {
                    "level": "Metadata",
                    "verbs": ["create", "update", "patch", "delete"],
                    "resources": [{"group": "", "resources": ["secrets"]}],
                },
                {"level": "None"},
            ],
        }
        path = self.workdir / "audit-policy.json"
        path.write_text(json.dumps(policy))
        return path

    def _write_kubeconfig(self) -> None:
        """Admin kubeconfig with everything embedded (JSON is valid kubeconfig YAML)."""

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "vaultsync",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self._pki.ca_crt),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self._pki.admin_crt),
                        "client-key-data": b64(self._pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "vaultsync", "context": {"cluster": "vaultsync", "user": "admin"}}
            ],
            "current-context": "vaultsync",
        }
        JsonFile(self.kubeconfig).write(config)

    def _start_controller_manager(self) -> None:
        process = self._spawn(
            "kube-controller-manager",
            [
                self.binaries.kube_controller_manager,
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self._pki.sa_key}",
                f"--root-ca-file={self._pki.ca_crt}",
                f"--bind-address={HOST}",
                f"--secure-port={self._ports['kube-controller-manager']}",
                f"--controllers={','.join(KCM_CONTROLLERS)}",
            ],
        )
        eventually(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            60,
            "the default ServiceAccount (kube-controller-manager working)",
            interval=0.2,
            watch=process,
        )
