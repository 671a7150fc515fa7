"""Unauthenticated server health: is Vault there, initialised and unsealed?"""

from __future__ import annotations

from dataclasses import dataclass

from vaultsync.vault.client import Endpoint, new_client
from vaultsync.vault.errors import translate
from vaultsync.vault.observe import request


@dataclass(frozen=True)
class Health:
    initialized: bool
    sealed: bool
    version: str


@request("seal_status")
def seal_status(endpoint: Endpoint) -> Health:
    """sys/seal-status answers even when sealed, so it tells sealed from unreachable."""
    client = new_client(endpoint, pool_size=1)
    try:
        response = client.sys.read_seal_status()
    except Exception as exc:
        raise translate(exc, f"health of {endpoint.address}") from None
    finally:
        client.adapter.close()
    return Health(
        initialized=bool(response.get("initialized")),
        sealed=bool(response.get("sealed")),
        version=str(response.get("version") or ""),
    )
