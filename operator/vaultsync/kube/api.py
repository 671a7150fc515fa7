"""Kubernetes API clients and error descriptions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vaultsync.kube.core import CoreV1
from vaultsync.runtime.errors import SyncError


class Seen:
    """The objects of one kind as the operator's watch last delivered them, by (namespace,
    name): what a reconcile can compare with instead of reading each object again. Fed by
    the watch (in the event loop), read by worker threads: single dict operations, which
    the GIL makes atomic. Kept as compact JSON, without managedFields."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], bytes] = {}

    def put(self, body: Mapping[str, Any]) -> None:
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
        compact = json.dumps({**body, "metadata": meta}, separators=(",", ":")).encode()
        self._objects[(meta.get("namespace") or "", meta.get("name") or "")] = compact

    def drop(self, namespace: str, name: str) -> None:
        self._objects.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A fresh copy of the object as last seen, or None if the watch has not seen it."""
        compact = self._objects.get((namespace, name))
        if compact is None:
            return None
        found: dict[str, Any] = json.loads(compact)
        return found

    def __len__(self) -> int:
        return len(self._objects)


@dataclass(frozen=True)
class Kube:
    core: CoreV1
    custom: client.CustomObjectsApi
    secrets: Seen = field(default_factory=Seen)
    """The Secrets vaultsync writes (labelled `vaultsync.io/managed`), as watched."""
    field_manager: str = "vaultsync"
    """Who writes our Secrets, in their managedFields: `vaultsync`, or with shards
    `vaultsync-<replica>`, which says which replica wrote a Secret last."""
    events: EventQueue | None = None
    """Where Events go to be posted in the background (kube/events.py's Poster, set by the
    operator); None: posted at once."""


class EventQueue(Protocol):
    def put(self, event: dict[str, Any]) -> None: ...

    def close(self, timeout: float) -> None:
        """Post what is queued (for at most timeout seconds), then stop."""


def connect(pool_size: int = 16, field_manager: str = "vaultsync", agent: str = "") -> Kube:
    """Clients from the in-cluster config, or from KUBECONFIG when run outside a cluster."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    if agent:  # who sent a request, in the API server's audit log
        api.user_agent = agent
    return Kube(CoreV1(api), client.CustomObjectsApi(api), field_manager=field_manager)


def drain(response: object) -> bytes:
    """The body of a `_preload_content=False` response, read to its end: only that gives the
    connection back to the pool (left unread, every request opens a new TLS connection)."""
    data: bytes = cast(Any, response).data
    return data


def describe(exc: ApiException) -> str:
    """Status and the API server's message; never the request body."""
    message = exc.reason or ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or message
    except (ValueError, TypeError):
        pass
    return f"{exc.status or ''} {message}".strip()  # 0: the server was not reached


def watchable(
    kube: Kube,
    group: str,
    version: str,
    plural: str,
    label_selector: str | None = None,
    timeout: float = 10.0,
) -> str | None:
    """None if a cluster-wide watch of the resource can be established now with these
    credentials (a list of one object for the current resourceVersion, then a watch from it,
    closed at once), else what stands in the way: the API server unreachable, the resource
    not served (a CRD not installed), or RBAC refusing list or watch."""
    resource = f"{plural}.{group}" if group else plural
    path = f"/apis/{group}/{version}/{plural}" if group else f"/api/{version}/{plural}"

    def request(**query: str | int | bool) -> Any:
        selected = {"labelSelector": label_selector, **query}
        return kube.core.requests.stream("GET", path, query=selected, timeout=timeout)

    verb = "list"
    try:
        listing = json.loads(request(limit=1).data)
        seen = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        verb = "watch"
        request(watch=True, resourceVersion=seen, timeoutSeconds=1).close()
    except ApiException as exc:
        return f"cannot {verb} {resource}: {describe(exc)}"
    except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
        return f"cannot {verb} {resource}: {type(exc).__name__}: {exc}"
    return None


def cluster_objects(kube: Kube, group: str, version: str, plural: str) -> list[dict[str, Any]]:
    """Every object of a cluster-scoped custom resource, read now; raises SyncError."""
    try:
        response = kube.custom.list_cluster_custom_object(
            group, version, plural, _preload_content=False
        )
        listing = json.loads(drain(response))
    except ApiException as exc:
        raise SyncError(f"list {plural}: {describe(exc)}", reason="KubernetesError") from None
    items: list[dict[str, Any]] = listing.get("items") or []
    return items
