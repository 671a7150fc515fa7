"""A real local Kubernetes control plane and OpenBao server for `make dev` and e2e tests.

Builds etcd, kube-apiserver, kube-controller-manager and kubectl from source (cached outside
the work tree), starts them envtest-style on 127.0.0.1, and runs a persistent (non-dev-mode)
OpenBao with Kubernetes auth wired to the cluster. No kubelet: pods are created but never run.

Library use (pytest)::

    with ControlPlane(tmp / "cluster") as cp, OpenBao(tmp / "openbao") as bao:
        configure_kubernetes_auth(bao, cp)

CLI use: ``python -m e2e.localcluster {build,up,down,status}`` (see ``--help``).

Every server runs in its own session, so a CLI ``up`` outlives its Python process; the pids
live in a JSON state file in each work dir, and constructing a ControlPlane or OpenBao on an
existing work dir re-attaches to whatever that state describes. Linux only: /proc tells our
servers apart from unrelated processes that reuse a recorded pid.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import http.client
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import hvac
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hvac.exceptions import VaultError

K8S_VERSION = os.environ.get("VAULTSYNC_K8S_VERSION", "1.35.4")
ETCD_VERSION = os.environ.get("VAULTSYNC_ETCD_VERSION", "3.6.16")

HOST = "127.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
KCM_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
)
TOKEN_REVIEWER_NAMESPACE = "vaultsync-system"
TOKEN_REVIEWER_NAME = "vault-token-reviewer"
TOKEN_REVIEWER_TTL = "8760h"

_KUBERNETES_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))  # 10.0.0.1
_CERT_VALIDITY = timedelta(days=3650)
_STOP_TIMEOUT = 20.0


class LocalClusterError(RuntimeError):
    """A local component failed to build, start or stop."""


def _log(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- build


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


def cache_dir() -> Path:
    return Path(os.environ.get("VAULTSYNC_CACHE", "~/.cache/vaultsync")).expanduser()


def build() -> Binaries:
    """Build the binaries unless cached; a file lock serialises concurrent callers."""
    binaries = Binaries.cached()
    if binaries.exist():
        return binaries
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    _log(
        f"building {', '.join(p.name for p in binaries.kube)} v{K8S_VERSION} in {src} ... "
        "(cold builds take many minutes)"
    )
    _go_build(src, gomod, packages, list(binaries.kube))


def _build_etcd(binaries: Binaries) -> None:
    src = cache_dir() / "src" / f"etcd-v{ETCD_VERSION}"
    gomod = (
        "module vaultsync.io/localetcd\n\ngo 1.25.0\n\n"
        f"require go.etcd.io/etcd/server/v3 v{ETCD_VERSION}\n"
    )
    _log(f"building etcd v{ETCD_VERSION} in {src} ... (cold builds take many minutes)")
    _go_build(src, gomod, ["go.etcd.io/etcd/server/v3"], [binaries.etcd])


def _staging_version(k8s_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y pairs with its staging modules (k8s.io/api, ...) at v0.X.Y."""
    return "v0." + k8s_version.split(".", 1)[1]


