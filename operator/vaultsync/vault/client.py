"""Building hvac clients for a Vault/OpenBao endpoint."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import hvac
import requests

from vaultsync.vault.transport import PooledAdapter


@dataclass(frozen=True)
class Endpoint:
    """Where a Vault server is and how to trust it (from a VaultConnection)."""

    address: str
    namespace: str = ""
    ca_pem: str | None = None
    timeout: float = 10.0


def _ca_file(pem: str) -> str:
    """hvac/requests want a CA *file*; keep one per distinct bundle."""
    directory = Path(tempfile.gettempdir()) / "vaultsync-ca"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
    if not path.exists():
        path.write_text(pem)
    return str(path)


def new_client(endpoint: Endpoint, token: str | None = None, pool_size: int = 16) -> hvac.Client:
    """A client whose connection pool fits the worker threads that share it.

    The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) is read once, here, not
    on every request as requests would (with a look for a netrc file)."""
    verify: bool | str = (
        _ca_file(endpoint.ca_pem)
        if endpoint.ca_pem
        else os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return hvac.Client(
        url=endpoint.address,
        token=token,
        namespace=endpoint.namespace or None,
        verify=verify,
        timeout=endpoint.timeout,
        proxies=requests.utils.get_environ_proxies(endpoint.address),
        adapter=PooledAdapter,
        pool_size=pool_size,
    )
