"""Login material from the Kubernetes API: TokenRequest tokens and Secret values."""

from __future__ import annotations

import base64

from kubernetes import client
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
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=list(audiences) or None, expiration_seconds=expiration_seconds
            )
        )
        try:
            response = self._kube.core.create_namespaced_service_account_token(
                name, namespace, request
            )
        except ApiException as exc:
            raise CredentialsUnavailable(
                f"TokenRequest for ServiceAccount {namespace}/{name}: {describe(exc)}"
            ) from None
        if response.status is None or not response.status.token:
            raise CredentialsUnavailable(f"TokenRequest for {namespace}/{name} returned no token")
        return str(response.status.token)

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self._kube.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            raise CredentialsUnavailable(
                f"token Secret {namespace}/{name}: {describe(exc)}"
            ) from None
        encoded = (secret.data or {}).get(key)
        if not encoded:
            raise CredentialsUnavailable(f"token Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(encoded).decode().strip()
