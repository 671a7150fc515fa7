"""What a VaultSecret reconcile asks of the API server, counted on the wire.

The reconciler runs in this process (real kube-apiserver, real OpenBao, the tenant's own
Vault login) with an API client that records every request, fed with the watch's copies of
our Secrets as kopf feeds it in the operator. The destinations are `Orphan`: no
ownerReference to the synthetic VaultSecret, which the garbage collector would follow.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client, config

from e2e.harness.chart import OPERATOR_NAMESPACE
from e2e.harness.manifests import connection, vault_auth
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from vaultsync.kube import secrets
from vaultsync.kube.api import Kube
from vaultsync.kube.core import CoreV1
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.kube.transport import Requests
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.secrets.reconciler import VaultSecretReconciler
from vaultsync.vault.sessions import Sessions

pytestmark = pytest.mark.e2e


class Recording(Requests):
    """Requests that note (method, path) of every request sent, over our own connections or
    through the ApiClient."""

    def __init__(self, api_client: client.ApiClient) -> None:
        super().__init__(api_client)
        self.sent: list[tuple[str, str]] = []

    def _note(self, method: str, path: str) -> None:
        self.sent.append((method, path.split("/api/v1", 1)[-1]))

    def call(self, method: str, path: str, **kwargs: Any) -> bytes:
        self._note(method, path)
        return super().call(method, path, **kwargs)

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        self._note(method, path)
        return super().stream(method, path, **kwargs)


class Harness:
    def __init__(self, stack: Stack, tenant: str) -> None:
        configuration = client.Configuration()
        config.load_kube_config(str(stack.cp.kubeconfig), client_configuration=configuration)
        api = client.ApiClient(configuration)
        self.api = Recording(api)
        assert self.api.direct  # the requests a reconcile makes go over our own connections
        self.kube = Kube(CoreV1(api, self.api), client.CustomObjectsApi(api))
        self.tenant = tenant
        self.reader = Kube(
            CoreV1(stack.core.api_client), stack.custom
        )  # the test's own reads, not counted
        settings = Settings(OPERATOR_NAMESPACE, 0, 2, 1, 1)
        self.reconciler = VaultSecretReconciler(
            self.kube, Sessions(KubeCredentials(self.kube)), settings
        )
        auth, conn = vault_auth(tenant)["spec"], connection(stack.bao.address)["spec"]
        self.view = View(
            auths=lambda ns, name: auth if (ns, name) == (tenant, "default") else None,
            connections=lambda _ns, name: conn if name == "default" else None,
        )
        self.uid = str(uuid.uuid4())

    def sync(self, name: str, path: str, **destination: Any) -> tuple[Any, list[tuple[str, str]]]:
        """One reconcile; (outcome, the requests it sent about Secrets of the tenant)."""
        body = {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": name, "namespace": self.tenant, "uid": self.uid},
            "spec": {
                "path": path,
                "destination": {"name": name, "creationPolicy": "Orphan", **destination},
            },
            "status": {},
        }
        self.api.sent.clear()
        result = self.reconciler.sync(body, self.view)
        prefix = f"/namespaces/{self.tenant}/secrets"
        return result.outcome, [(m, p) for m, p in self.api.sent if p.startswith(prefix)]

    def watched(self, name: str) -> dict[str, Any]:
        """Feed the Secret as it is now to the watch's copies, as kopf would."""
        body = secrets.read(self.reader, self.tenant, name)
        assert body is not None
        self.kube.secrets.put(body)
        return body


@pytest.fixture
def harness(stack: Stack, tenant: str) -> Harness:
    def service_account() -> bool:  # the tenant logs in as it; a new namespace gets it soon
        names = [
            sa.metadata.name for sa in stack.core.list_namespaced_service_account(tenant).items
        ]
        return "default" in names

    eventually(service_account, 30, f"ServiceAccount {tenant}/default")
    return Harness(stack, tenant)


