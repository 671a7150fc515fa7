"""Workloads restarted when a Secret's data changes, and what vaultsync keeps on them.

Deployments, StatefulSets and DaemonSets (apps/v1) and Argo Rollouts (argoproj.io/v1alpha1, a
custom resource: only when its CRD is installed). All four are read and written through the
generic object paths of CustomObjectsApi (`/apis/<group>/<version>/namespaces/<ns>/<plural>`),
as plain dicts.

What vaultsync owns on a workload, all written with server-side apply under the field manager
`vaultsync` (force, so a field we wrote is ours again even if someone else set it meanwhile),
never anything else:

- `metadata.annotations["restart.vaultsync.io/<secret>"]`: the keyed HMAC of the Secret's data
  this workload was last given (the *record*; written without a rollout the first time a
  workload is seen, so adopting a workload restarts nothing);
- `metadata.annotations["pending.restart.vaultsync.io/<secret>"]`: a change waiting for the end
  of a `minInterval` window;
- `metadata.annotations["vaultsync.io/restarted-at"]`: when vaultsync last restarted it;
- `metadata.annotations["vaultsync.io/restart-key-id"]`: which HMAC key the records were made
  with (records made with another key are not comparable and are re-recorded, not acted on);
- the *trigger*: `spec.template.metadata.annotations["restart.vaultsync.io/<secret>"]` (same
  HMAC) for Deployments, StatefulSets and DaemonSets; `spec.restartAt` for Rollouts (RFC 3339,
  Argo's own restart: pods created before it are replaced, no new revision).

Server-side apply removes fields the manager applied before and omits now, so every apply
carries all of the above as they are, with the changed ones changed (`apply_body`). Every
apply carries the resourceVersion it was computed from: a concurrent change (another
VaultSecret of the same workload, a controller's status update) is a 409 and is recomputed.

Annotation keys: the name part of a key is at most 63 characters; a Secret name longer than
that becomes its first 54 characters, "-" and 8 hex digits of its SHA-256 (`annotation_name`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe, drain
from vaultsync.runtime.errors import SyncError

FIELD_MANAGER = "vaultsync"
OPT_IN_ANNOTATION = "vaultsync.io/restart-on-change"
"""On a workload: comma-separated names of Secrets whose changes restart it."""
TRIGGER_PREFIX = "restart.vaultsync.io/"
PENDING_PREFIX = "pending.restart.vaultsync.io/"
RESTARTED_AT_ANNOTATION = "vaultsync.io/restarted-at"
KEY_ID_ANNOTATION = "vaultsync.io/restart-key-id"
NAME_PART_MAX = 63
APPLY = "application/apply-patch+yaml"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
DISCOVERY_TTL = 30.0
LIST_PAGE = 100


@dataclass(frozen=True)
class WorkloadKind:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def template_trigger(self) -> bool:
        """Restarted by a pod-template annotation (else by spec.restartAt)."""
        return self.group == "apps"


DEPLOYMENT = WorkloadKind("Deployment", "apps", "v1", "deployments")
STATEFUL_SET = WorkloadKind("StatefulSet", "apps", "v1", "statefulsets")
DAEMON_SET = WorkloadKind("DaemonSet", "apps", "v1", "daemonsets")
ROLLOUT = WorkloadKind("Rollout", "argoproj.io", "v1alpha1", "rollouts")
KINDS: dict[str, WorkloadKind] = {
    k.kind: k for k in (DEPLOYMENT, STATEFUL_SET, DAEMON_SET, ROLLOUT)
}


def annotation_name(secret_name: str) -> str:
    """The name part of our annotation keys for a Secret: its name, or for names longer than
    63 characters its first 54, "-" and 8 hex digits of the SHA-256 of the whole name."""
    if len(secret_name) <= NAME_PART_MAX:
        return secret_name
    digest = hashlib.sha256(secret_name.encode()).hexdigest()[:8]
    return f"{secret_name[: NAME_PART_MAX - 9]}-{digest}"


def opted_in(annotations: Mapping[str, str], secret_name: str) -> bool:
    """Whether a workload's opt-in annotation names secret_name."""
    names = (annotations.get(OPT_IN_ANNOTATION) or "").split(",")
    return secret_name in {n.strip() for n in names}


