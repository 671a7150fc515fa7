"""What the destination Secret should look like, and what to do to get there.

Pure: takes the current Secret (a dict as the API returns it, or None) and the
rendered data, returns a Plan. Nothing is written when nothing differs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vaultsync import API_VERSION, MANAGED_BY, MANAGED_BY_LABEL
from vaultsync.api.base import DeletionPolicy
from vaultsync.api.secret import CreationPolicy, Destination
from vaultsync.runtime.errors import SyncError

OWNER_ANNOTATION = "vaultsync.io/vaultsecret"
HASH_ANNOTATION = "vaultsync.io/data-hash"
KEYS_ANNOTATION = "vaultsync.io/managed-keys"


class Action(StrEnum):
    NONE = "none"
    CREATE = "create"
    REPLACE = "replace"


@dataclass(frozen=True)
class Plan:
    action: Action
    body: dict[str, Any]


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "VaultSecret",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def data_hash(data: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key] + b"\0")
    return digest.hexdigest()[:32]


def _encoded(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def is_managed_by(secret: dict[str, Any], owner: Owner) -> bool:
    meta = secret.get("metadata") or {}
    if any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or []):
        return True
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return (
        labels.get(MANAGED_BY_LABEL) == MANAGED_BY
        and annotations.get(OWNER_ANNOTATION) == owner.name
    )


def _metadata(
    current: dict[str, Any], dest: Destination, owner: Owner, digest: str
) -> dict[str, Any]:
    labels = {**(current.get("labels") or {}), **dest.labels, MANAGED_BY_LABEL: MANAGED_BY}
    annotations = {
        **(current.get("annotations") or {}),
        **dest.annotations,
        OWNER_ANNOTATION: owner.name,
        HASH_ANNOTATION: digest,
    }
    return {
        **current,
        "name": dest.name,
        "namespace": owner.namespace,
        "labels": labels,
        "annotations": annotations,
    }


def _owner_refs(current: list[dict[str, Any]], dest: Destination, owner: Owner) -> list[Any]:
    others = [ref for ref in current if ref.get("uid") != owner.uid]
    if dest.creation_policy is CreationPolicy.OWNER:
        return [*others, owner.reference()]
    return others


def _merged_data(current: dict[str, Any], data: dict[str, bytes]) -> tuple[dict[str, str], str]:
    previous = json.loads(
        ((current.get("metadata") or {}).get("annotations") or {}).get(KEYS_ANNOTATION, "[]")
    )
    merged = {k: v for k, v in (current.get("data") or {}).items() if k not in previous}
    merged.update(_encoded(data))
    return merged, json.dumps(sorted(data))


def plan(
    current: dict[str, Any] | None, dest: Destination, owner: Owner, data: dict[str, bytes]
) -> Plan:
    digest = data_hash(data)
    merge = dest.creation_policy is CreationPolicy.MERGE
    if current is None:
        if merge:
            raise SyncError(
                f"Secret {dest.name!r} does not exist; creationPolicy Merge only adds keys "
                "to an existing Secret",
                reason="DestinationMissing",
            )
        metadata = _metadata({}, dest, owner, digest)
        metadata["ownerReferences"] = _owner_refs([], dest, owner)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": dest.type,
            "data": _encoded(data),
        }
        return Plan(Action.CREATE, body)

    if not merge and not is_managed_by(current, owner):
        raise SyncError(
            f"Secret {dest.name!r} already exists and is not managed by this VaultSecret; "
            "delete it, or use creationPolicy Merge to add keys to it",
            reason="SecretConflict",
            retryable=True,
        )
    merged_by = ((current.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION)
    if merge and merged_by not in (None, owner.name):
        raise SyncError(
            f"VaultSecret {merged_by!r} already merges into Secret {dest.name!r}; "
            "one VaultSecret per Secret keeps their keys from overwriting each other",
            reason="SecretConflict",
        )
    current_type = current.get("type") or "Opaque"
    if not merge and current_type != dest.type:
        raise SyncError(
            f"Secret {dest.name!r} has type {current_type!r}, spec wants {dest.type!r}; "
            "a Secret's type cannot change: delete the Secret to let it be recreated",
            reason="SecretTypeImmutable",
        )
    meta = _metadata(current.get("metadata") or {}, dest, owner, digest)
    meta["ownerReferences"] = _owner_refs(meta.get("ownerReferences") or [], dest, owner)
    if merge:
        new_data, keys = _merged_data(current, data)
        meta["annotations"][KEYS_ANNOTATION] = keys
    else:
        new_data = _encoded(data)
    body = {**current, "metadata": meta, "data": new_data}
    body.pop("stringData", None)
    if _same(current, body):
        return Plan(Action.NONE, current)
    return Plan(Action.REPLACE, body)


def _same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    cur, want = current.get("metadata") or {}, desired["metadata"]
    return bool(
        (current.get("data") or {}) == desired["data"]
        and (cur.get("labels") or {}) == want["labels"]
        and (cur.get("annotations") or {}) == want["annotations"]
        and (cur.get("ownerReferences") or []) == want["ownerReferences"]
    )


def released(
    secret: dict[str, Any], dest: Destination, owner: Owner, *, owner_stays: bool = False
) -> Plan | None:
    """What to write to a Secret its VaultSecret no longer writes, given the policies.

    Returns None when the Secret is to be deleted by us (Orphan + Delete, or any Delete
    when the owner stays, as after a rename: the garbage collector will not do it), and a
    NONE plan when nothing needs writing (Owner + Delete on deletion: the garbage
    collector deletes it; Retain without ownership).
    """
    meta = dict(secret.get("metadata") or {})
    delete = dest.deletion_policy is DeletionPolicy.DELETE
    if not is_managed_by(secret, owner) and dest.creation_policy is not CreationPolicy.MERGE:
        return Plan(Action.NONE, secret)
    if dest.creation_policy is CreationPolicy.MERGE:
        annotations = dict(meta.get("annotations") or {})
        ours = json.loads(annotations.pop(KEYS_ANNOTATION, "[]"))
        for key in (OWNER_ANNOTATION, HASH_ANNOTATION):
            annotations.pop(key, None)
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != MANAGED_BY_LABEL}
        data = secret.get("data") or {}
        if delete:
            data = {k: v for k, v in data.items() if k not in ours}
        body = {
            **secret,
            "data": data,
            "metadata": {**meta, "annotations": annotations, "labels": labels},
        }
        return Plan(Action.REPLACE, body)
    if delete:
        if owner_stays or dest.creation_policy is CreationPolicy.ORPHAN:
            return None
        return Plan(Action.NONE, secret)
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner.uid]
    return Plan(Action.REPLACE, {**secret, "metadata": {**meta, "ownerReferences": refs}})


def drifted(secret: dict[str, Any]) -> bool:
    """Whether a managed Secret's data no longer matches what we last wrote."""
    meta = secret.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    recorded = annotations.get(HASH_ANNOTATION)
    if recorded is None:
        return True
    data = secret.get("data") or {}
    if KEYS_ANNOTATION in annotations:
        keys = json.loads(annotations[KEYS_ANNOTATION])
        data = {k: v for k, v in data.items() if k in keys}
    decoded = {k: base64.b64decode(v) for k, v in data.items()}
    return data_hash(decoded) != str(recorded)
