from typing import Any

import pytest

from vaultsync.connections.identity import identity_for
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.view import View
from vaultsync.vault.sessions import KubernetesLogin, TokenLogin

CONNECTIONS = {(None, "default"): {"address": "https://vault:8200", "namespace": "corp"}}


def resolve(auths: dict[tuple[str | None, str], Any], namespace: str = "team-b") -> Any:
    return identity_for(
        namespace,
        "default",
        View(
            auths=lambda ns, name: auths.get((ns, name)),
            connections=lambda ns, name: CONNECTIONS.get((ns, name)),
        ),
        read_secret=lambda *_: "",
        operator_namespace="ops",
    )


K8S = {"kubernetes": {"role": "r", "serviceAccount": "app"}}


def test_own_namespace_auth_logs_in_as_own_service_account() -> None:
    identity = resolve({("team-b", "default"): K8S})
    assert identity.login == KubernetesLogin("kubernetes", "r", "team-b", "app")
    assert identity.endpoint.namespace == "corp"


def test_shared_auth_still_uses_the_consumers_service_account() -> None:
    identity = resolve({("ops", "default"): {**K8S, "allowedNamespaces": ["team-b"]}})
    assert isinstance(identity.login, KubernetesLogin)
    assert identity.login.namespace == "team-b"


@pytest.mark.parametrize("allowed", [[], ["team-a"], ["team-b-x"]])
def test_shared_auth_refuses_namespaces_it_does_not_list(allowed: list[str]) -> None:
    with pytest.raises(SyncError) as err:
        resolve({("ops", "default"): {**K8S, "allowedNamespaces": allowed}})
    assert err.value.reason == "AuthNotAllowed"


def test_another_tenants_auth_is_never_found() -> None:
    with pytest.raises(SyncError) as err:
        resolve({("team-a", "default"): {**K8S, "allowedNamespaces": ["*"]}})
    assert err.value.reason == "AuthNotFound"


def test_token_secret_is_read_beside_the_vaultauth() -> None:
    token = {"token": {"secretRef": {"name": "t"}}, "allowedNamespaces": ["*"]}
    identity = resolve({("ops", "default"): token})
    assert identity.login == TokenLogin("ops", "t", "token")


def test_vault_namespace_of_the_auth_overrides_the_connections() -> None:
    identity = resolve({("team-b", "default"): {**K8S, "vaultNamespace": "corp/team-b"}})
    assert identity.endpoint.namespace == "corp/team-b"


def test_missing_connection() -> None:
    with pytest.raises(SyncError) as err:
        resolve({("team-b", "default"): {**K8S, "connectionRef": "elsewhere"}})
    assert err.value.reason == "ConnectionNotFound"


@pytest.mark.parametrize("pem", ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nxx\n"])
def test_a_ca_secret_without_a_pem_certificate_says_so(pem: str) -> None:
    connections = {
        (None, "default"): {
            "address": "https://vault:8200",
            "caCertSecretRef": {"namespace": "ops", "name": "ca", "key": "ca.crt"},
        }
    }
    with pytest.raises(SyncError) as err:
        identity_for(
            "team-b",
            "default",
            View(
                auths=lambda ns, name: K8S if (ns, name) == ("team-b", "default") else None,
                connections=lambda ns, name: connections.get((ns, name)),
            ),
            read_secret=lambda *_: pem,
            operator_namespace="ops",
        )
    assert err.value.reason == "InvalidCACertificate"
    assert "holds no PEM certificate" in str(err.value)


@pytest.mark.parametrize("methods", [{}, {**K8S, "token": {"secretRef": {"name": "t"}}}])
def test_a_vaultauth_with_no_or_two_methods_is_refused_by_the_operator_too(
    methods: dict[str, Any],
) -> None:
    with pytest.raises(SyncError) as err:
        resolve({("team-b", "default"): methods})
    assert err.value.reason == "InvalidAuth"
    assert "exactly one auth method" in str(err.value)
