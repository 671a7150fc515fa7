"""Roles of Vault's Kubernetes auth method: read, write, delete.

Only the fields below are managed; a role read back from Vault is reduced to them,
so comparing it with the wanted role detects drift in exactly those fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import hvac

from vaultsync.vault.errors import InvalidRequest, VaultError, translate
from vaultsync.vault.observe import request


class RoleRejected(VaultError):
    """Vault refused the role's settings; only a spec change fixes it."""

    reason = "RoleRejected"
    retryable = False


def _sorted(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class KubernetesRole:
    mount: str
    name: str
    service_accounts: tuple[str, ...]
    namespaces: tuple[str, ...]
    policies: tuple[str, ...]
    ttl: int = 0
    max_ttl: int = 0
    audience: str = ""

    @classmethod
    def of(
        cls,
        mount: str,
        name: str,
        *,
        service_accounts: Iterable[str],
        namespaces: Iterable[str],
        policies: Iterable[str],
        ttl: int = 0,
        max_ttl: int = 0,
        audience: str = "",
    ) -> KubernetesRole:
        """A role with its lists in canonical order (Vault keeps them as sets)."""
        return cls(
            mount,
            name,
            _sorted(service_accounts),
            _sorted(namespaces),
            _sorted(policies),
            ttl,
            max_ttl,
            audience,
        )

    @property
    def where(self) -> str:
        return f"auth/{self.mount}/role/{self.name}"

    def payload(self) -> dict[str, Any]:
        return {
            "bound_service_account_names": list(self.service_accounts),
            "bound_service_account_namespaces": list(self.namespaces),
            "token_policies": list(self.policies),
            "token_ttl": self.ttl,
            "token_max_ttl": self.max_ttl,
            "audience": self.audience,
        }


@request("role_read")
def read(client: hvac.Client, mount: str, name: str) -> KubernetesRole | None:
    where = f"auth/{mount}/role/{name}"
    try:
        response = client.read(where)
    except Exception as exc:
        raise translate(exc, f"read role {where}") from None
    if not response:
        return None
    data = response.get("data") or {}
    return KubernetesRole.of(
        mount,
        name,
        service_accounts=data.get("bound_service_account_names") or [],
        namespaces=data.get("bound_service_account_namespaces") or [],
        policies=data.get("token_policies") or [],
        ttl=int(data.get("token_ttl") or 0),
        max_ttl=int(data.get("token_max_ttl") or 0),
        audience=str(data.get("audience") or ""),
    )


@request("role_write")
def write(client: hvac.Client, role: KubernetesRole) -> None:
    try:
        client.write_data(role.where, data=role.payload())
    except Exception as exc:
        error = translate(exc, f"Vault rejected role {role.where}")
        if isinstance(error, InvalidRequest):
            raise RoleRejected(str(error)) from None
        raise error from None


@request("role_delete")
def delete(client: hvac.Client, mount: str, name: str) -> None:
    """Delete a role; deleting a missing one is not an error."""
    where = f"auth/{mount}/role/{name}"
    try:
        client.delete(where)
    except Exception as exc:
        raise translate(exc, f"delete role {where}") from None
