"""The operator's own Vault identity, used to configure Vault cluster-wide.

VaultPolicy and VaultAuditDevice are cluster-scoped and change Vault itself, so they
log in as the operator: through a VaultAuth in the operator's namespace, with a
ServiceAccount of that namespace. Tenants cannot reach that identity from theirs.
"""

from __future__ import annotations

from vaultsync.sync import Directory
from vaultsync.tenancy import SecretReader, identity_for
from vaultsync.vault.sessions import Identity


def operator_identity(
    auth_ref: str, directory: Directory, read_secret: SecretReader, operator_namespace: str
) -> Identity:
    return identity_for(
        operator_namespace,
        auth_ref,
        auths=directory.auths,
        connections=directory.connections,
        read_secret=read_secret,
        operator_namespace=operator_namespace,
    )
