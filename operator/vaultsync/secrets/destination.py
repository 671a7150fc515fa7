"""What the destination Secret should look like, and what to do to get there.

Pure: takes the current Secret (a dict as the API returns it, or None) and the
rendered data, returns a Plan. Nothing is written when nothing differs.

vaultsync never changes or removes what it did not write. What it wrote is recorded on
the Secret itself: the data keys of a Merge (`managed-keys`) and the declared labels and
annotations it set (`managed-metadata`). With Merge, a key that already exists and is not
in that record is a KeyConflict and nothing is written; release removes only what the
record names. Our markers (a label of our own, the owner annotation, the hash) and every
declared label and annotation are part of the drift check, so a hand edit of any of them
is repaired like a data edit.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vaultsync import API_VERSION, MANAGED_BY, MANAGED_BY_LABEL
from vaultsync.api.base import DeletionPolicy
from vaultsync.api.secret import CreationPolicy, Destination
from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.digest import keyed_digest

MANAGED_LABEL = "vaultsync.io/managed"
"""Our own label on every Secret we write; the drift watch selects on it (or the owner)."""
OWNER_ANNOTATION = "vaultsync.io/vaultsecret"
OWNER_ANNOTATIONS = {
    "VaultSecret": OWNER_ANNOTATION,
    "VaultPKISecret": "vaultsync.io/vaultpkisecret",
    "VaultDynamicSecret": "vaultsync.io/vaultdynamicsecret",
}
"""The annotation naming a Secret's writer, by the kind that writes it."""
HASH_ANNOTATION = "vaultsync.io/data-hash"
KEYS_ANNOTATION = "vaultsync.io/managed-keys"
METADATA_ANNOTATION = "vaultsync.io/managed-metadata"
MARKER_ANNOTATIONS = (
    *OWNER_ANNOTATIONS.values(),
    HASH_ANNOTATION,
    KEYS_ANNOTATION,
    METADATA_ANNOTATION,
)
CLUSTER_MANAGED_TYPES = frozenset({"kubernetes.io/service-account-token"})
"""Secret types whose data the cluster writes: vaultsync never merges into them."""


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
    """The object that writes the Secret (a VaultSecret unless kind says otherwise)."""

    name: str
    namespace: str
    uid: str
    kind: str = "VaultSecret"

    @property
    def annotation(self) -> str:
        return OWNER_ANNOTATIONS[self.kind]

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Written:
    """What the markers on a Secret say vaultsync wrote there."""

    keys: frozenset[str]
    labels: frozenset[str]
    annotations: frozenset[str]


NOTHING = Written(frozenset(), frozenset(), frozenset())


def _meta(secret: Mapping[str, Any]) -> dict[str, Any]:
    return dict(secret.get("metadata") or {})


def _json_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def written(secret: Mapping[str, Any]) -> Written:
    annotations = _meta(secret).get("annotations") or {}
    try:
        metadata = json.loads(annotations.get(METADATA_ANNOTATION) or "{}")
    except ValueError:
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    return Written(
        keys=frozenset(_json_list(annotations.get(KEYS_ANNOTATION))),
        labels=frozenset(str(k) for k in metadata.get("labels") or []),
        annotations=frozenset(str(k) for k in metadata.get("annotations") or []),
    )


def data_hash(
    data: Mapping[str, bytes], metadata: Mapping[str, str] | None = None, *, key: bytes
) -> str:
    """The keyed HMAC of the data (and of declared metadata, when there is any) we wrote: the
    same value as a workload's restart trigger when no metadata is declared (secrets/digest.py).
    A Secret written by an older vaultsync (unkeyed SHA-256) differs once: the next sync
    rewrites the annotation only, its data being equal."""
    return keyed_digest(key, data, metadata)


def _declared(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, str]:
    """Declared metadata flattened for the digest: label/<key> and annotation/<key>."""
    return {
        **{f"label/{k}": v for k, v in labels.items()},
        **{f"annotation/{k}": v for k, v in annotations.items()},
    }


