"""Building hvac clients for a Vault/OpenBao endpoint."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import hvac
import requests
from requests.adapters import HTTPAdapter


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

    The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) is read once, here:
    requests reads it again on every request (with a look for a netrc file), which cost
    about 80 us of CPU per Vault request, a tenth of a no-op refresh."""
    verify: bool | str = (
        _ca_file(endpoint.ca_pem)
        if endpoint.ca_pem
        else os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(endpoint.address)
    session.verify = verify  # hvac prefers a given session's verify over its own argument
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return hvac.Client(
        url=endpoint.address,
        token=token,
        namespace=endpoint.namespace or None,
        verify=verify,
        timeout=endpoint.timeout,
        session=session,
    )
