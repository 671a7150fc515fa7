"""The manifests of `vaultsync encrypt` and `vaultsync rewrap`, shaped without Vault. Pure.

encrypt reads values from a Secret manifest (data or stringData) or KEY=value pairs and
shapes the VaultSecret whose spec.encrypted carries them as ciphertext; rewrap swaps the
ciphertexts of VaultSecret manifests for rewrapped ones and changes nothing else. Values
are held in memory only, and no error message quotes one.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync import GROUP, VERSION
from vaultsync.api.names import secret_key_problem

API_VERSION = f"{GROUP}/{VERSION}"


class ManifestError(ValueError):
    """Input the commands cannot use; the message names keys and fields, never values."""


@dataclass(frozen=True)
class Plain:
    """Values to encrypt, and what the input says about the Secret they belong to."""

    values: dict[str, bytes]
    name: str | None = None
    namespace: str | None = None
    type: str = "Opaque"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


_NOT_CARRIED = ("vaultsync.io/", "kubectl.kubernetes.io/last-applied-configuration")
"""Metadata of a Secret manifest that its VaultSecret does not declare for the Secret: ours
(written by the operator itself) and kubectl's copy of the applied manifest (which holds the
plaintext values)."""


def _carried(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {
        str(k): str(v) for k, v in (values or {}).items() if not str(k).startswith(_NOT_CARRIED)
    }


def _check_key(key: str) -> None:
    problem = secret_key_problem(key)
    if problem:
        raise ManifestError(f"{key[:60]!r} is not a valid Secret key: it {problem}")


def from_pairs(pairs: Iterable[str]) -> Plain:
    """KEY=value arguments."""
    values: dict[str, bytes] = {}
    for number, pair in enumerate(pairs, start=1):
        key, equals, value = pair.partition("=")
        if not equals:  # not echoed: it may be a value typed without its key
            raise ManifestError(f"argument {number} is not KEY=value (it has no '=')")
        _check_key(key)
        if key in values:
            raise ManifestError(f"{key!r} is given twice")
        values[key] = value.encode()
    return Plain(values)


def from_secret(doc: Mapping[str, Any]) -> Plain:
    """A Secret manifest: its data (base64) and stringData (stringData wins, as in the API)."""
    if doc.get("kind") != "Secret":
        raise ManifestError(f"expected a Secret manifest, not {doc.get('kind')!r}")
    values: dict[str, bytes] = {}
    for key, encoded in (doc.get("data") or {}).items():
        _check_key(str(key))
        try:
            values[str(key)] = base64.b64decode(str(encoded or ""), validate=True)
        except (binascii.Error, ValueError):
            raise ManifestError(f"data[{key!r}] is not valid base64") from None
    for key, text in (doc.get("stringData") or {}).items():
        _check_key(str(key))
        if not isinstance(text, str | None):  # YAML's true, 5 or 1.0: the API refuses them
            raise ManifestError(
                f"stringData[{key!r}] is a {type(text).__name__}, not a string: quote it"
            )
        values[str(key)] = (text or "").encode()
    if not values:
        raise ManifestError("the Secret has no data or stringData")
    meta = doc.get("metadata") or {}
    return Plain(
        values,
        meta.get("name"),
        meta.get("namespace"),
        doc.get("type") or "Opaque",
        _carried(meta.get("labels")),
        _carried(meta.get("annotations")),
    )


def vault_secret(
    name: str,
    namespace: str,
    *,
    mount: str,
    key: str,
    ciphertexts: Mapping[str, str],
    secret_type: str = "Opaque",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The VaultSecret manifest carrying ciphertexts, into the Secret of the same name (with
    the type, labels and annotations given)."""
    destination: dict[str, Any] = {"name": name}
    if secret_type != "Opaque":
        destination["type"] = secret_type
    if labels:
        destination["labels"] = dict(labels)
    if annotations:
        destination["annotations"] = dict(annotations)
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "encrypted": {"mount": mount, "key": key, "data": dict(sorted(ciphertexts.items()))},
            "destination": destination,
        },
    }


@dataclass(frozen=True)
class Wrapped:
    """The encrypted values of one VaultSecret manifest."""

    namespace: str
    mount: str
    key: str
    ciphertexts: dict[str, str]


def encrypted_of(doc: Mapping[str, Any], namespace: str | None = None) -> Wrapped | None:
    """The encrypted values of a VaultSecret manifest (None for any other document);
    namespace stands in for a manifest without metadata.namespace."""
    if doc.get("kind") != "VaultSecret":
        return None
    encrypted = (doc.get("spec") or {}).get("encrypted")
    if not encrypted:
        return None
    meta = doc.get("metadata") or {}
    where = meta.get("namespace") or namespace
    if not where:
        raise ManifestError(
            f"VaultSecret {meta.get('name')!r} names no namespace (the transit context): "
            "pass --namespace"
        )
    if not encrypted.get("key"):
        raise ManifestError(f"VaultSecret {meta.get('name')!r}: spec.encrypted.key is missing")
    data = {str(k): str(v) for k, v in (encrypted.get("data") or {}).items()}
    return Wrapped(
        str(where), str(encrypted.get("mount") or "transit"), str(encrypted["key"]), data
    )


def version_of(ciphertext: str) -> str:
    """The key version a ciphertext names: "v2" of "vault:v2:..."."""
    return ciphertext.split(":", 2)[1] if ciphertext.count(":") >= 2 else ""


def rewrapped(old: Mapping[str, str], fresh: Mapping[str, str]) -> dict[str, str]:
    """The ciphertexts a rewrap settles on: Vault's, except where the old one already was at
    the version Vault rewrapped to. Vault encrypts again on every rewrap (a new nonce), so
    without this every run would change every value of a manifest kept in Git."""
    return {
        key: old[key] if key in old and version_of(old[key]) == version_of(value) else value
        for key, value in fresh.items()
    }


def with_ciphertexts(doc: Mapping[str, Any], ciphertexts: Mapping[str, str]) -> dict[str, Any]:
    """doc with spec.encrypted.data replaced by ciphertexts (same keys), nothing else changed."""
    out = copy.deepcopy(dict(doc))
    out["spec"]["encrypted"]["data"] = {
        key: ciphertexts[key] for key in out["spec"]["encrypted"]["data"]
    }
    return out