def _unversioned_requirements(module_at_version: str) -> list[str]:
    """Modules that the given module's go.mod requires at v0.0.0 (its in-repo replacements)."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        info = json.loads(_go(["mod", "download", "-json", module_at_version], outside_any_module))
    gomod = Path(info["GoMod"]).read_text()
    pattern = re.compile(r"^\s*(?:require\s+)?(\S+)\s+v0\.0\.0\s*(?://.*)?$", re.MULTILINE)
    return sorted(set(pattern.findall(gomod)))


def _go_build(
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
    _go(["mod", "tidy"], src)
    out_dir = outputs[0].parent
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        _go(["build", f"-ldflags={ldflags}", "-o", f"{scratch}/", *packages], src)
        for package, output in zip(packages, outputs, strict=True):
            os.replace(scratch / _go_binary_name(package), output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _log(f"built {', '.join(o.name for o in outputs)} in {time.monotonic() - started:.0f}s")


def _go_binary_name(package: str) -> str:
    """`go build -o dir/` names a binary after the last path element, skipping a /vN suffix."""
    parts = package.split("/")
    return parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]


def _go(args: list[str], cwd: Path | str) -> str:
    go = shutil.which("go")
    if go is None:
        raise LocalClusterError("the Go toolchain ('go') is needed to build the control plane")
    result = subprocess.run([go, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalClusterError(f"go {' '.join(args)} failed:\n{_tail(result.stderr)}")
    return result.stdout


# --------------------------------------------------------------------------- processes


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _proc_start_time(pid: int) -> str | None:
    """Start time (clock ticks since boot) of a live, non-zombie process; None if gone.

    Recorded next to each pid so that a reused pid is never mistaken for our server.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _http_status(url: str, context: ssl.SSLContext | None = None) -> int | None:
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
        return cls(name, popen.pid, _proc_start_time(popen.pid), log, popen)

    @classmethod
    def load(cls, name: str, state: dict[str, Any], workdir: Path) -> Self:
        return cls(name, state["pid"], state["start_time"], workdir / f"{name}.log")

    def dump(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time}

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.start_time is not None and _proc_start_time(self.pid) == self.start_time

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send `sig`, escalating to SIGKILL if the process outlives the stop timeout."""
        for attempt in (sig, signal.SIGKILL):
            if not self.alive():
                return
            with suppress(ProcessLookupError):
                os.kill(self.pid, attempt)
            with suppress(LocalClusterError):
                _wait_for(f"{self.name} to exit", lambda: not self.alive(), _STOP_TIMEOUT)
        if self.alive():
            raise LocalClusterError(f"{self.name} (pid {self.pid}) survived SIGKILL")

    def log_tail(self) -> str:
        try:
            return _tail(self.log.read_text(errors="replace"))
        except OSError:
            return "(no log)"


def _wait_for(
    what: str, ready: Callable[[], bool], timeout: float, process: Process | None = None
) -> None:
    """Poll `ready` until it holds, failing early (with its log) if `process` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and not process.alive():
            raise LocalClusterError(
                f"{process.name} exited while waiting for {what}; log tail:\n{process.log_tail()}"
            )
        time.sleep(0.2)
    log = f"; {process.name} log tail:\n{process.log_tail()}" if process else ""
    raise LocalClusterError(f"timed out after {timeout:.0f}s waiting for {what}{log}")


class _JsonFile:
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


# --------------------------------------------------------------------------- PKI


def _write_pem(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class _Ca:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def certificate(self) -> bytes:
        ca = [(x509.BasicConstraints(ca=True, path_length=None), True), (_key_usage(ca=True), True)]
        return self._sign(self.name, self.key, ca)

    def issue(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, *sans: x509.GeneralName
    ) -> tuple[bytes, bytes]:
        """A new leaf key and certificate, as (certificate PEM, private key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(ca=False), True),
            (x509.ExtendedKeyUsage([usage]), False),
        ]
        if sans:
            extensions.append((x509.SubjectAlternativeName(sans), False))
        return self._sign(subject, key, extensions), _private_pem(key)

    def _sign(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        extensions: Sequence[tuple[x509.ExtensionType, bool]],
    ) -> bytes:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + _CERT_VALIDITY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class _Pki:
    """The control plane's certificates and keys: one CA signs serving and client certs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_crt = directory / "ca.crt"
        self.serving_crt = directory / "apiserver.crt"
        self.serving_key = directory / "apiserver.key"
        self.admin_crt = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    def ensure(self) -> None:
        """Generate everything once; kept across restarts so issued tokens stay valid."""
        if self.sa_pub.exists():  # written last
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        ca = _Ca(_name("vaultsync-local-ca"))
        _write_pem(self.ca_crt, ca.certificate())
        _write_pem(self.dir / "ca.key", _private_pem(ca.key), private=True)
        sans: list[x509.GeneralName] = [
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in (HOST, _KUBERNETES_SERVICE_IP)),
            *(x509.DNSName(name) for name in ("localhost", "kubernetes.default.svc")),
        ]
        crt, key = ca.issue(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, *sans)
        _write_pem(self.serving_crt, crt)
        _write_pem(self.serving_key, key, private=True)
        crt, key = ca.issue(_name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
        _write_pem(self.admin_crt, crt)
        _write_pem(self.admin_key, key, private=True)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_pem(self.sa_key, _private_pem(sa_key), private=True)
        public = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_pem(self.sa_pub, public)

    def admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_crt)
        context.load_cert_chain(self.admin_crt, self.admin_key)
        return context