def _encoded(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def _annotated_owner(secret: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object our owner annotation names, if there is one."""
    annotations = _meta(secret).get("annotations") or {}
    for kind, annotation in OWNER_ANNOTATIONS.items():
        if annotations.get(annotation):
            return kind, str(annotations[annotation])
    return None


def owner_of(secret: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object a Secret belongs to, from our annotation or our
    ownerReference."""
    found = _annotated_owner(secret)
    if found is not None:
        return found
    for ref in _meta(secret).get("ownerReferences") or []:
        if ref.get("kind") in OWNER_ANNOTATIONS and str(ref.get("apiVersion", "")).startswith(
            API_VERSION.split("/")[0] + "/"
        ):
            return str(ref["kind"]), str(ref.get("name"))
    return None


def owner_name(secret: Mapping[str, Any]) -> str | None:
    """The name of the object a Secret belongs to (owner_of without the kind)."""
    found = owner_of(secret)
    return None if found is None else found[1]


def is_managed_by(secret: Mapping[str, Any], owner: Owner) -> bool:
    meta = _meta(secret)
    if any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or []):
        return True
    return (meta.get("annotations") or {}).get(owner.annotation) == owner.name


def _owner_refs(current: list[dict[str, Any]], dest: Destination, owner: Owner) -> list[Any]:
    others = [ref for ref in current if ref.get("uid") != owner.uid]
    if dest.creation_policy is CreationPolicy.OWNER:
        return [*others, owner.reference()]
    return others


def _conflict(what: str, names: Iterable[str], secret: str) -> SyncError:
    listed = ", ".join(repr(n) for n in sorted(names))
    return SyncError(
        f"Secret {secret!r} already has {what} {listed} that vaultsync did not write; "
        "Merge never overwrites them. Remove them from the Secret, or do not write them "
        "(keys/template, destination labels/annotations)",
        reason="KeyConflict",
        retryable=False,
    )


def _take(
    current: Mapping[str, str],
    declared: Mapping[str, str],
    ours: frozenset[str],
    merge: bool,
) -> tuple[dict[str, str], set[str], set[str]]:
    """Apply declared labels (or annotations) to current ones.

    Returns the new mapping, the keys now ours and, with Merge, the conflicts: keys that
    exist with another value and were not ours. Keys that were ours and are no longer
    declared are removed. With Merge, a key that already holds the declared value and was
    not ours stays somebody else's (release leaves it).
    """
    out = {k: v for k, v in current.items() if k not in ours or k in declared}
    taken: set[str] = set()
    conflicts: set[str] = set()
    for key, value in declared.items():
        if merge and key not in ours and key in current:
            if current[key] != value:
                conflicts.add(key)
            continue
        out[key] = value
        taken.add(key)
    return out, taken, conflicts


def _metadata_record(labels: set[str], annotations: set[str]) -> str | None:
    if not labels and not annotations:
        return None
    return json.dumps({"labels": sorted(labels), "annotations": sorted(annotations)})


def _set_or_drop(mapping: dict[str, str], key: str, value: str | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def plan(
    current: dict[str, Any] | None,
    dest: Destination,
    owner: Owner,
    data: dict[str, bytes],
    *,
    key: bytes,
) -> Plan:
    merge = dest.creation_policy is CreationPolicy.MERGE
    if current is None:
        if merge:
            raise SyncError(
                f"Secret {dest.name!r} does not exist; creationPolicy Merge only adds keys "
                "to an existing Secret",
                reason="DestinationMissing",
            )
        current = {"metadata": {}, "type": dest.type}
        action = Action.CREATE
    else:
        _check_existing(current, dest, owner)
        action = Action.REPLACE
    meta = _meta(current)
    before = NOTHING
    if action is Action.REPLACE:
        before = _proven(current, data, key) if merge else written(current)
    old_data: dict[str, str] = dict(current.get("data") or {})
    if merge:
        foreign = set(data) & (set(old_data) - before.keys)
        if foreign:
            raise _conflict("keys", foreign, dest.name)
    labels, our_labels, label_conflicts = _take(
        meta.get("labels") or {}, dest.labels, before.labels, merge
    )
    annotations, our_annotations, annotation_conflicts = _take(
        meta.get("annotations") or {}, dest.annotations, before.annotations, merge
    )
    if label_conflicts or annotation_conflicts:
        raise _conflict("labels or annotations", label_conflicts | annotation_conflicts, dest.name)
    labels[MANAGED_LABEL] = "true"
    if not merge:
        labels[MANAGED_BY_LABEL] = MANAGED_BY
    declared = _declared(
        {k: labels[k] for k in our_labels}, {k: annotations[k] for k in our_annotations}
    )
    annotations[owner.annotation] = owner.name
    annotations[HASH_ANNOTATION] = data_hash(data, declared, key=key)
    _set_or_drop(annotations, KEYS_ANNOTATION, json.dumps(sorted(data)) if merge else None)
    _set_or_drop(annotations, METADATA_ANNOTATION, _metadata_record(our_labels, our_annotations))
    if merge:
        new_data = {k: v for k, v in old_data.items() if k not in before.keys}
        new_data.update(_encoded(data))
    else:
        new_data = _encoded(data)
    meta.update(
        name=dest.name,
        namespace=owner.namespace,
        labels=labels,
        annotations=annotations,
        ownerReferences=_owner_refs(meta.get("ownerReferences") or [], dest, owner),
    )
    if action is Action.CREATE:
        return Plan(
            action,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta,
                "type": dest.type,
                "data": new_data,
            },
        )
    body = {**current, "metadata": meta, "data": new_data}
    body.pop("stringData", None)
    if _same(current, body):
        return Plan(Action.NONE, current)
    return Plan(Action.REPLACE, body)


def _proven(current: Mapping[str, Any], data: Mapping[str, bytes], key: bytes) -> Written:
    """What a merged Secret's markers say vaultsync wrote; when its record of the keys was
    removed by hand, the keys of data whose values its data-hash (a keyed HMAC of what it
    wrote) proves are ours: the same keys as when it wrote them (only the values may have
    changed in Vault since) and the same declared metadata."""
    before = written(current)
    annotations = _meta(current).get("annotations") or {}
    recorded = annotations.get(HASH_ANNOTATION)
    if KEYS_ANNOTATION in annotations or recorded is None:
        return before
    stored = current.get("data") or {}
    labels = _meta(current).get("labels") or {}
    try:
        candidate = {k: base64.b64decode(stored[k]) for k in data if k in stored}
        declared = _declared(
            {k: labels[k] for k in before.labels}, {k: annotations[k] for k in before.annotations}
        )
    except (KeyError, ValueError):
        return before
    if not candidate or data_hash(candidate, declared, key=key) != recorded:
        return before
    return Written(frozenset(candidate), before.labels, before.annotations)


def _check_existing(current: Mapping[str, Any], dest: Destination, owner: Owner) -> None:
    merge = dest.creation_policy is CreationPolicy.MERGE
    current_type = current.get("type") or "Opaque"
    if not merge:
        if not is_managed_by(current, owner):
            raise SyncError(
                f"Secret {dest.name!r} already exists and is not managed by this {owner.kind}; "
                "delete it, or use creationPolicy Merge to add keys to it",
                reason="SecretConflict",
                retryable=False,
            )
        if current_type != dest.type:
            raise SyncError(
                f"Secret {dest.name!r} has type {current_type!r}, spec wants {dest.type!r}; "
                "a Secret's type cannot change: delete the Secret to let it be recreated",
                reason="SecretTypeImmutable",
                retryable=False,
            )
        return
    merged_by = _annotated_owner(current)
    if merged_by is not None and merged_by != (owner.kind, owner.name):
        raise SyncError(
            f"{merged_by[0]} {merged_by[1]!r} already merges into Secret {dest.name!r}; "
            "one writer per Secret keeps their keys from overwriting each other",
            reason="SecretConflict",
            retryable=False,
        )
    if current_type in CLUSTER_MANAGED_TYPES:
        raise SyncError(
            f"Secret {dest.name!r} is a {current_type} Secret: the cluster writes its data, "
            "so vaultsync does not merge into it",
            reason="SecretTypeNotMergeable",
            retryable=False,
        )


def _same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    cur, want = current.get("metadata") or {}, desired["metadata"]
    return bool(
        (current.get("data") or {}) == desired["data"]
        and (cur.get("labels") or {}) == want["labels"]
        and (cur.get("annotations") or {}) == want["annotations"]
        and (cur.get("ownerReferences") or []) == want["ownerReferences"]
    )


def unmarked(secret: dict[str, Any]) -> dict[str, Any]:
    """The Secret without our markers (label, annotations); its data and the rest as they are."""
    meta = _meta(secret)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != MANAGED_LABEL}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY:
        del labels[MANAGED_BY_LABEL]
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in MARKER_ANNOTATIONS
    }
    return {**secret, "metadata": {**meta, "labels": labels, "annotations": annotations}}


