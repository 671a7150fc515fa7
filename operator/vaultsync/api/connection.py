"""VaultConnection: where a Vault/OpenBao server is (cluster-scoped)."""

from __future__ import annotations

from pydantic import Field

from vaultsync.api.base import ConditionedStatus, K8sName, Model


class SecretKeySelector(Model):
    """A key of a Secret in a named namespace."""

    namespace: K8sName = Field(description="Namespace of the Secret.")
    name: K8sName = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key of the Secret's data that holds the value.")


class VaultConnectionSpec(Model):
    """Where the server is and how to trust it; VaultAuths name it in connectionRef."""

    address: str = Field(
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="Base URL of the Vault/OpenBao API, e.g. https://vault.vault.svc:8200 "
        "(http only for local development).",
    )
    namespace: str = Field(
        default="",
        description="Vault Enterprise/OpenBao namespace of every request through this "
        "connection; empty: the root namespace. A VaultAuth's vaultNamespace overrides it.",
    )
    ca_cert_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description="Secret key holding the PEM CA bundle that verifies the server's TLS "
        "certificate; absent: the operator's default CA bundle (that of Python requests). A "
        "certificate no trusted CA signed is refused (VaultUnavailable), never ignored; a value "
        "without a PEM certificate is InvalidCACertificate.",
    )
    timeout_seconds: int = Field(
        default=10, ge=1, le=300, description="Timeout of each request to the server, in seconds."
    )


class VaultConnectionStatus(ConditionedStatus):
    """Whether the server answers, is initialised and unsealed (no login needed)."""

    server_version: str | None = Field(
        default=None, description="The version the server reports in its seal status."
    )
    sealed: bool | None = Field(
        default=None, description="Whether the server was sealed at the last check."
    )
