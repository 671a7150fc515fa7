"""JSON requests to the API server over kept-alive http.client connections (runtime/origin.py).

They use the kubernetes client's configuration as it is: its server, TLS settings,
credentials (its token hook included, so a projected ServiceAccount token is read again as
it rotates) and User-Agent. What every reconcile sends (a Secret's read, create or replace,
a status patch, an Event, a TokenRequest) costs about 40 % less client CPU this way than
through the client's ApiClient and urllib3 (runtime/origin.py has the figures). A
configuration these connections do not cover (a proxy, a TLS server name or host check of
its own, socket options) sends them through the ApiClient instead; streams (watches) always
go that way (Requests.stream).

A refusal is the ApiException the kubernetes client raises; a server that cannot be reached,
or that drops the connection, is an ApiException with status 0, so that callers treat it as
any other failure of the API server (retried after a backoff) rather than as a crash.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import should_bypass_proxies

from vaultsync.runtime.origin import Origin

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 60.0
"""Seconds a request may wait for the server to answer (the ApiClient's default waits
forever)."""

Query = Mapping[str, str | int | bool | None]


@dataclass(frozen=True)
class _Answer:
    """What ApiException reads of an answer."""

    status: int
    reason: str
    data: bytes
    headers: dict[str, str]

    def getheaders(self) -> dict[str, str]:
        return self.headers


def _tls(configuration: Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=configuration.ssl_ca_cert, cadata=configuration.ca_cert_data
    )
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def _origin(configuration: Configuration) -> Origin | None:
    """Connections to the configured server, or None for a configuration they do not cover."""
    proxied = configuration.proxy and not should_bypass_proxies(
        configuration.host, configuration.no_proxy or ""
    )
    if (
        proxied
        or configuration.tls_server_name
        or configuration.socket_options is not None
        or isinstance(configuration.assert_hostname, str)
    ):
        return None
    https = urlsplit(configuration.host).scheme == "https"
    return Origin(
        configuration.host,
        context=_tls(configuration) if https else None,
        timeout=TIMEOUT,
        size=configuration.connection_pool_maxsize or 4,
    )


def _query(query: Query | None) -> list[tuple[str, str | int]]:
    return [
        (k, str(v).lower() if isinstance(v, bool) else v)
        for k, v in (query or {}).items()
        if v is not None
    ]


class Requests:
    """Requests with JSON bodies to the API server the ApiClient is configured for."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client
        self._origin = _origin(api_client.configuration)

    @property
    def direct(self) -> bool:
        """Whether requests go over connections of our own (not through the ApiClient)."""
        return self._origin is not None

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = JSON,
    ) -> bytes:
        """The answer's body; an answer outside 2xx raises ApiException."""
        if self._origin is None:
            read: bytes = self.stream(
                method, path, query=query, body=body, content_type=content_type
            ).data
            return read
        params = _query(query)
        target = path + (f"?{urlencode(params)}" if params else "")
        headers = {"Accept": JSON, "User-Agent": self.api_client.user_agent}
        credentials = self.api_client.configuration.auth_settings().get("BearerToken")
        if credentials and credentials["value"]:
            headers["Authorization"] = credentials["value"]
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        try:
            status, answer_headers, data = self._origin.send(method, target, payload, headers)
        except (OSError, http.client.HTTPException) as exc:
            reason = f"API server unreachable: {type(exc).__name__}: {exc}"
            raise ApiException(status=0, reason=reason) from None
        if not 200 <= status <= 299:
            reason = http.client.responses.get(status, "")
            answer = _Answer(status, reason, data, dict(answer_headers))
            raise ApiException.from_response(
                http_resp=answer, body=data.decode(errors="replace"), data=None
            )
        return data

    def stream(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> Any:
        """The ApiClient's response to method on path, unread: read it to its end, or close
        a stream, which gives the connection back to its pool. An answer outside 2xx raises
        ApiException."""
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=_query(query),
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*serialized, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response
