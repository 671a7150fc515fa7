"""The keyed digest of a Secret's data: `vaultsync.io/data-hash` on managed Secrets, and the
restart trigger on workloads.

HMAC-SHA256 with the operator's key (kube/hmackey.py), truncated to 32 hex digits (128 bits).
Keyed, because the data of a Secret is often a low-entropy password: an unkeyed hash in an
annotation could be brute-forced by anyone who may read annotations but not Secrets.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def keyed_digest(
    key: bytes, data: Mapping[str, bytes], metadata: Mapping[str, str] | None = None
) -> str:
    """HMAC of the data (and of declared metadata, when there is any), in a canonical order."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(data):
        mac.update(name.encode() + b"\0" + data[name] + b"\0")
    for name in sorted(metadata or {}):
        mac.update(b"\1" + name.encode() + b"\0" + (metadata or {})[name].encode() + b"\0")
    return mac.hexdigest()[:32]
