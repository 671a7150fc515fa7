"""The transit secrets engine: keys (read, create, configure, rotate, delete) and batches of
encrypt, decrypt and rewrap.

Values travel in one batch request per call, named by caller-chosen labels (a Secret's data
keys), so an error can say which value failed without ever quoting one. Vault's per-item
errors ("cipher: message authentication failed", "... disallowed by policy (too old)") hold
no data and are passed on.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hvac
from hvac.utils import format_url

from vaultsync.vault.errors import (
    InvalidRequest,
    PermissionDenied,
    SecretNotFound,
    VaultError,
    translate,
)
from vaultsync.vault.observe import request

NOT_FOUND = "encryption key not found"
NO_KEY = "no existing key named"


class DecryptFailed(VaultError):
    """A value that does not decrypt: malformed, another key or context, a version the key
    retired. Only a new ciphertext or a key setting helps."""

    reason = "DecryptFailed"
    retryable = False


class DecryptDenied(PermissionDenied):
    """The identity may not decrypt with the key."""

    reason = "DecryptDenied"


class TransitKeyNotFound(VaultError):
    """No such key (yet: a VaultTransitKey applied together with its users creates it)."""

    reason = "TransitKeyNotFound"


@dataclass(frozen=True)
class TransitKey:
    """A transit key as Vault reports it (the settings vaultsync keeps, and its versions)."""

    name: str
    type: str
    derived: bool
    convergent_encryption: bool
    exportable: bool
    allow_plaintext_backup: bool
    deletion_allowed: bool
    auto_rotate_period: int  # seconds; 0: off
    min_decryption_version: int
    min_encryption_version: int
    latest_version: int
    latest_created: datetime | None  # when the latest version was made
    key_size: int | None = None  # hmac keys only


def _created(entry: object) -> datetime | None:
    """A version's creation time: Unix seconds for symmetric keys, an object with an RFC 3339
    creation_time for asymmetric ones."""
    if isinstance(entry, int | float):
        return datetime.fromtimestamp(entry, UTC)
    if isinstance(entry, dict) and entry.get("creation_time"):
        try:
            return datetime.fromisoformat(str(entry["creation_time"])).astimezone(UTC)
        except ValueError:
            return None
    return None


def parse_key(data: Mapping[str, Any]) -> TransitKey:
    """A key from the data of a read of <mount>/keys/<name>."""
    latest = int(data.get("latest_version") or 0)
    versions = data.get("keys") or {}
    size = data.get("key_size")
    return TransitKey(
        name=str(data.get("name", "")),
        type=str(data.get("type", "")),
        derived=bool(data.get("derived")),
        convergent_encryption=bool(data.get("convergent_encryption")),
        exportable=bool(data.get("exportable")),
        allow_plaintext_backup=bool(data.get("allow_plaintext_backup")),
        deletion_allowed=bool(data.get("deletion_allowed")),
        auto_rotate_period=int(data.get("auto_rotate_period") or 0),
        min_decryption_version=int(data.get("min_decryption_version") or 0),
        min_encryption_version=int(data.get("min_encryption_version") or 0),
        latest_version=latest,
        latest_created=_created(versions.get(str(latest))),
        key_size=int(size) if size else None,
    )


def _key_url(mount: str, name: str, action: str = "") -> str:
    return str(format_url("/v1/{0}/keys/{1}", mount, name)) + (f"/{action}" if action else "")


@request("transit_key_read")
def read_key(client: hvac.Client, mount: str, name: str) -> TransitKey | None:
    """The key, or None when the mount has no key of that name."""
    where = f"read transit key {mount}/keys/{name}"
    try:
        response = client.adapter.get(_key_url(mount, name))
    except Exception as exc:
        error = translate(exc, where)
        if isinstance(error, SecretNotFound):
            return None
        raise error from None
    if not response:
        return None
    return parse_key(response.get("data") or {})


@request("transit_key_write")
def create_key(client: hvac.Client, mount: str, name: str, settings: Mapping[str, Any]) -> None:
    """Create the key with settings (type, derived, convergent_encryption, exportable,
    allow_plaintext_backup, key_size, auto_rotate_period)."""
    where = f"create transit key {mount}/keys/{name}"
    try:
        client.adapter.post(_key_url(mount, name), json=dict(settings))
    except Exception as exc:
        raise translate(exc, where) from None


@request("transit_key_write")
def configure_key(client: hvac.Client, mount: str, name: str, settings: Mapping[str, Any]) -> None:
    """Write the key's config (min versions, auto_rotate_period, deletion_allowed...)."""
    where = f"configure transit key {mount}/keys/{name}"
    try:
        client.adapter.post(_key_url(mount, name, "config"), json=dict(settings))
    except Exception as exc:
        raise translate(exc, where) from None


@request("transit_key_rotate")
def rotate_key(client: hvac.Client, mount: str, name: str) -> None:
    where = f"rotate transit key {mount}/keys/{name}"
    try:
        client.adapter.post(_key_url(mount, name, "rotate"))
    except Exception as exc:
        raise translate(exc, where) from None


