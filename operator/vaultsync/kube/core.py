"""The few core/v1 calls vaultsync makes, with JSON bodies in and out.

The client's CoreV1Api is not used: importing it builds a pydantic schema for every core/v1
model, which cost 0.5 s of CPU and 20 MiB of resident memory at every start, on the way to
the first reconcile, for the eight calls below. These go through the same ApiClient
(configuration, authentication, TLS, connection pool, User-Agent), and a refusal is the
same ApiException that CoreV1Api raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

Query = Mapping[str, str | int | bool | None]


def _segment(value: str) -> str:
    return quote(value, safe="")


class CoreV1:
    """core/v1 Secrets, ServiceAccount tokens, Events and Namespaces over an ApiClient."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client

    def raw(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The response to method on path (any path of the API server), unread: read it to
        its end, or close a stream, which gives the connection back to the pool. An answer
        outside 2xx raises ApiException."""
        params = [
            (k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items()
        ]
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(k, v) for k, v in params if v is not None],
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*serialized, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _json(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.raw(method, path, query=query, body=body).data))

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
        self.raw("DELETE", self._secret(namespace, name)).read()

    def create_namespaced_service_account_token(
        self, name: str, namespace: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{_segment(namespace)}/serviceaccounts/{_segment(name)}/token"
        return self._json("POST", path, body=body)

    def create_namespaced_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.raw("POST", f"/api/v1/namespaces/{_segment(namespace)}/events", body=body).read()
