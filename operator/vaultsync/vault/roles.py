"""Roles of Vault's Kubernetes auth method: read, write, delete.

Only the fields below are managed. The bindings and the policies are always written; the
optional fields (`OPTIONAL`: token TTLs, audience) only when declared (not None): a write
leaves every field it does not name as Vault has it (Vault updates a role field by field),
so a value set by hand in a field vaultsync does not declare survives. A role read back
from Vault is reduced to these fields, and `holds` compares it with the wanted role in the
declared fields only, so drift is detected in exactly those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import hvac

from vaultsync.vault.errors import InvalidRequest, VaultError, translate
from vaultsync.vault.observe import request

OPTIONAL: Mapping[str, int | str] = {"token_ttl": 0, "token_max_ttl": 0, "audience": ""}
"""The optional fields vaultsync can write, by Vault name, with Vault's default of each."""


class RoleRejected(VaultError):
    """Vault refused the role's settings; only a spec change fixes it."""

    reason = "RoleRejected"
    retryable = False


def _sorted(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class KubernetesRole:
    """A role; an optional field that is None is not declared: left as Vault has it."""

    mount: str
    name: str
    service_accounts: tuple[str, ...]
    namespaces: tuple[str, ...]
    policies: tuple[str, ...]
    ttl: int | None = None
    max_ttl: int | None = None
    audience: str | None = None

    @classmethod
    def of(
        cls,
        mount: str,
        name: str,
        *,
        service_accounts: Iterable[str],
        namespaces: Iterable[str],
        policies: Iterable[str],
        ttl: int | None = None,
        max_ttl: int | None = None,
        audience: str | None = None,
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

    @property
    def options(self) -> dict[str, int | str]:
        """The optional fields declared, by Vault name."""
        values = {"token_ttl": self.ttl, "token_max_ttl": self.max_ttl, "audience": self.audience}
        return {k: v for k, v in values.items() if v is not None}

    def payload(self, resets: Iterable[str] = ()) -> dict[str, Any]:
        """The write: bindings, policies, the declared optional fields, and `resets` (optional
        fields not declared) set back to Vault's default. Nothing else is named."""
        return {
            "bound_service_account_names": list(self.service_accounts),
            "bound_service_account_namespaces": list(self.namespaces),
            "token_policies": list(self.policies),
            **{field: OPTIONAL[field] for field in resets},
            **self.options,
        }

    def holds(self, current: KubernetesRole | None, resets: Iterable[str] = ()) -> bool:
        """Whether current (the role read back, None: there is none) has what payload(resets)
        would write."""
        if current is None:
            return False
        have = current.payload(OPTIONAL)
        return all(have[field] == value for field, value in self.payload(resets).items())


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
def write(client: hvac.Client, role: KubernetesRole, resets: Iterable[str] = ()) -> None:
    """Write role's fields (payload); Vault keeps the fields not named."""
    try:
        client.write_data(role.where, data=role.payload(resets))
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
