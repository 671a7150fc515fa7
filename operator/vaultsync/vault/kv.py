"""KV v2 reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hvac

from vaultsync.vault.errors import SecretNotFound, SecretVersionDeleted, translate


@dataclass(frozen=True)
class KVSecret:
    data: dict[str, Any]
    version: int
    custom_metadata: dict[str, str]


def _destroyed(exc: Exception) -> bool:
    """Vault answers 404 for a destroyed version, with its metadata in the body."""
    body = getattr(exc, "json", None)
    if not isinstance(body, dict):
        return False
    metadata = (body.get("data") or {}).get("metadata") or {}
    return bool(metadata.get("destroyed") or metadata.get("deletion_time"))


def read(client: hvac.Client, mount: str, path: str, version: int = 0) -> KVSecret:
    """Read one version (0 = latest) of a KV v2 secret; deleted versions are errors."""
    where = f"read {mount}/{path}" + (f" version {version}" if version else "")
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path,
            mount_point=mount,
            version=version or None,
            raise_on_deleted_version=False,
        )
    except Exception as exc:
        error = translate(exc, where)
        if _destroyed(exc):
            raise SecretVersionDeleted(f"{where}: the version was destroyed") from None
        if isinstance(error, SecretNotFound):
            raise SecretNotFound(f"{where}: no such secret or version") from None
        raise error from None
    body = response.get("data") or {}
    metadata = body.get("metadata") or {}
    if body.get("data") is None or metadata.get("deletion_time") or metadata.get("destroyed"):
        raise SecretVersionDeleted(f"{where}: the version was deleted or destroyed")
    return KVSecret(
        data=dict(body["data"]),
        version=int(metadata.get("version", 0)),
        custom_metadata=dict(metadata.get("custom_metadata") or {}),
    )