@request("transit_key_delete")
def delete_key(client: hvac.Client, mount: str, name: str) -> None:
    """Delete the key: deletion_allowed first (Vault refuses otherwise), then the key, every
    version of it. A key already gone is no error."""
    where = f"delete transit key {mount}/keys/{name}"
    try:
        client.adapter.post(_key_url(mount, name, "config"), json={"deletion_allowed": True})
        client.adapter.delete(_key_url(mount, name))
    except Exception as exc:
        error = translate(exc, where)
        if isinstance(error, SecretNotFound) or (
            isinstance(error, InvalidRequest) and (NOT_FOUND in str(error) or NO_KEY in str(error))
        ):
            return
        raise error from None


def _batch(
    client: hvac.Client,
    mount: str,
    key: str,
    operation: str,
    items: Mapping[str, Mapping[str, str]],
) -> dict[str, dict[str, Any]]:
    """One batch request of operation (encrypt, decrypt, rewrap) for items (label -> input):
    label -> result (with Vault's "error" where one failed)."""
    where = f"{operation} with transit key {mount}/{key}"
    labels = list(items)
    try:
        response = client.adapter.post(
            format_url("/v1/{0}/{1}/{2}", mount, operation, key),
            json={"batch_input": [dict(items[label]) for label in labels]},
        )
    except Exception as exc:
        refused = _batch_results(exc, len(labels))  # Vault answers 400 when every item failed
        if refused is not None:
            return dict(zip(labels, refused, strict=True))
        error = translate(exc, where)
        if isinstance(error, PermissionDenied):
            raise DecryptDenied(
                f"{where}: permission denied; needs 'update' on {mount}/{operation}/{key}"
            ) from None
        if isinstance(error, InvalidRequest) and NOT_FOUND in str(error):
            raise TransitKeyNotFound(f"{where}: no transit key {key!r} at {mount}") from None
        if isinstance(error, InvalidRequest):  # a whole batch refused: every item is bad
            raise DecryptFailed(str(error)) from None
        raise error from None
    results = (response.get("data") or {}).get("batch_results") or []
    if len(results) != len(labels):
        raise VaultError(f"{where}: Vault answered {len(results)} of {len(labels)} items")
    return dict(zip(labels, results, strict=True))


def _batch_results(exc: Exception, count: int) -> list[dict[str, Any]] | None:
    """The per-item results in the body of a refused batch, if it has them (all of them)."""
    body = getattr(exc, "json", None)
    if not isinstance(body, dict):
        return None
    results = (body.get("data") or {}).get("batch_results")
    if not isinstance(results, list) or len(results) != count:
        return None
    return [r if isinstance(r, dict) else {"error": "no result"} for r in results]


def _first_error(where: str, results: Mapping[str, Mapping[str, Any]]) -> None:
    failed = sorted(label for label, result in results.items() if result.get("error"))
    if failed:
        label = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise DecryptFailed(f"{where}: {label!r}{more}: {results[label]['error']}")


def _run(
    client: hvac.Client,
    mount: str,
    key: str,
    operation: str,
    field: str,
    values: Mapping[str, str],
    context: str,
) -> dict[str, dict[str, Any]]:
    """operation on label -> value (sent as field, with context): label -> Vault's result;
    DecryptFailed naming the first label Vault refused."""
    items = {label: {field: value, "context": context} for label, value in values.items()}
    results = _batch(client, mount, key, operation, items)
    _first_error(f"{operation} with transit key {mount}/{key}", results)
    return results


@request("transit_decrypt")
def decrypt(
    client: hvac.Client, mount: str, key: str, ciphertexts: Mapping[str, str], context: str
) -> dict[str, bytes]:
    """label -> plaintext of label -> ciphertext, decrypted with context (base64)."""
    results = _run(client, mount, key, "decrypt", "ciphertext", ciphertexts, context)
    try:
        return {
            label: base64.b64decode(result.get("plaintext") or "", validate=True)
            for label, result in results.items()
        }
    except ValueError:
        raise VaultError(f"decrypt with transit key {mount}/{key}: no base64 plaintext") from None


@request("transit_encrypt")
def encrypt(
    client: hvac.Client, mount: str, key: str, plaintexts: Mapping[str, bytes], context: str
) -> dict[str, str]:
    """label -> ciphertext of label -> plaintext, encrypted with context (base64)."""
    encoded = {label: base64.b64encode(value).decode() for label, value in plaintexts.items()}
    results = _run(client, mount, key, "encrypt", "plaintext", encoded, context)
    return {label: str(result["ciphertext"]) for label, result in results.items()}


@request("transit_rewrap")
def rewrap(
    client: hvac.Client, mount: str, key: str, ciphertexts: Mapping[str, str], context: str
) -> dict[str, str]:
    """label -> the same value's ciphertext under the key's latest version."""
    results = _run(client, mount, key, "rewrap", "ciphertext", ciphertexts, context)
    return {label: str(result["ciphertext"]) for label, result in results.items()}
