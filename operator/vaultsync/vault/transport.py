"""hvac's request adapter over kept-alive connections of our own, without requests in the way.

A no-op refresh is one KV read, and the HTTP client's own machinery is most of its CPU
(runtime/origin.py). So a request to the Vault server itself goes over http.client
connections kept alive between requests (`Origin`); a request through a proxy,
and one answered by a redirect (a standby pointing at the active node), goes through a
urllib3 pool manager, which knows both. This adapter keeps hvac's API and errors (a 200
answer is a dict, any other a requests.Response, a refusal the same hvac exception; an
unreachable server raises an OSError, http.client's or urllib3's error, which
errors.translate knows) and sends JSON bodies and query parameters itself; a request with
anything else (a streamed body, files) takes hvac's own requests path.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import requests
import urllib3
from hvac.adapters import JSONAdapter
from requests.structures import CaseInsensitiveDict

from vaultsync.runtime.origin import Origin

_FAST_KWARGS = frozenset({"json", "params"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRIES = urllib3.Retry(total=None, connect=0, read=False, status=0, other=0, redirect=5)
"""No retry (as requests' default), but redirects followed, as hvac asks of requests: a
standby that does not forward answers 307 to the active node."""


@functools.lru_cache(maxsize=32)
def _tls_context(verify: bool | str, cert: tuple[str, str] | None) -> ssl.SSLContext:
    """requests' meaning of verify: True is certifi's bundle, a path a CA file or directory,
    False no verification at all. Shared by every client with the same settings (a CA file
    is named by its content, client/_ca_file): a context with certifi's bundle loaded costs
    18 ms of CPU and almost 1 MiB, and a client is made per login and per health probe."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context(cafile=certifi.where())
    elif os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    else:
        context = ssl.create_default_context(cafile=verify)
    if cert:
        context.load_cert_chain(cert[0], cert[1])
    return context


class PooledAdapter(JSONAdapter):  # type: ignore[misc]
    """A JSONAdapter whose requests go over kept-alive http.client connections to the
    server, or through a urllib3 pool manager (proxies, redirects)."""

    def __init__(
        self,
        base_uri: str,
        token: str | None = None,
        *,
        verify: bool | str = True,
        timeout: float = 30,
        proxies: dict[str, str] | None = None,
        cert: tuple[str, str] | None = None,
        pool_size: int = 16,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("session", None)
        session = requests.Session()
        session.trust_env = False
        session.verify = verify
        session.proxies = proxies = dict(proxies or {})
        super().__init__(
            base_uri=base_uri,
            token=token,
            verify=verify,
            timeout=timeout,
            proxies=proxies,
            cert=cert,
            session=session,
            **kwargs,
        )
        tls: dict[str, Any] = (
            {"cert_reqs": "CERT_NONE"}
            if verify is False
            else {
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": certifi.where() if verify is True else verify,
            }
        )
        options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": pool_size,
            "timeout": urllib3.Timeout(connect=timeout, read=timeout),
            **tls,
            **({"cert_file": cert[0], "key_file": cert[1]} if cert else {}),
        }
        proxy = proxies.get(urlsplit(base_uri).scheme) or proxies.get("all")
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        )
        https = urlsplit(base_uri).scheme == "https"
        self._origin = (
            None
            if proxy
            else Origin(
                base_uri,
                context=_tls_context(verify, tuple(cert) if cert else None) if https else None,
                timeout=timeout,
                size=pool_size,
            )
        )

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        raise_exception: bool = True,
        **kwargs: Any,
    ) -> Any:
        if not _FAST_KWARGS.issuperset(kwargs):
            return super().request(method, url, headers, raise_exception, **kwargs)
        while "//" in url:
            url = url.replace("//", "/")
        path = "/" + url.strip("/")
        sent = dict(headers or {})
        if self.request_header:
            sent["X-Vault-Request"] = "true"
        if self.token:
            sent["X-Vault-Token"] = self.token
        if self.namespace:
            sent["X-Vault-Namespace"] = self.namespace
        params = {k: v for k, v in (kwargs.get("params") or {}).items() if v is not None}
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params, doseq=True)
        body = None
        if kwargs.get("json") is not None:
            body = json.dumps(kwargs["json"]).encode()
            sent["Content-Type"] = "application/json"
        method = method.upper()
        url = self.urljoin(self.base_uri, path)
        status, data = 0, b""
        answer_headers: list[tuple[str, str]] = []
        if self._origin is not None:
            status, answer_headers, data = self._origin.send(method, path, body, sent)
        if self._origin is None or status in _REDIRECTS:
            answer = self._pool.urlopen(method, url, body=body, headers=sent, retries=_RETRIES)
            status, answer_headers, data = answer.status, list(answer.headers.items()), answer.data
            url = answer.geturl() or url
        if status == 200:
            try:
                return json.loads(data)
            except ValueError:
                pass
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(answer_headers)
        response._content = data
        response.encoding = "utf-8"
        response.url = url
        if not response.ok and raise_exception and not self.ignore_exceptions:
            self._raise_for_error(method, url, response)
        return response

    def close(self) -> None:
        if self._origin is not None:
            self._origin.close()
        self._pool.clear()
        super().close()
