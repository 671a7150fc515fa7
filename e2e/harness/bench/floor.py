"""The floor: what syncing N pre-created VaultSecrets costs with nothing but the work itself.

FLOOR_THREADS bare Python threads, against the same API server and OpenBao as the operator:
one TokenRequest and one Vault Kubernetes-auth login per tenant identity (the tenant's
`default` ServiceAccount, the Vault role named after its namespace: e2e.harness.stack.
grant_tenant), reused; then per VaultSecret one KV v2 read, one Secret create and one status
patch (Ready=True). Plain HTTP over one connection pool per server, no client library's
models. Timed from the first request until every object is done.

The Secrets are named `floor-<name>` and carry FLOOR_LABEL, not the managed-by label, so the
operator ignores them; reset() deletes them and puts every status back to a new object's, so
that the operator starts from the state it would have had without the floor.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client

from e2e.harness import HarnessError
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import Pending, eventually
from vaultsync import GROUP, VERSION

FLOOR_THREADS = 32
FLOOR_LABEL = f"{GROUP}/bench-floor"
NEW_STATUS = {"observedGeneration": 0}
"""A new VaultSecret's status: the CRD's defaults (status {} with observedGeneration 0)."""
REQUEST_TIMEOUT = 60
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Target:
    """One pre-created VaultSecret: where it is, what it reads, the generation it has."""

    namespace: str
    name: str
    path: str
    generation: int


class Http:
    """JSON over one urllib3 connection pool to one server; any other status than expected
    raises HarnessError."""

    def __init__(self, base: str, headers: dict[str, str], **tls: Any) -> None:
        self.base = base.rstrip("/")
        self.headers = headers
        self.pool = urllib3.PoolManager(
            maxsize=FLOOR_THREADS,
            timeout=urllib3.Timeout(total=REQUEST_TIMEOUT),
            retries=False,
            **tls,
        )

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        expect: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = self.pool.request(
            method,
            self.base + path,
            body=None if body is None else json.dumps(body).encode(),
            headers={**self.headers, "Content-Type": content_type, **(headers or {})},
        )
        if response.status != expect:
            raise HarnessError(
                f"{method} {path}: {response.status} {response.data.decode(errors='replace')[:300]}"
            )
        return json.loads(response.data) if response.data else None


def kubernetes_http(configuration: client.Configuration) -> Http:
    """The API server as the kubeconfig's user (client certificate or bearer token)."""
    token = configuration.get_api_key_with_prefix("BearerToken")
    return Http(
        configuration.host,
        {"Authorization": token} if token else {},
        cert_reqs="CERT_REQUIRED",
        ca_certs=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
    )


def vault_http(bao: OpenBao) -> Http:
    return Http(bao.address, {}, **({"ca_certs": str(bao.ca_file)} if bao.tls else {}))


def vaultsecret_path(namespace: str, name: str = "", subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/vaultsecrets"
    return path + (f"/{name}" if name else "") + (f"/{subresource}" if subresource else "")


@dataclass(frozen=True)
class FloorResult:
    objects: int
    identities: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.objects / self.seconds


def parallel(work: Callable[[Target], object], targets: Iterable[Target]) -> None:
    """work on every target, FLOOR_THREADS at a time; the first failure raises."""
    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        for _ in pool.map(work, targets, timeout=REQUEST_TIMEOUT * 10):
            pass


class Floor:
    """The floor against one stack: run() times it, reset() undoes it."""

    def __init__(self, configuration: client.Configuration, bao: OpenBao) -> None:
        self.kube = kubernetes_http(configuration)
        self.vault = vault_http(bao)

    def login(self, namespace: str) -> str:
        """A Vault token for the tenant: TokenRequest for its `default` ServiceAccount, then
        Kubernetes auth with the role named after the namespace."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        }
        answer = self.kube.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/default/token",
            request,
            expect=201,
        )
        login = self.vault.call(
            "POST",
            "/v1/auth/kubernetes/login",
            {"role": namespace, "jwt": answer["status"]["token"]},
        )
        token: str = login["auth"]["client_token"]
        return token

    def sync(self, target: Target, token: str) -> None:
        """KV read, Secret create, status patch: all an object needs."""
        read = self.vault.call(
            "GET", f"/v1/secret/data/{quote(target.path)}", headers={"X-Vault-Token": token}
        )
        data = {
            k: base64.b64encode(str(v).encode()).decode() for k, v in read["data"]["data"].items()
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"floor-{target.name}", "labels": {FLOOR_LABEL: "true"}},
            "type": "Opaque",
            "data": data,
        }
        self.kube.call("POST", f"/api/v1/namespaces/{target.namespace}/secrets", secret, expect=201)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Synced",
            "message": "floor",
            "lastTransitionTime": now,
            "observedGeneration": target.generation,
        }
        status = {"status": {"observedGeneration": target.generation, "conditions": [ready]}}
        self.kube.call(
            "PATCH",
            vaultsecret_path(target.namespace, target.name, "status"),
            status,
            content_type=MERGE_PATCH,
        )

    def run(self, targets: list[Target]) -> FloorResult:
        namespaces = sorted({t.namespace for t in targets})
        started = time.monotonic()
        with ThreadPoolExecutor(FLOOR_THREADS) as pool:
            logins = pool.map(self.login, namespaces, timeout=REQUEST_TIMEOUT * 2)
            tokens = dict(zip(namespaces, logins, strict=True))
        parallel(lambda t: self.sync(t, tokens[t.namespace]), targets)
        return FloorResult(len(targets), len(namespaces), time.monotonic() - started)

    def reset(self, targets: list[Target]) -> None:
        """Delete the floor's Secrets (deletecollection by FLOOR_LABEL in each namespace) and
        give every VaultSecret a new object's status again; wait until both show."""
        namespaces = sorted({t.namespace for t in targets})
        selector = urlencode({"labelSelector": f"{FLOOR_LABEL}=true"})
        for namespace in namespaces:
            self.kube.call("DELETE", f"/api/v1/namespaces/{namespace}/secrets?{selector}")
        new = {"status": {"conditions": None, **NEW_STATUS}}
        parallel(
            lambda t: self.kube.call(
                "PATCH",
                vaultsecret_path(t.namespace, t.name, "status"),
                new,
                content_type=MERGE_PATCH,
            ),
            targets,
        )

        def undone() -> bool | Pending:
            left = 0
            changed = 0
            for namespace in namespaces:
                secrets = self.kube.call(
                    "GET", f"/api/v1/namespaces/{namespace}/secrets?{selector}"
                )
                left += len(secrets["items"])
                listed = self.kube.call("GET", vaultsecret_path(namespace))
                changed += sum(1 for o in listed["items"] if o.get("status") != NEW_STATUS)
            return (left == 0 and changed == 0) or Pending(
                f"{left} floor Secrets left, {changed} statuses not new"
            )

        eventually(undone, REQUEST_TIMEOUT, "the floor's Secrets gone and statuses reset")
