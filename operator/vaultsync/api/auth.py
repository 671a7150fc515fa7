"""VaultAuth: how the objects of a namespace log in to Vault (namespaced)."""

from __future__ import annotations

from pydantic import Field

from vaultsync.api.base import ConditionedStatus, K8sName, Model
from vaultsync.api.names import VaultMount


class KubernetesAuth(Model):
    """Vault Kubernetes auth with a ServiceAccount token from the TokenRequest API.

    The ServiceAccount is always taken from the namespace of the object that
    consumes this VaultAuth, so a tenant only ever logs in as itself.
    """

    mount: VaultMount = "kubernetes"
    role: str = Field(min_length=1)
    service_account: K8sName = "default"
    audiences: list[str] = Field(default_factory=list)
    token_expiration_seconds: int = Field(default=600, ge=600, le=86400)


class LocalSecretKey(Model):
    name: K8sName
    key: str = Field(default="token", min_length=1)


class TokenAuth(Model):
    """A static Vault token from a Secret in the VaultAuth's namespace (development)."""

    secret_ref: LocalSecretKey


class VaultAuthSpec(Model):
    connection_ref: K8sName = "default"
    vault_namespace: str | None = Field(
        default=None,
        description="Vault namespace to log in and read in; overrides the VaultConnection's.",
    )
    kubernetes: KubernetesAuth | None = None
    token: TokenAuth | None = None
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        description=(
            "Only honoured on a VaultAuth in the operator's namespace: other namespaces "
            'that may use it ("*" for all).'
        ),
    )


VAULT_AUTH_RULES = [
    {
        "rule": "(has(self.kubernetes) ? 1 : 0) + (has(self.token) ? 1 : 0) == 1",
        "message": "exactly one auth method (kubernetes or token) must be set",
    }
]


class VaultAuthStatus(ConditionedStatus):
    pass