def released(
    secret: dict[str, Any], dest: Destination, owner: Owner, *, owner_stays: bool = False
) -> Plan | None:
    """What to write to a Secret its VaultSecret no longer writes, given the policies.

    Returns None when the Secret is to be deleted by us (Orphan + Delete, or any Delete
    when the owner stays, as after a rename: the garbage collector will not do it), and a
    NONE plan when nothing needs writing (Owner + Delete on deletion: the garbage
    collector deletes it; Retain without ownership; a Secret that is not ours).
    """
    meta = _meta(secret)
    delete = dest.deletion_policy is DeletionPolicy.DELETE
    if dest.creation_policy is CreationPolicy.MERGE:
        if not _merged_by(secret, owner):
            return Plan(Action.NONE, secret)
        ours = written(secret)
        body = unmarked(secret)
        body_meta = body["metadata"]
        body_meta["labels"] = {k: v for k, v in body_meta["labels"].items() if k not in ours.labels}
        body_meta["annotations"] = {
            k: v for k, v in body_meta["annotations"].items() if k not in ours.annotations
        }
        if delete:
            body["data"] = {
                k: v for k, v in (secret.get("data") or {}).items() if k not in ours.keys
            }
        return Plan(Action.REPLACE, body)
    if not is_managed_by(secret, owner):
        return Plan(Action.NONE, secret)
    if delete:
        if owner_stays or dest.creation_policy is CreationPolicy.ORPHAN:
            return None
        return Plan(Action.NONE, secret)
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner.uid]
    return Plan(Action.REPLACE, {**secret, "metadata": {**meta, "ownerReferences": refs}})