@dataclass(frozen=True)
class Ours:
    """Everything vaultsync owns on one workload (see the module docstring)."""

    records: Mapping[str, str] = field(default_factory=dict)  # name part -> HMAC
    pending: Mapping[str, str] = field(default_factory=dict)
    triggers: Mapping[str, str] = field(default_factory=dict)  # pod template (apps kinds)
    restarted_at: str | None = None
    key_id: str | None = None
    restart_at: str | None = None  # Rollout spec.restartAt


def _prefixed(annotations: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: str(v) for k, v in annotations.items() if k.startswith(prefix)}


def ours(kind: WorkloadKind, obj: Mapping[str, Any]) -> Ours:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec = obj.get("spec") or {}
    template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    return Ours(
        records=_prefixed(annotations, TRIGGER_PREFIX),
        pending=_prefixed(annotations, PENDING_PREFIX),
        triggers=_prefixed(template, TRIGGER_PREFIX) if kind.template_trigger else {},
        restarted_at=annotations.get(RESTARTED_AT_ANNOTATION),
        key_id=annotations.get(KEY_ID_ANNOTATION),
        restart_at=None if kind.template_trigger else spec.get("restartAt"),
    )


def apply_body(kind: WorkloadKind, obj: Mapping[str, Any], want: Ours) -> dict[str, Any]:
    """The server-side apply body that makes vaultsync's fields on obj exactly `want`."""
    meta = obj["metadata"]
    annotations = {
        **{TRIGGER_PREFIX + k: v for k, v in want.records.items()},
        **{PENDING_PREFIX + k: v for k, v in want.pending.items()},
    }
    if want.restarted_at is not None:
        annotations[RESTARTED_AT_ANNOTATION] = want.restarted_at
    if want.key_id is not None:
        annotations[KEY_ID_ANNOTATION] = want.key_id
    body: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
            "annotations": annotations,
        },
    }
    if kind.template_trigger:
        if want.triggers:
            triggers = {TRIGGER_PREFIX + k: v for k, v in want.triggers.items()}
            body["spec"] = {"template": {"metadata": {"annotations": triggers}}}
    elif want.restart_at is not None:
        body["spec"] = {"restartAt": want.restart_at}
    return body


class WorkloadError(SyncError):
    """A workload could not be read or written; the reason says why (never retried in a tight
    loop: the VaultSecret's next reconcile tries again)."""

    reason = "RestartFailed"


class Conflict(WorkloadError):
    reason = "RestartConflict"


def _what(kind: WorkloadKind, name: str) -> str:
    return f"{kind.kind} {name!r}"


