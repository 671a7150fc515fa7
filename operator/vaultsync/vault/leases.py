"""Leased secrets: read a credential from any secrets engine path that issues one (a
database engine's creds/<role>, or static-creds/<role> whose password Vault rotates), renew
its lease and revoke it.

Renewal and revocation name the lease in the URL (sys/leases/renew/<lease id>,
sys/leases/revoke/<lease id>), so that a tenant's policy can allow them for the leases of its
own role only (`sys/leases/revoke/database/creds/team-a/*`) rather than for any lease whose id
it learns.

The credential's data is kept in Credential only, which never shows it in its repr; messages
are built from the operation, the path or lease id and Vault's error strings alone (a lease
id is a name, not a secret: without a token allowed on sys/leases it opens nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hvac
from hvac.utils import format_url

from vaultsync.vault.errors import (
    InvalidRequest,
    SecretNotFound,
    VaultError,
    translate_refusal,
    update,
)
from vaultsync.vault.observe import request

VOLATILE = frozenset({"ttl"})
"""Fields of a static credential's answer that change on every read (the seconds left until
Vault rotates the password): not data of the credential."""


class CredentialRefused(VaultError):
    """Vault refused to issue (an unknown role or mount, a path that issues nothing): retried
    with backoff, since whoever runs Vault may fix the role without the object changing."""

    reason = "CredentialRefused"


class LeaseGone(VaultError):
    """Vault no longer knows the lease (revoked out of band, expired) or will not renew it:
    the credential is replaced, not retried."""

    reason = "LeaseNotFound"
    retryable = False


@dataclass(frozen=True)
class Credential:
    """What a read of a leased path returned. lease_id is "" when Vault keeps no lease (a
    static role); ttl is then the seconds until Vault rotates the password, else the lease's
    duration."""

    data: dict[str, Any] = field(repr=False)
    lease_id: str
    ttl: int
    renewable: bool

    @property
    def leased(self) -> bool:
        return bool(self.lease_id)


@dataclass(frozen=True)
class Renewed:
    ttl: int
    renewable: bool


@request("credential_read")
def read(client: hvac.Client, mount: str, path: str) -> Credential:
    """A credential from <mount>/<path> (a new one per read for a dynamic role)."""
    where = f"read a credential from {mount}/{path}"
    url = format_url("/v1/{0}/{1}", mount, path)
    try:
        response = client.adapter.get(url)
    except Exception as exc:
        error = translate_refusal(exc, where, f"'read' on {mount}/{path}")
        if isinstance(error, (InvalidRequest, SecretNotFound)):
            raise CredentialRefused(str(error)) from None
        raise error from None
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict) or not data:
        raise CredentialRefused(f"{where}: Vault's answer holds no data")
    lease_id = str(response.get("lease_id") or "")
    if lease_id:
        ttl = int(response.get("lease_duration") or 0)
        renewable = bool(response.get("renewable"))
    else:
        rotation = data.get("ttl")
        if not isinstance(rotation, int):
            raise CredentialRefused(
                f"{where}: Vault's answer has no lease and no ttl: not a leased or rotated "
                "credential (KV data is what VaultSecret syncs)"
            )
        ttl, renewable = rotation, False
    return Credential(
        {k: v for k, v in data.items() if k not in VOLATILE}, lease_id, ttl, renewable
    )


@request("lease_renew")
def renew(client: hvac.Client, lease_id: str, increment: int) -> Renewed:
    """Extend the lease by increment seconds; Vault may give less (its max TTL)."""
    where = f"renew lease {lease_id}"
    path = f"sys/leases/renew/{lease_id}"
    try:
        response = update(client, f"/v1/{path}", {"increment": increment}, where, path)
    except InvalidRequest as exc:
        raise LeaseGone(str(exc)) from None
    if not isinstance(response, dict):
        raise VaultError(f"{where}: Vault's answer is not a lease")
    return Renewed(int(response.get("lease_duration") or 0), bool(response.get("renewable")))


@request("lease_revoke")
def revoke(client: hvac.Client, lease_id: str) -> None:
    """Revoke the lease (Vault revokes the credential at its source: the database role is
    dropped); a lease Vault no longer knows counts as revoked."""
    path = f"sys/leases/revoke/{lease_id}"
    update(client, f"/v1/{path}", {}, f"revoke lease {lease_id}", path)
