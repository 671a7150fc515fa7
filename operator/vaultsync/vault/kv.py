"""KV v2: reads, check-and-set writes and custom metadata; password policies' generator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import hvac
from hvac.utils import format_url

from vaultsync.vault.errors import (
    CheckAndSetFailed,
    InvalidRequest,
    PasswordPolicyNotFound,
    PermissionDenied,
    RotationDenied,
    SecretNotFound,
    SecretVersionDeleted,
    VaultError,
    translate,
)
from vaultsync.vault.observe import request


@dataclass(frozen=True)
class KVSecret:
    data: dict[str, Any]
    version: int
    custom_metadata: dict[str, str]
    created_time: datetime
    """When this version was written."""


def _created_time(value: object, where: str) -> datetime:
    # Vault writes RFC 3339 with nanoseconds; fromisoformat keeps microseconds of it.
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise VaultError(f"{where}: Vault sent no valid created_time") from None


def _destroyed(exc: Exception) -> bool:
    """Vault answers 404 for a destroyed version, with its metadata in the body."""
    body = getattr(exc, "json", None)
    if not isinstance(body, dict):
        return False
    metadata = (body.get("data") or {}).get("metadata") or {}
    return bool(metadata.get("destroyed") or metadata.get("deletion_time"))


@request("kv_read")
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
        created_time=_created_time(metadata.get("created_time"), where),
    )


@request("kv_write")
def write(client: hvac.Client, mount: str, path: str, data: Mapping[str, Any], cas: int) -> int:
    """Write data as a new version with check-and-set on version cas; the new version.

    CheckAndSetFailed when cas is no longer the current version (someone else wrote).
    """
    where = f"write {mount}/{path}"
    try:
        response = client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=dict(data), cas=cas, mount_point=mount
        )
    except Exception as exc:
        error = translate(exc, where)
        if isinstance(error, PermissionDenied):
            raise RotationDenied(
                f"{where}: permission denied; needs 'update' (and 'create') on {mount}/data/{path}"
            ) from None
        if isinstance(error, InvalidRequest) and "check-and-set" in str(error):
            raise CheckAndSetFailed(
                f"{where}: version {cas} is no longer the current one (check-and-set)"
            ) from None
        raise error from None
    return int(response["data"]["version"])


@request("kv_metadata_write")
def write_custom_metadata(
    client: hvac.Client, mount: str, path: str, custom_metadata: Mapping[str, str]
) -> None:
    """Set the secret's custom metadata to exactly custom_metadata.

    Vault replaces the whole map, so pass every key to keep (what was read plus changes).
    Only custom_metadata is sent: hvac's update_metadata would also reset
    delete_version_after, and the secret's other settings are not ours.
    """
    where = f"write custom metadata of {mount}/{path}"
    try:
        client.adapter.post(
            format_url("/v1/{0}/metadata/{1}", mount, path),
            json={"custom_metadata": dict(custom_metadata)},
        )
    except Exception as exc:
        error = translate(exc, where)
        if isinstance(error, PermissionDenied):
            raise RotationDenied(
                f"{where}: permission denied; needs 'update' on {mount}/metadata/{path}"
            ) from None
        raise error from None


@request("password_generate")
def generate_password(client: hvac.Client, policy_name: str) -> str:
    """A new password from the Vault/OpenBao password policy policy_name."""
    where = f"generate a password with policy {policy_name}"
    try:
        response = client.adapter.get(
            format_url("/v1/sys/policies/password/{0}/generate", policy_name)
        )
    except Exception as exc:
        error = translate(exc, where)
        if isinstance(error, PermissionDenied):
            raise RotationDenied(
                f"{where}: permission denied; needs 'read' on "
                f"sys/policies/password/{policy_name}/generate"
            ) from None
        if isinstance(error, SecretNotFound):
            raise PasswordPolicyNotFound(f"{where}: no such password policy") from None
        raise error from None
    return str(response["data"]["password"])
