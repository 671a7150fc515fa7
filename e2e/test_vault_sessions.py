"""Login reuse, renewal and re-login with real Kubernetes auth (TokenRequest -> OpenBao)."""

from __future__ import annotations

import pytest
from kubernetes import client, config

from e2e.harness.stack import Stack
from vaultsync.kube.api import Kube
from vaultsync.kube.core import CoreV1
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.runtime import metrics
from vaultsync.vault import kv
from vaultsync.vault.client import Endpoint
from vaultsync.vault.errors import AuthenticationFailed, PermissionDenied
from vaultsync.vault.sessions import Identity, KubernetesLogin, Sessions

pytestmark = pytest.mark.e2e


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions_for(stack: Stack, clock: Clock) -> Sessions:
    api = config.new_client_from_config(str(stack.cp.kubeconfig))
    kube = Kube(CoreV1(api), client.CustomObjectsApi(api))
    return Sessions(KubeCredentials(kube), clock=clock)


def logins() -> float:
    return metrics.VAULT_LOGINS.labels("kubernetes")._value.get()


def test_reuse_renew_and_relogin(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/s", {"k": "session-value-1"})
    stack.vault.write(
        f"auth/kubernetes/role/{tenant}",
        bound_service_account_names=["default"],
        bound_service_account_namespaces=[tenant],
        token_policies=[f"{tenant}-read"],
        token_ttl=120,
        token_max_ttl=600,
    )
    clock = Clock()
    sessions = sessions_for(stack, clock)
    identity = Identity(
        Endpoint(stack.bao.address), KubernetesLogin("kubernetes", tenant, tenant, "default")
    )
    start = logins()
    first = sessions.client(identity)
    token = first.token
    for _ in range(3):
        assert kv.read(sessions.client(identity), "secret", f"{tenant}/s").data
    assert logins() == start + 1, "one login, reused"

    clock.now += 100  # past 2/3 of the 120 s TTL: renewed, not replaced
    renewed = sessions.client(identity)
    assert renewed.token == token
    assert logins() == start + 1
    assert renewed.auth.token.lookup_self()["data"]["ttl"] > 100

    stack.vault.auth.token.revoke(token)
    with pytest.raises((PermissionDenied, AuthenticationFailed)):
        kv.read(sessions.client(identity), "secret", f"{tenant}/s")
    clock.now += 100  # renewal of a revoked token fails: a fresh login replaces it
    fresh = sessions.client(identity)
    assert fresh.token != token
    assert logins() == start + 2
    assert kv.read(fresh, "secret", f"{tenant}/s").data == {"k": "session-value-1"}


def test_other_namespaces_service_account_cannot_log_in(stack: Stack, tenant: str) -> None:
    sessions = sessions_for(stack, Clock())
    identity = Identity(
        Endpoint(stack.bao.address),
        KubernetesLogin("kubernetes", tenant, "default", "default"),  # role bound to tenant only
    )
    with pytest.raises(AuthenticationFailed) as err:
        sessions.client(identity)
    assert "default/default" in str(err.value)