class Workloads:
    """Reads, opt-in listings and applies, with the few facts worth keeping between calls:
    whether the Rollout CRD is installed (rechecked every DISCOVERY_TTL seconds) and, for
    each namespace and kind, which workloads opt in (for `listing_ttl` seconds, so the
    VaultSecrets of a namespace that change together share one list)."""

    def __init__(self, kube: Kube, listing_ttl: float = 5.0, page: int = LIST_PAGE) -> None:
        self._kube = kube
        self._listing_ttl = listing_ttl
        self._page = page
        self._lock = threading.Lock()
        self._rollouts: tuple[float, bool] | None = None
        self._listings: dict[tuple[str, str], tuple[float, dict[str, dict[str, str]]]] = {}
        self._listing_locks: dict[tuple[str, str], threading.Lock] = {}

    # --- Argo Rollouts: is the CRD there? ---------------------------------------------------

    def rollouts_installed(self, *, fresh: bool = False) -> bool:
        now = time.monotonic()
        cached = self._rollouts
        if not fresh and cached is not None and now - cached[0] < DISCOVERY_TTL:
            return cached[1]
        try:
            found = self._kube.custom.get_api_resources(ROLLOUT.group, ROLLOUT.version)
            installed = any(r.name == ROLLOUT.plural for r in found.resources or [])
        except ApiException as exc:
            if exc.status != 404:
                raise WorkloadError(
                    f"discovery of {ROLLOUT.api_version}: {describe(exc)}"
                ) from None
            installed = False
        self._rollouts = (now, installed)
        return installed

    def _missing_crd(self, kind: WorkloadKind) -> WorkloadError:
        return WorkloadError(
            f"{kind.kind} targets need the Argo Rollouts CRD ({kind.plural}.{kind.group}), "
            "which is not installed in this cluster",
            reason="RolloutCRDMissing",
        )

    def _error(self, kind: WorkloadKind, name: str, verb: str, exc: ApiException) -> WorkloadError:
        what = f"{verb} {_what(kind, name)}: {describe(exc)}"
        if exc.status == 403:
            return WorkloadError(what, reason="RestartDenied")
        if exc.status == 409:
            return Conflict(what)
        return WorkloadError(what)

    # --- reads and writes --------------------------------------------------------------------

    def read(self, kind: WorkloadKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The workload, or None when it does not exist."""
        try:
            obj = cast(
                dict[str, Any],
                self._kube.custom.get_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural, name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                if kind is ROLLOUT and not self.rollouts_installed(fresh=True):
                    raise self._missing_crd(kind) from None
                return None
            raise self._error(kind, name, "read", exc) from None
        return obj

    def apply(self, kind: WorkloadKind, obj: Mapping[str, Any], want: Ours) -> dict[str, Any]:
        """Server-side apply of want at obj's resourceVersion; the object as it now is."""
        meta = obj["metadata"]
        try:
            out = self._kube.custom.patch_namespaced_custom_object(
                kind.group,
                kind.version,
                meta["namespace"],
                kind.plural,
                meta["name"],
                apply_body(kind, obj, want),
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
            )
        except ApiException as exc:
            raise self._error(kind, meta["name"], "patch", exc) from None
        return cast(dict[str, Any], out)

    def opted_in(self, kind: WorkloadKind, namespace: str) -> dict[str, dict[str, str]]:
        """Workloads of a kind in a namespace that carry the opt-in annotation: name -> their
        annotations. Listed on demand, metadata only (PartialObjectMetadataList, no specs),
        shared for a few seconds between callers; nothing is watched or kept longer."""
        key = (namespace, kind.plural)
        with self._lock:
            lock = self._listing_locks.setdefault(key, threading.Lock())
        with lock:
            now = time.monotonic()
            cached = self._listings.get(key)
            if cached is not None and now - cached[0] < self._listing_ttl:
                return cached[1]
            found = self._list(kind, namespace)
            with self._lock:
                self._listings = {
                    k: v for k, v in self._listings.items() if now - v[0] < self._listing_ttl
                }
                self._listings[key] = (now, found)
            return found

    def _list(self, kind: WorkloadKind, namespace: str) -> dict[str, dict[str, str]]:
        """In pages (LIST_PAGE objects), so that the memory a list takes stays small however
        many workloads the namespace has; only the opted-in ones are kept."""
        found: dict[str, dict[str, str]] = {}
        token: str | None = None
        while True:
            try:
                response = self._kube.custom.list_namespaced_custom_object(
                    kind.group,
                    kind.version,
                    namespace,
                    kind.plural,
                    limit=self._page,
                    _continue=token,
                    _headers={"Accept": METADATA_LIST},
                    _preload_content=False,
                )
                listing = json.loads(drain(response))
            except ApiException as exc:
                if exc.status == 404 and kind is ROLLOUT:
                    return {}
                raise self._error(kind, "*", "list", exc) from None
            for item in listing.get("items") or []:
                meta = item.get("metadata") or {}
                annotations = meta.get("annotations") or {}
                if OPT_IN_ANNOTATION in annotations:
                    found[str(meta["name"])] = {k: str(v) for k, v in annotations.items()}
            token = (listing.get("metadata") or {}).get("continue") or None
            if token is None:
                return found
