"""The operator's HMAC key: generated once, kept in a Secret of the operator's namespace.

Every replica (and every restart) uses the same key, so the keyed digests written on managed
Secrets (`vaultsync.io/data-hash`) and on workloads (restart triggers) stay the same for the
same data. The key is created if absent without racing: create, and on 409 (another replica
was first) read what it wrote. It is never overwritten: a Secret with a missing or short key
is an error to fix by hand, not something to replace (a new key changes every digest).
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync import MANAGED_BY, MANAGED_BY_LABEL
from vaultsync.kube.api import Kube, describe
from vaultsync.runtime.errors import SyncError

SECRET_NAME = "vaultsync-hmac-key"
DATA_KEY = "key"
KEY_BYTES = 32


class HmacKeyUnavailable(SyncError):
    reason = "HmacKeyUnavailable"


def _decode(secret: Mapping[str, Any], namespace: str, name: str) -> bytes:
    encoded = (secret.get("data") or {}).get(DATA_KEY)
    try:
        key = base64.b64decode(encoded or "", validate=True)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise HmacKeyUnavailable(
            f"Secret {namespace}/{name} has no usable {DATA_KEY!r} ({KEY_BYTES} bytes or more); "
            "vaultsync never replaces it (a new key changes every digest): fix or delete it"
        )
    return key


def _read(kube: Kube, namespace: str, name: str) -> bytes | None:
    try:
        secret = kube.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise HmacKeyUnavailable(f"read Secret {namespace}/{name}: {describe(exc)}") from None
    return _decode(secret, namespace, name)


def load_or_create(kube: Kube, namespace: str, name: str = SECRET_NAME) -> bytes:
    """The key in Secret namespace/name, created with fresh random bytes if it is absent."""
    found = _read(kube, namespace, name)
    if found is not None:
        return found
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        },
        "type": "Opaque",
        "data": {DATA_KEY: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()},
    }
    try:
        created = kube.core.create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise HmacKeyUnavailable(f"create Secret {namespace}/{name}: {describe(exc)}") from None
        found = _read(kube, namespace, name)  # another replica created it first
        if found is None:
            raise HmacKeyUnavailable(
                f"Secret {namespace}/{name} was created and deleted meanwhile"
            ) from None
        return found
    return _decode(created, namespace, name)


_cache: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


def shared(kube: Kube, namespace: str, name: str = SECRET_NAME) -> bytes:
    """load_or_create, once per process: the key never changes while the operator runs."""
    with _lock:
        key = _cache.get((namespace, name))
        if key is None:
            key = _cache[(namespace, name)] = load_or_create(kube, namespace, name)
        return key
