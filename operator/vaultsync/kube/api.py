"""Kubernetes API clients and error descriptions."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


@dataclass(frozen=True)
class Kube:
    core: client.CoreV1Api
    custom: client.CustomObjectsApi


def connect(pool_size: int = 16) -> Kube:
    """Clients from the in-cluster config, or from KUBECONFIG when run outside a cluster."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    return Kube(client.CoreV1Api(api), client.CustomObjectsApi(api))


def describe(exc: ApiException) -> str:
    """Status and the API server's message; never the request body."""
    message = exc.reason or ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or message
    except (ValueError, TypeError):
        pass
    return f"{exc.status} {message}".strip()
