"""Which Vault identity an object logs in as: the one module every kind shares.

A VaultSecret uses a VaultAuth of its own namespace, or a VaultAuth in the
operator's namespace that lists its namespace in allowedNamespaces. Either way a
Kubernetes-auth login uses a ServiceAccount of the *consuming* namespace, so a
tenant can never borrow another namespace's identity.

VaultPolicy and VaultAuditDevice are cluster-scoped and change Vault itself, so they
log in as the operator: through a VaultAuth in the operator's namespace, with a
ServiceAccount of that namespace. Tenants cannot reach that identity from theirs.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from vaultsync.api.auth import VaultAuthSpec
from vaultsync.api.base import M, parse
from vaultsync.api.connection import VaultConnectionSpec
from vaultsync.kube.api import Kube
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.view import SpecLookup, View
from vaultsync.vault.client import Endpoint
from vaultsync.vault.sessions import Identity, KubernetesLogin, TokenLogin

SecretReader = Callable[[str, str, str], str]


def _parse(model: type[M], raw: Any, what: str, reason: str) -> M:
    """A referenced object's spec; invalid, it needs a person (not retryable: Stalled), and
    the object that names it waits with it."""
    try:
        return parse(model, raw, reason)
    except SyncError as exc:
        raise SyncError(f"{what} is invalid: {exc}", reason=reason, retryable=False) from None


def endpoint_for(name: str, connections: SpecLookup, read_secret: SecretReader) -> Endpoint:
    raw = connections(None, name)
    if raw is None:
        raise SyncError(f"VaultConnection {name!r} does not exist", reason="ConnectionNotFound")
    spec = _parse(VaultConnectionSpec, raw, f"VaultConnection {name!r}", "InvalidConnection")
    ca_pem = None
    if spec.ca_cert_secret_ref is not None:
        ref = spec.ca_cert_secret_ref
        ca_pem = read_secret(ref.namespace, ref.name, ref.key)
        if not _is_pem_bundle(ca_pem):
            raise SyncError(
                f"VaultConnection {name!r}: caCertSecretRef {ref.namespace}/{ref.name} key "
                f"{ref.key!r} holds no PEM certificate",
                reason="InvalidCACertificate",
                retryable=False,
            )
    return Endpoint(spec.address, spec.namespace, ca_pem, float(spec.timeout_seconds))


def _is_pem_bundle(text: str) -> bool:
    """Whether text holds at least one PEM certificate that TLS can trust."""
    if "-----BEGIN CERTIFICATE-----" not in text:
        return False
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError):
        return False
    return True


def _allows(auth: VaultAuthSpec, namespace: str) -> bool:
    return "*" in auth.allowed_namespaces or namespace in auth.allowed_namespaces


def find_auth(
    namespace: str, name: str, auths: SpecLookup, operator_namespace: str | None
) -> tuple[str, VaultAuthSpec]:
    """The VaultAuth an object of namespace names, and the namespace it lives in."""
    candidates = [namespace]
    if operator_namespace and operator_namespace != namespace:
        candidates.append(operator_namespace)
    for where in candidates:
        raw = auths(where, name)
        if raw is None:
            continue
        spec = _parse(VaultAuthSpec, raw, f"VaultAuth {where}/{name}", "InvalidAuth")
        if where == namespace:
            return where, spec
        if _allows(spec, namespace):
            return where, spec
        raise SyncError(
            f"VaultAuth {where}/{name} does not allow namespace {namespace!r}",
            reason="AuthNotAllowed",
        )
    raise SyncError(
        f"VaultAuth {name!r} not found in namespace {namespace!r}"
        + (f" nor shared from {operator_namespace!r}" if operator_namespace else ""),
        reason="AuthNotFound",
    )


def identity_for(
    namespace: str,
    auth_ref: str,
    view: View,
    *,
    read_secret: SecretReader,
    operator_namespace: str | None,
) -> Identity:
    auth_namespace, auth = find_auth(namespace, auth_ref, view.auths, operator_namespace)
    endpoint = endpoint_for(auth.connection_ref, view.connections, read_secret)
    if auth.vault_namespace is not None:
        endpoint = replace(endpoint, namespace=auth.vault_namespace)
    if auth.kubernetes is not None:
        k8s = auth.kubernetes
        return Identity(
            endpoint,
            KubernetesLogin(
                mount=k8s.mount,
                role=k8s.role,
                namespace=namespace,
                service_account=k8s.service_account,
                audiences=tuple(k8s.audiences),
                expiration_seconds=k8s.token_expiration_seconds,
            ),
        )
    if auth.token is not None:
        ref = auth.token.secret_ref
        return Identity(endpoint, TokenLogin(auth_namespace, ref.name, ref.key))
    raise SyncError(
        f"VaultAuth {auth_namespace}/{auth_ref} sets no method",
        reason="InvalidAuth",
        retryable=False,
    )


class Identities:
    """Who an object logs in as, with login material read from the Kubernetes API."""

    def __init__(self, kube: Kube, operator_namespace: str) -> None:
        self.credentials = KubeCredentials(kube)
        self.operator_namespace = operator_namespace

    def tenant(self, namespace: str, auth_ref: str, view: View) -> Identity:
        """A namespaced object's identity: always its own namespace's (see the module doc)."""
        return identity_for(
            namespace,
            auth_ref,
            view,
            read_secret=self.credentials.secret_value,
            operator_namespace=self.operator_namespace,
        )

    def operator(self, auth_ref: str, view: View) -> Identity:
        """The operator's own identity, for the kinds that configure Vault cluster-wide."""
        return self.tenant(self.operator_namespace, auth_ref, view)

    def endpoint(self, connection: str, view: View) -> Endpoint:
        return endpoint_for(connection, view.connections, self.credentials.secret_value)
