"""The few calls vaultsync makes on every reconcile (core/v1 Secrets, ServiceAccount tokens,
Events, and status patches of our own kinds), with JSON bodies in and out.

The client's CoreV1Api is not used: importing it builds a pydantic schema for every core/v1
model, which cost 0.5 s of CPU and 20 MiB of resident memory at every start, on the way to
the first reconcile, for the calls below. They go over kube/transport.py's connections,
with the ApiClient's configuration (server, authentication, TLS, User-Agent), and a refusal
is the same ApiException that CoreV1Api raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

from kubernetes.client import ApiClient

from vaultsync import GROUP, VERSION
from vaultsync.kube.transport import MERGE_PATCH, Query, Requests


def _segment(value: str) -> str:
    return quote(value, safe="")


class CoreV1:
    """core/v1 Secrets, ServiceAccount tokens, Events and Namespaces, and our kinds' status."""

    def __init__(self, api_client: ApiClient, requests: Requests | None = None) -> None:
        self.api_client = api_client
        self.requests = requests or Requests(api_client)

    def _json(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return cast(
            dict[str, Any], json.loads(self.requests.call(method, path, query=query, body=body))
        )

    @staticmethod
    def _secret(namespace: str, name: str = "") -> str:
        path = f"/api/v1/namespaces/{_segment(namespace)}/secrets"
        return f"{path}/{_segment(name)}" if name else path

    def read_namespaced_secret(self, name: str, namespace: str) -> dict[str, Any]:
        return self._json("GET", self._secret(namespace, name))

    def create_namespaced_secret(
        self, namespace: str, body: Mapping[str, Any], field_manager: str | None = None
    ) -> dict[str, Any]:
        query = {"fieldManager": field_manager}
        return self._json("POST", self._secret(namespace), query=query, body=body)

    def replace_namespaced_secret(
        self, name: str, namespace: str, body: Mapping[str, Any], field_manager: str | None = None
    ) -> dict[str, Any]:
        query = {"fieldManager": field_manager}
        return self._json("PUT", self._secret(namespace, name), query=query, body=body)

    def delete_namespaced_secret(self, name: str, namespace: str) -> None:
        self.requests.call("DELETE", self._secret(namespace, name))

    def create_namespaced_service_account_token(
        self, name: str, namespace: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{_segment(namespace)}/serviceaccounts/{_segment(name)}/token"
        return self._json("POST", path, body=body)

    def create_namespaced_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.requests.call("POST", f"/api/v1/namespaces/{_segment(namespace)}/events", body=body)

    def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        """A merge patch of the status of one of our objects (cluster-scoped: namespace None)."""
        path = f"/apis/{GROUP}/{VERSION}"
        if namespace:
            path += f"/namespaces/{_segment(namespace)}"
        path += f"/{plural}/{_segment(name)}/status"
        self.requests.call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)
