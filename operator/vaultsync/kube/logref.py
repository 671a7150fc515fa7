"""Log records about one object carry its reference, as kopf's own records do (`k8s_ref`):
with `--log-format json` it is the record's `object` (apiVersion, kind, namespace, name,
uid), so that one object's lines can be selected; the plain format leaves it out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def about(body: Mapping[str, Any]) -> dict[str, Any]:
    """`extra=` for a log call about body."""
    meta = body.get("metadata") or {}
    ref = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }
    return {"k8s_ref": {k: v for k, v in ref.items() if v}}