# --------------------------------------------------------------------------- control plane


class ControlPlane:
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
        self._pki = _Pki(self.workdir / "pki")
        self._state = _JsonFile(self.workdir / "controlplane.json")
        state = self._state.read()
        self._ports: dict[str, int] = state.get("ports") or {n: free_port() for n in self._PORTS}
        self._processes = {
            name: Process.load(name, process, self.workdir)
            for name, process in state.get("processes", {}).items()
        }

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()

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
        _log(f"control plane ready at {self.server} in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Stop components in reverse start order (SIGTERM, then SIGKILL)."""
        if not self._processes:
            return
        for process in reversed(list(self._processes.values())):
            process.stop()
        self._processes.clear()
        self._save()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster as cluster-admin."""
        argv = [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            error = subprocess.CalledProcessError(
                result.returncode, argv, result.stdout, result.stderr
            )
            error.add_note(result.stderr)
            raise error
        return result

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
        _wait_for("etcd /health", lambda: _http_status(f"{client}/health") == 200, 30, process)

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
            ],
        )
        context = pki.admin_context()
        _wait_for(
            "kube-apiserver /readyz",
            lambda: _http_status(f"{self.server}/readyz", context) == 200,
            120,
            process,
        )

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
        _JsonFile(self.kubeconfig).write(config)

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
        _wait_for(
            "the default ServiceAccount (kube-controller-manager working)",
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            60,
            process,
        )


# --------------------------------------------------------------------------- OpenBao


def _bao_binary() -> Path:
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.is_file():
        return beside_python
    on_path = shutil.which("bao")
    if on_path is None:
        raise LocalClusterError("no 'bao' binary next to the Python interpreter or on PATH")
    return Path(on_path)


# Single-node raft: OpenBao 2.7 removed the `file` storage backend (and `disable_mlock`).
_BAO_CONFIG = """\
storage "raft" {{
  path = {data}
  node_id = "local"
  performance_multiplier = 1  # 1s instead of 5s raft timeouts: faster init and restart
}}
listener "tcp" {{
  address = "{api}"
  cluster_address = "{cluster}"
{tls}}}
api_addr = "{scheme}://{api}"
cluster_addr = "https://{cluster}"
ui = false
"""


class OpenBao:
    """A persistent (raft storage, not dev mode) OpenBao server on a fixed 127.0.0.1 port.

    The first start initialises it (1 key share) and enables KV v2 at `secret/`; later starts
    only unseal. Ports, root token, unseal key and pid live in `workdir/openbao.json`, so the
    address never changes across restarts and other processes can re-attach.
    """

    def __init__(
        self, workdir: Path | str, *, allow_api_audit: bool = True, tls: bool = False
    ) -> None:
        """tls serves the API over HTTPS with a certificate from a CA of its own (ca_pem)."""
        self.workdir = Path(workdir).resolve()
        self.allow_api_audit = allow_api_audit
        self.tls = tls
        self._state = _JsonFile(self.workdir / "openbao.json")
        state = self._state.read()
        self.port: int = state.get("port") or free_port()
        self.cluster_port: int = state.get("cluster_port") or free_port()
        self._root_token: str | None = state.get("root_token")
        self._unseal_key: str | None = state.get("unseal_key")
        process = state.get("process")
        self._process = Process.load("openbao", process, self.workdir) if process else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.crt"

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def _hvac(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(
            url=self.address, token=token, verify=str(self.ca_file) if self.tls else True
        )

    @property
    def root_token(self) -> str:
        if self._root_token is None:
            raise LocalClusterError("OpenBao has not been initialised yet; call start()")
        return self._root_token

    @property
    def unseal_key(self) -> str:
        if self._unseal_key is None:
            raise LocalClusterError("OpenBao has not been initialised yet; call start()")
        return self._unseal_key

    @property
    def pid(self) -> int | None:
        """Pid of the server, None if it is not running."""
        return self._process.pid if self._process and self._process.alive() else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def client(self) -> hvac.Client:
        return self._hvac(self.root_token)

    def start(self) -> None:
        """Start the server (unless running), initialise it on first use, and unseal it."""
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()  # the server outlives us (own session): never leave it half set up
            raise
        _log(f"OpenBao ready at {self.address} in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Graceful stop (SIGTERM; SIGKILL only if it hangs)."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """Crash-stop with SIGKILL: no graceful shutdown."""
        if self._process is not None:
            self._process.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def seal(self) -> None:
        self.client().sys.seal()
        self._wait_until("to seal", lambda status: status == 503)

    def unseal(self) -> None:
        """Unseal (if sealed) and wait until the node is active."""
        client = self._hvac()
        if client.sys.is_sealed():
            client.sys.submit_unseal_key(self.unseal_key)
        self._wait_until("to become active", lambda status: status == 200)

    def _start(self) -> None:
        if not self.running:
            self.workdir.mkdir(parents=True, exist_ok=True)
            argv: list[str | Path] = [_bao_binary(), "server", f"-config={self._write_config()}"]
            self._process = Process.spawn("openbao", argv, self.workdir)
            self._save()
        self._wait_until("to answer", lambda status: status is not None)
        if not self._hvac().sys.is_initialized():
            self._initialise()
        self.unseal()
        self._ensure_kv()

    def _health(self) -> int | None:
        """sys/health status: 200 active, 429 standby, 501 uninitialised, 503 sealed."""
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        return _http_status(f"{self.address}/v1/sys/health", context)

    def _wait_until(self, what: str, condition: Callable[[int | None], bool]) -> None:
        _wait_for(f"OpenBao {what}", lambda: condition(self._health()), 60, self._process)

    def _write_config(self) -> Path:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        config = self.workdir / "openbao.hcl"
        config.write_text(
            _BAO_CONFIG.format(
                data=json.dumps(str(data)),
                api=f"{HOST}:{self.port}",
                cluster=f"{HOST}:{self.cluster_port}",
                tls=self._tls_listener(),
                scheme="https" if self.tls else "http",
            )
            + ("unsafe_allow_api_audit_creation = true\n" if self.allow_api_audit else "")
        )
        return config

    def _tls_listener(self) -> str:
        if not self.tls:
            return "  tls_disable = true\n"
        directory = self.ca_file.parent
        cert, key = directory / "openbao.crt", directory / "openbao.key"
        if not cert.exists():
            directory.mkdir(parents=True, exist_ok=True)
            ca = _Ca(_name("vaultsync-openbao-ca"))
            _write_pem(self.ca_file, ca.certificate())
            cert_pem, key_pem = ca.issue(
                _name(HOST),
                ExtendedKeyUsageOID.SERVER_AUTH,
                x509.IPAddress(ipaddress.ip_address(HOST)),
                x509.DNSName("localhost"),
            )
            _write_pem(cert, cert_pem)
            _write_pem(key, key_pem, private=True)
        return (
            f"  tls_cert_file = {json.dumps(str(cert))}\n  tls_key_file = {json.dumps(str(key))}\n"
        )

    def _initialise(self) -> None:
        result = self._hvac().sys.initialize(secret_shares=1, secret_threshold=1)
        self._root_token = result["root_token"]
        self._unseal_key = result["keys_base64"][0]
        self._save()

    def _ensure_kv(self) -> None:
        client = self.client()
        if "secret/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        _wait_for("KV v2 at secret/ to finish mounting", lambda: _kv_ready(client), 30)

    def _save(self) -> None:
        self._state.write(
            {
                "port": self.port,
                "root_token": self._root_token,
                "unseal_key": self._unseal_key,
                "process": self._process.dump() if self._process else None,
            }
        )


def _kv_ready(client: hvac.Client) -> bool:
    """A fresh KV v2 mount briefly rejects requests while it sets itself up."""
    try:
        client.secrets.kv.v2.read_configuration(mount_point="secret")
    except VaultError:
        return False
    return True


# --------------------------------------------------------------------------- wiring


def configure_kubernetes_auth(bao: OpenBao, cp: ControlPlane, mount: str = "kubernetes") -> None:
    """Point OpenBao's Kubernetes auth at `cp`, reviewing tokens as a dedicated SA.

    Idempotent. The reviewer is `vaultsync-system/vault-token-reviewer`, bound to
    `system:auth-delegator`, with a one-year TokenRequest token.
    """
    cp.kubectl("apply", "-f", "-", input=json.dumps(_token_reviewer_manifests()))
    jwt = cp.kubectl(
        "create",
        "token",
        TOKEN_REVIEWER_NAME,
        "--namespace",
        TOKEN_REVIEWER_NAMESPACE,
        f"--duration={TOKEN_REVIEWER_TTL}",
    ).stdout.strip()
    client = bao.client()
    if f"{mount}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("kubernetes", path=mount)
    client.auth.kubernetes.configure(
        kubernetes_host=cp.server,
        kubernetes_ca_cert=cp.ca_pem,
        token_reviewer_jwt=jwt,
        disable_local_ca_jwt=True,
        mount_point=mount,
    )


def _token_reviewer_manifests() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": TOKEN_REVIEWER_NAMESPACE},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": TOKEN_REVIEWER_NAME, "namespace": TOKEN_REVIEWER_NAMESPACE},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{TOKEN_REVIEWER_NAME}-auth-delegator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": TOKEN_REVIEWER_NAME,
                        "namespace": TOKEN_REVIEWER_NAMESPACE,
                    }
                ],
            },
        ],
    }


# --------------------------------------------------------------------------- CLI


def _components(state_dir: Path) -> tuple[ControlPlane, OpenBao]:
    return ControlPlane(state_dir / "cluster"), OpenBao(state_dir / "openbao")


def _exports(cp: ControlPlane, bao: OpenBao) -> str:
    env = {
        "KUBECONFIG": str(cp.kubeconfig),
        "VAULT_ADDR": bao.address,
        "VAULT_TOKEN": bao.root_token,
    }
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())


def _cmd_build(_args: argparse.Namespace) -> int:
    binaries = build()
    print(binaries.kubectl.parent)
    print(binaries.etcd.parent)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    cp, bao = _components(args.state_dir)
    if not (cp.running and bao.running):
        build()
        try:
            cp.start()
            bao.start()
            configure_kubernetes_auth(bao, cp)
        except BaseException:
            bao.stop()
            cp.stop()
            raise
        _JsonFile(args.state_dir / "state.json").write(
            {
                "kubeconfig": str(cp.kubeconfig),
                "server": cp.server,
                "kubectl": str(cp.binaries.kubectl),
                "vault_addr": bao.address,
                "root_token": bao.root_token,
                "unseal_key": bao.unseal_key,
                "pids": cp.pids | {"openbao": bao.pid},
            }
        )
    _log(f"kubectl: {cp.binaries.kubectl}")
    print(_exports(cp, bao))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cp, bao = _components(args.state_dir)
    bao.stop()
    cp.stop()
    (args.state_dir / "state.json").unlink(missing_ok=True)
    if args.purge:
        shutil.rmtree(cp.workdir, ignore_errors=True)
        shutil.rmtree(bao.workdir, ignore_errors=True)
        with suppress(OSError):
            args.state_dir.rmdir()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cp, bao = _components(args.state_dir)
    pids = cp.pids | {"openbao": bao.pid}
    for name, pid in pids.items():
        print(f"{name:<24} {'stopped' if pid is None else f'running (pid {pid})'}")
    if None in pids.values():
        return 1
    print(_exports(cp, bao))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.localcluster",
        description="Local Kubernetes control plane + OpenBao for development and e2e tests.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    commands.add_parser(
        "build", help="build the binaries (cached) and print their directories"
    ).set_defaults(handler=_cmd_build)
    for name, handler, description in (
        ("up", _cmd_up, "start everything detached and print shell exports"),
        ("down", _cmd_down, "stop everything (data is kept unless --purge)"),
        ("status", _cmd_status, "show what runs; exit status 1 unless everything does"),
    ):
        command = commands.add_parser(name, help=description)
        command.add_argument(
            "--state-dir",
            type=lambda p: Path(p).resolve(),
            default=".dev",
            help="where cluster and OpenBao state live (default: .dev)",
        )
        command.set_defaults(handler=handler)
    commands.choices["down"].add_argument(
        "--purge", action="store_true", help="also delete cluster and OpenBao data"
    )
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except LocalClusterError as error:
        print(f"localcluster: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
