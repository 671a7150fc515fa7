"""VaultAuth: how the objects of a namespace log in to Vault (namespaced)."""

from __future__ import annotations

from pydantic import Field, model_validator

from vaultsync.api.base import ConditionedStatus, K8sName, Model
from vaultsync.api.names import VaultMount

ONE_METHOD = "exactly one auth method (kubernetes or token) must be set"


class KubernetesAuth(Model):
    """Vault Kubernetes auth with a ServiceAccount token from the TokenRequest API.

    The ServiceAccount is always taken from the namespace of the object that
    consumes this VaultAuth, so a tenant only ever logs in as itself.
    """

    mount: VaultMount = Field(
        default="kubernetes",
        description="Mount path of Vault's Kubernetes auth method: the login goes to "
        "auth/<mount>/login.",
    )
    role: str = Field(
        min_length=1,
        description="The Vault role to log in as; it must bind serviceAccount in the namespaces "
        "of the objects that use this VaultAuth.",
    )
    service_account: K8sName = Field(
        default="default",
        description="The ServiceAccount whose token logs in, in the namespace of the object that "
        "uses this VaultAuth (which may not be the VaultAuth's own).",
    )
    audiences: list[str] = Field(
        default_factory=list,
        description="Audiences of the requested ServiceAccount token; empty: the API server's "
        "default audiences. They must include the audience the Vault role expects, if any.",
    )
    token_expiration_seconds: int = Field(
        default=600,
        ge=600,
        le=86400,
        description="Requested lifetime of the ServiceAccount token, in seconds. The token is "
        "only used to log in; the Vault token's TTL comes from the Vault role.",
    )


class LocalSecretKey(Model):
    """A key of a Secret in the VaultAuth's namespace."""

    name: K8sName = Field(description="Name of the Secret, in the VaultAuth's namespace.")
    key: str = Field(
        default="token",
        min_length=1,
        description="Key of the Secret's data holding the Vault token (surrounding whitespace "
        "is ignored).",
    )


class TokenAuth(Model):
    """A static Vault token from a Secret in the VaultAuth's namespace (development)."""

    secret_ref: LocalSecretKey = Field(description="The Secret key holding the token.")


class VaultAuthSpec(Model):
    """How to log in: exactly one method, kubernetes or token."""

    connection_ref: K8sName = Field(
        default="default", description="The VaultConnection (cluster-scoped) to log in through."
    )
    vault_namespace: str | None = Field(
        default=None,
        description="Vault namespace to log in and read in; overrides the VaultConnection's "
        "(empty: the root namespace); absent: the VaultConnection's.",
    )
    kubernetes: KubernetesAuth | None = Field(
        default=None,
        description="Log in with Vault's Kubernetes auth method, using a short-lived token of "
        "serviceAccount from the TokenRequest API. The ServiceAccount is always taken from the "
        "namespace of the object that uses this VaultAuth, so a tenant only ever logs in as "
        "itself.",
    )
    token: TokenAuth | None = Field(
        default=None,
        description="Log in with a static Vault token from a Secret in the VaultAuth's "
        "namespace, used as it is and never renewed (development and break-glass use). A "
        "shared VaultAuth hands this one token to every namespace it allows.",
    )
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        description=(
            "Only honoured on a VaultAuth in the operator's namespace: other namespaces whose "
            'objects may use it by authRef ("*" for all). With kubernetes each of them still '
            "logs in as a ServiceAccount of its own."
        ),
    )

    @model_validator(mode="after")
    def _one_method(self) -> VaultAuthSpec:
        if (self.kubernetes is None) == (self.token is None):
            raise ValueError(ONE_METHOD)
        return self


VAULT_AUTH_RULES = [
    {
        "rule": "(has(self.kubernetes) ? 1 : 0) + (has(self.token) ? 1 : 0) == 1",
        "message": ONE_METHOD,
    }
]


class VaultAuthStatus(ConditionedStatus):
    """Ready when the spec is usable, its VaultConnection exists and (token) its Secret holds
    the key. Logins are reported by the objects that use the VaultAuth: with kubernetes each
    consuming namespace logs in as itself."""