def _merged_by(secret: Mapping[str, Any], owner: Owner) -> bool:
    """Whether this object merged into secret (by its owner annotation or key record)."""
    annotations = _meta(secret).get("annotations") or {}
    merged_by = _annotated_owner(secret)
    if merged_by is None:
        return KEYS_ANNOTATION in annotations
    return merged_by == (owner.kind, owner.name)


def drifted(secret: Mapping[str, Any], *, key: bytes) -> bool:
    """Whether a managed Secret no longer matches what we last wrote: its data (our keys),
    the declared labels and annotations we set, or our own markers."""
    meta = _meta(secret)
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    recorded = annotations.get(HASH_ANNOTATION)
    if (
        recorded is None
        or labels.get(MANAGED_LABEL) != "true"
        or not any(a in annotations for a in OWNER_ANNOTATIONS.values())
    ):
        return True
    ours = written(secret)
    data = secret.get("data") or {}
    if KEYS_ANNOTATION in annotations:
        data = {k: v for k, v in data.items() if k in ours.keys}
    decoded = {k: base64.b64decode(v) for k, v in data.items()}
    if any(k not in labels for k in ours.labels) or any(
        k not in annotations for k in ours.annotations
    ):
        return True
    declared = _declared(
        {k: labels[k] for k in ours.labels}, {k: annotations[k] for k in ours.annotations}
    )
    return data_hash(decoded, declared, key=key) != str(recorded)
