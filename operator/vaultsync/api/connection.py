"""VaultConnection: where a Vault/OpenBao server is (cluster-scoped)."""

from __future__ import annotations

from pydantic import Field

from vaultsync.api.base import ConditionedStatus, K8sName, Model


class SecretKeySelector(Model):
    """A key of a Secret in a named namespace."""

    namespace: K8sName
    name: K8sName
    key: str = Field(min_length=1)


class VaultConnectionSpec(Model):
    address: str = Field(
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="Base URL of the Vault/OpenBao API, e.g. https://vault.vault.svc:8200.",
    )
    namespace: str = Field(
        default="",
        description="Vault Enterprise/OpenBao namespace; empty for the root namespace.",
    )
    ca_cert_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description="PEM CA bundle used to verify the server's TLS certificate.",
    )
    timeout_seconds: int = Field(default=10, ge=1, le=300)


class VaultConnectionStatus(ConditionedStatus):
    """Whether the server answers, is initialised and unsealed (no login needed)."""

    server_version: str | None = None
    sealed: bool | None = None