def test_new_secret_is_created_without_a_read(stack: Stack, harness: Harness) -> None:
    stack.put(f"{harness.tenant}/a", {"k": "v1"})
    outcome, sent = harness.sync("a", f"{harness.tenant}/a")
    assert outcome.ready and outcome.written, outcome
    assert sent == [("POST", f"/namespaces/{harness.tenant}/secrets")]


def test_refresh_that_changes_nothing_sends_nothing(stack: Stack, harness: Harness) -> None:
    stack.put(f"{harness.tenant}/a", {"k": "v1"})
    harness.sync("a", f"{harness.tenant}/a")
    harness.watched("a")
    for _ in range(3):
        outcome, sent = harness.sync("a", f"{harness.tenant}/a")
        assert outcome.ready and not outcome.written, outcome
        assert sent == []


def test_stale_copy_is_replaced_after_a_fresh_read(stack: Stack, harness: Harness) -> None:
    stack.put(f"{harness.tenant}/a", {"k": "v1"})
    harness.sync("a", f"{harness.tenant}/a")
    harness.watched("a")  # then edited by hand, the watch not yet delivering the edit
    stack.core.patch_namespaced_secret("a", harness.tenant, {"data": {"k": "ZWRpdGVk"}})
    stack.put(f"{harness.tenant}/a", {"k": "v2"})
    outcome, sent = harness.sync("a", f"{harness.tenant}/a")
    assert outcome.ready and outcome.written, outcome
    path = f"/namespaces/{harness.tenant}/secrets/a"
    assert sent == [("PUT", path), ("GET", path), ("PUT", path)]  # refused at the old version
    assert stack.secret_data(harness.tenant, "a") == {"k": "v2"}


def test_foreign_secret_is_never_written(stack: Stack, harness: Harness) -> None:
    stack.put(f"{harness.tenant}/a", {"k": "v1"})
    stack.core.create_namespaced_secret(
        harness.tenant, {"metadata": {"name": "mine"}, "stringData": {"k": "users"}}
    )
    outcome, sent = harness.sync("mine", f"{harness.tenant}/a")
    assert not outcome.ready and outcome.reason == "SecretConflict", outcome
    base = f"/namespaces/{harness.tenant}/secrets"
    assert sent == [("POST", base), ("GET", f"{base}/mine")]  # exists: read, then refused
    assert stack.secret_data(harness.tenant, "mine") == {"k": "users"}


def test_merge_reads_the_secret_it_was_not_shown(stack: Stack, harness: Harness) -> None:
    stack.put(f"{harness.tenant}/a", {"k": "v1"})
    stack.core.create_namespaced_secret(
        harness.tenant, {"metadata": {"name": "app"}, "stringData": {"own": "users"}}
    )
    outcome, sent = harness.sync("app", f"{harness.tenant}/a", creationPolicy="Merge")
    assert outcome.ready and outcome.written, outcome
    path = f"/namespaces/{harness.tenant}/secrets/app"
    assert sent == [("GET", path), ("PUT", path)]
    assert stack.secret_data(harness.tenant, "app") == {"own": "users", "k": "v1"}


def test_content_refused_on_create_is_judged_on_a_fresh_read(
    stack: Stack, harness: Harness
) -> None:
    """The API server checks a new Secret's content before its existence: a kubernetes.io/tls
    Secret without tls.key is refused as invalid even when the name is taken, so the reason
    given comes from the Secret that is there."""
    stack.put(f"{harness.tenant}/a", {"k": "v1"})
    stack.core.create_namespaced_secret(
        harness.tenant, {"metadata": {"name": "tls"}, "stringData": {"k": "users"}}
    )
    outcome, sent = harness.sync("tls", f"{harness.tenant}/a", type="kubernetes.io/tls")
    assert not outcome.ready and outcome.reason == "SecretConflict", outcome
    base = f"/namespaces/{harness.tenant}/secrets"
    assert sent == [("POST", base), ("GET", f"{base}/tls")]
    assert stack.secret_data(harness.tenant, "tls") == {"k": "users"}
