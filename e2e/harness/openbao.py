"""A persistent OpenBao server (raft storage, not dev mode) on a fixed 127.0.0.1 port."""

from __future__ import annotations

import json
import shutil
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
from hvac.exceptions import VaultError

from e2e.harness import HarnessError, log
from e2e.harness.pki import Ca, distinguished_name, write_pem
from e2e.harness.polling import eventually
from e2e.harness.processes import HOST, JsonFile, OneProcessServer, Process, free_port, http_status


def _bao_binary() -> Path:
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.is_file():
        return beside_python
    on_path = shutil.which("bao")
    if on_path is None:
        raise HarnessError("no 'bao' binary next to the Python interpreter or on PATH")
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


class OpenBao(OneProcessServer):
    """A persistent (raft storage, not dev mode) OpenBao server on a fixed 127.0.0.1 port.

    The first start initialises it (1 key share) and enables KV v2 at `secret/` and transit at
    `transit/`; later starts
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
        self._state = JsonFile(self.workdir / "openbao.json")
        state = self._state.read()
        self.port: int = state.get("port") or free_port()
        self.cluster_port: int = state.get("cluster_port") or free_port()
        self._root_token: str | None = state.get("root_token")
        self._unseal_key: str | None = state.get("unseal_key")
        process = state.get("process")
        self.process = Process.load("openbao", process, self.workdir) if process else None

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
            raise HarnessError("OpenBao has not been initialised yet; call start()")
        return self._root_token

    @property
    def unseal_key(self) -> str:
        if self._unseal_key is None:
            raise HarnessError("OpenBao has not been initialised yet; call start()")
        return self._unseal_key

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
        log(f"OpenBao ready at {self.address} in {time.monotonic() - started:.1f}s")

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
            self.process = Process.spawn("openbao", argv, self.workdir)
            self._save()
        self._wait_until("to answer", lambda status: status is not None)
        if not self._hvac().sys.is_initialized():
            self._initialise()
        self.unseal()
        self._ensure_kv()

    def _health(self) -> int | None:
        """sys/health status: 200 active, 429 standby, 501 uninitialised, 503 sealed."""
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        return http_status(f"{self.address}/v1/sys/health", context)

    def _wait_until(self, what: str, condition: Callable[[int | None], bool]) -> None:
        eventually(
            lambda: condition(self._health()),
            60,
            f"OpenBao {what}",
            interval=0.2,
            watch=self.process,
        )

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
            ca = Ca(distinguished_name("vaultsync-openbao-ca"))
            write_pem(self.ca_file, ca.certificate())
            ca.issue_server(cert, key, HOST, (HOST,), ("localhost",))
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
        mounted = client.sys.list_mounted_secrets_engines()["data"]
        if "transit/" not in mounted:
            client.sys.enable_secrets_engine("transit", path="transit")
        if "secret/" not in mounted:
            client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        eventually(
            lambda: _kv_ready(client), 30, "KV v2 at secret/ to finish mounting", interval=0.2
        )

    def _save(self) -> None:
        self._state.write(
            {
                "port": self.port,
                "root_token": self._root_token,
                "unseal_key": self._unseal_key,
                "process": self.process.dump() if self.process else None,
            }
        )


def _kv_ready(client: hvac.Client) -> bool:
    """A fresh KV v2 mount briefly rejects requests while it sets itself up."""
    try:
        client.secrets.kv.v2.read_configuration(mount_point="secret")
    except VaultError:
        return False
    return True


def audit_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of a file audit device's log (none before it exists)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
