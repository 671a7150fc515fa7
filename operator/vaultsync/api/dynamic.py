"""VaultDynamicSecret: a leased credential of any secrets engine (a database engine's
creds/<role>, or static-creds/<role>) in a Kubernetes Secret (namespaced)."""

from __future__ import annotations

from pydantic import Field

from vaultsync.api.base import CheckedModel, ConditionedStatus, Duration, K8sName, Model
from vaultsync.api.names import VaultMount, VaultPath
from vaultsync.api.restart import RESTART_DESCRIPTION, RestartSpec, RolloutRestartTargets
from vaultsync.api.secret import Destination, Keys, Template, shape_problems

DEFAULT_RENEWAL_PERCENT = 67
DEFAULT_REVOKE_GRACE = "5m"


class VaultDynamicSecretSpec(CheckedModel):
    """Which path to take a leased credential from, how to shape it, when to renew and replace
    it, and the Secret to write it to."""

    auth_ref: K8sName = Field(
        default="default",
        description="The VaultAuth to log in with: the one of this name in the "
        "VaultDynamicSecret's namespace, else the one in the operator's namespace if its "
        "allowedNamespaces lists this namespace (AuthNotAllowed otherwise). The tenant's policy "
        "needs read on <mount>/<path>, and update on sys/leases/renew/<mount>/<path>/* and "
        "sys/leases/revoke/<mount>/<path>/*.",
    )
    mount: VaultMount = Field(
        default="database", description="Mount path of the secrets engine, e.g. database."
    )
    path: VaultPath = Field(
        description="Path under the mount that issues a leased credential on each read, e.g. "
        "creds/app (a dynamic database role), or static-creds/app (a static role: no lease, "
        "Vault rotates the password every rotation_period; it is read again after each "
        "rotation)."
    )
    renewal_percent: int = Field(
        default=DEFAULT_RENEWAL_PERCENT,
        ge=1,
        le=90,
        description="Renew the lease when this percentage of its current duration has passed "
        "(a little earlier, by up to a tenth of the duration, so that many leases issued "
        "together are not renewed together). When Vault no longer extends the lease (its "
        "max_ttl), a new credential is issued while (100 - renewalPercent)% of a lease "
        "duration is left.",
    )
    revoke_grace_period: Duration = Field(
        default=DEFAULT_REVOKE_GRACE,
        max_length=32,
        description="How long a replaced credential stays valid after the Secret holds its "
        'successor, so that the restarted workloads roll out first, e.g. "5m"; then its lease '
        'is revoked. "0": at once. A lease ends at its own expiry anyway, whichever is first.',
    )
    keys: Keys = Field(default_factory=list)
    template: Template = Field(default_factory=dict)
    destination: Destination = Field(
        description="The Kubernetes Secret written, in the VaultDynamicSecret's namespace. "
        "Its deletionPolicy also decides the lease: Delete revokes it when the "
        "VaultDynamicSecret is deleted, Retain leaves it to expire."
    )
    rollout_restart_targets: RolloutRestartTargets = Field(default_factory=list)
    restart: RestartSpec | None = Field(default=None, description=RESTART_DESCRIPTION)

    def problems(self) -> list[str]:
        return shape_problems(self.keys, self.template)


class PendingRevocation(Model):
    """A replaced credential's lease, revoked once its grace period is over."""

    lease_id: str = Field(alias="leaseID", description="The lease to revoke.")
    revoke_at: str = Field(description="When it is revoked (RFC 3339).")


class VaultDynamicSecretStatus(ConditionedStatus):
    """The lease of the credential the Secret holds, and when it is renewed or replaced."""

    lease_id: str | None = Field(
        default=None,
        alias="leaseID",
        description="The lease of the credential the Secret holds (empty for a static role, "
        "which has none). Also on the Secret, in the annotation vaultsync.io/lease.",
    )
    lease_duration: int | None = Field(
        default=None, description="Seconds the lease was issued for (a static role: the "
        "seconds until Vault rotated the password, when it was read).",
    )  # fmt: skip
    lease_expiry: str | None = Field(
        default=None,
        description="When the lease runs out unless renewed (RFC 3339); a static role: when "
        "Vault rotates the password next.",
    )
    credential_expiry: str | None = Field(
        default=None,
        description="When the credential ends for good (RFC 3339): known once Vault no longer "
        "extends its lease (max_ttl), or the lease is not renewable; a static role: the next "
        "rotation.",
    )
    next_renewal: str | None = Field(
        default=None,
        description="When vaultsync acts next (RFC 3339): renews the lease, issues a new "
        "credential, or reads a static role's rotated password.",
    )
    last_issue_time: str | None = Field(
        default=None, description="When vaultsync last issued (or read) a credential (RFC 3339)."
    )
    last_renewal_time: str | None = Field(
        default=None, description="When vaultsync last renewed the lease (RFC 3339)."
    )
    pending_revocations: list[PendingRevocation] = Field(
        default_factory=list,
        description="Leases of replaced credentials, revoked once their grace period is over "
        "(also on the Secret, so that an operator restart or a lost status keeps them).",
    )
    secret_name: str | None = Field(
        default=None, description="The Secret last written; a renamed destination releases it."
    )
