"""Login material from the Kubernetes API: TokenRequest tokens and Secret values."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe
from vaultsync.runtime.errors import SyncError


class CredentialsUnavailable(SyncError):
    """No login material: the ServiceAccount token or the token Secret could not be had."""

    reason = "AuthenticationFailed"


class KubeCredentials:
    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], expiration_seconds: int
    ) -> str:
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            response = self._kube.core.create_namespaced_service_account_token(
                name, namespace, request
            )
        except ApiException as exc:
            raise CredentialsUnavailable(
                f"TokenRequest for ServiceAccount {namespace}/{name}: {describe(exc)}"
            ) from None
        token = (response.get("status") or {}).get("token")
        if not token:
            raise CredentialsUnavailable(f"TokenRequest for {namespace}/{name} returned no token")
        return str(token)

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self._kube.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            raise CredentialsUnavailable(
                f"token Secret {namespace}/{name}: {describe(exc)}"
            ) from None
        encoded = (secret.get("data") or {}).get(key)
        if not encoded:
            raise CredentialsUnavailable(f"token Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(encoded).decode().strip()
