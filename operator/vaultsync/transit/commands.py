"""`vaultsync encrypt` and `vaultsync rewrap`: VaultSecret manifests that carry transit
ciphertext, made with the caller's own Vault token.

The transit context is the VaultSecret's namespace (api/transit.py: context_for), as the
operator uses it to decrypt: with a derived key the ciphertext only decrypts there.
Plaintexts stay in memory: they come from stdin, a file the caller names or the arguments,
and leave only as ciphertext on stdout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import yaml

from vaultsync.api.transit import context_for
from vaultsync.transit.manifests import (
    ManifestError,
    Plain,
    encrypted_of,
    from_pairs,
    from_secret,
    rewrapped,
    vault_secret,
    with_ciphertexts,
)
from vaultsync.vault import transit
from vaultsync.vault.client import Endpoint, new_client
from vaultsync.vault.errors import PermissionDenied


@dataclass(frozen=True)
class VaultAccess:
    """Where Vault is and the caller's token: flags, else VAULT_ADDR, VAULT_TOKEN,
    VAULT_CACERT and VAULT_NAMESPACE."""

    address: str | None = None
    token: str | None = None
    ca_cert: str | None = None
    namespace: str | None = None

    def client(self) -> hvac.Client:
        address = self.address or os.environ.get("VAULT_ADDR")
        token = self.token or os.environ.get("VAULT_TOKEN")
        if not address or not token:
            raise ManifestError("no Vault address or token: set VAULT_ADDR and VAULT_TOKEN")
        ca_file = self.ca_cert or os.environ.get("VAULT_CACERT")
        ca_pem = Path(ca_file).read_text() if ca_file else None
        namespace = self.namespace or os.environ.get("VAULT_NAMESPACE") or ""
        return new_client(Endpoint(address, namespace, ca_pem), token=token, pool_size=1)


def _documents(text: str) -> list[dict[str, Any]]:
    try:
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as exc:
        raise ManifestError(f"not YAML: {type(exc).__name__}") from None
    if not all(isinstance(doc, dict) for doc in docs):
        raise ManifestError("expected YAML objects (manifests)")
    return docs


def _dump(docs: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False, width=1000)


def plain_input(manifest: str | None, pairs: list[str]) -> Plain:
    """The values to encrypt: one Secret manifest's text, or KEY=value pairs (not both)."""
    if (manifest is None) == (not pairs):
        raise ManifestError("give a Secret manifest (-f FILE, or - for stdin) or KEY=value pairs")
    if manifest is None:
        return from_pairs(pairs)
    docs = _documents(manifest)
    if len(docs) != 1:
        raise ManifestError(f"expected one Secret manifest, found {len(docs)} documents")
    return from_secret(docs[0])


def _key_exists(client: hvac.Client, mount: str, key: str) -> None:
    """Refuse a key that does not exist: with 'create' on <mount>/encrypt/<key> Vault would
    make one (not derived, unlike the VaultTransitKey the caller may have meant). A caller
    who may not read the key is not stopped: without 'create' Vault refuses anyway."""
    try:
        found = transit.read_key(client, mount, key)
    except PermissionDenied:
        return
    if found is None:
        raise ManifestError(f"no transit key {key!r} at {mount}: declare it (VaultTransitKey)")


def encrypt(
    client: hvac.Client,
    plain: Plain,
    *,
    key: str,
    mount: str = "transit",
    name: str | None = None,
    namespace: str | None = None,
) -> str:
    """The VaultSecret manifest (YAML) for plain, encrypted with key for namespace."""
    name = name or plain.name
    namespace = namespace or plain.namespace
    if not name or not namespace:
        raise ManifestError("the VaultSecret needs a name and a namespace: --name, --namespace")
    _key_exists(client, mount, key)
    ciphertexts = transit.encrypt(client, mount, key, plain.values, context_for(namespace))
    manifest = vault_secret(
        name,
        namespace,
        mount=mount,
        key=key,
        ciphertexts=ciphertexts,
        secret_type=plain.type,
        labels=plain.labels,
        annotations=plain.annotations,
    )
    return _dump([manifest])


def rewrap(client: hvac.Client, text: str, namespace: str | None = None) -> str:
    """The manifests of text with every VaultSecret's ciphertexts rewrapped to the latest
    version of their key (those at it already unchanged, so a second run changes nothing).

    The ciphertexts are swapped in the text itself, so that comments, quoting and every
    other document stay exactly as they were; only when that does not give the rewrapped
    manifests (a ciphertext folded over lines) are the manifests printed anew."""
    docs, edited = [], text
    for doc in _documents(text):
        wrapped = encrypted_of(doc, namespace)
        if wrapped is not None and wrapped.ciphertexts:
            fresh = rewrapped(
                wrapped.ciphertexts,
                transit.rewrap(
                    client,
                    wrapped.mount,
                    wrapped.key,
                    wrapped.ciphertexts,
                    context_for(wrapped.namespace),
                ),
            )
            for key, old in wrapped.ciphertexts.items():
                edited = edited.replace(old, fresh[key])
            doc = with_ciphertexts(doc, fresh)
        docs.append(doc)
    return edited if _documents(edited) == docs else _dump(docs)
