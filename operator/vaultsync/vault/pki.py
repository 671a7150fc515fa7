"""The PKI secrets engine: issue a certificate from a role, revoke one by its serial number.

The private key Vault returns is kept in IssuedCertificate only, which never shows it in its
repr; messages are built from the operation, the path and Vault's error strings alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hvac
from hvac.utils import format_url

from vaultsync.vault.errors import (
    InvalidRequest,
    SecretNotFound,
    VaultError,
    update,
)
from vaultsync.vault.observe import request


class IssueRefused(VaultError):
    """Vault refused the certificate request (a name the role does not allow, an unknown
    role or mount, a TTL beyond the mount's): retried with backoff, since whoever runs Vault
    may fix the role without the object changing."""

    reason = "IssueRefused"


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: str
    issuing_ca: str
    ca_chain: tuple[str, ...]
    serial_number: str
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class CertificateRequest:
    """What is asked of <mount>/issue/<role>; ttl in whole seconds (None: the role's)."""

    common_name: str
    alt_names: Sequence[str] = ()
    ip_sans: Sequence[str] = ()
    uri_sans: Sequence[str] = ()
    ttl: int | None = None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "common_name": self.common_name,
            "format": "pem",
            "private_key_format": "der",  # with format pem: a PEM key (PKCS#1 or SEC 1)
        }
        for name, values in (
            ("alt_names", self.alt_names),
            ("ip_sans", self.ip_sans),
            ("uri_sans", self.uri_sans),
        ):
            if values:
                body[name] = ",".join(values)
        if self.ttl is not None:
            body["ttl"] = f"{self.ttl}s"
        return body


@request("pki_issue")
def issue(
    client: hvac.Client, mount: str, role: str, wanted: CertificateRequest
) -> IssuedCertificate:
    """A new certificate and private key from <mount>/issue/<role>."""
    where = f"issue a certificate from {mount}/issue/{role}"
    url = format_url("/v1/{0}/issue/{1}", mount, role)
    try:
        response = update(client, url, wanted.payload(), where, f"{mount}/issue/{role}")
    except (InvalidRequest, SecretNotFound) as exc:
        raise IssueRefused(str(exc)) from None
    data = response.get("data") if isinstance(response, dict) else None
    fields = ("certificate", "issuing_ca", "serial_number", "private_key")
    if not isinstance(data, dict) or not all(data.get(name) for name in fields):
        raise VaultError(f"{where}: Vault's answer lacks a certificate or key")
    chain = data.get("ca_chain") or [data["issuing_ca"]]
    return IssuedCertificate(
        certificate=str(data["certificate"]),
        issuing_ca=str(data["issuing_ca"]),
        ca_chain=tuple(str(c) for c in chain),
        serial_number=str(data["serial_number"]),
        private_key=str(data["private_key"]),
    )


@request("pki_revoke")
def revoke(client: hvac.Client, mount: str, serial_number: str) -> None:
    """Revoke the certificate with serial_number; one Vault no longer knows (expired and
    tidied away) counts as done."""
    where = f"revoke certificate {serial_number} at {mount}/revoke"
    url = format_url("/v1/{0}/revoke", mount)
    try:
        update(client, url, {"serial_number": serial_number}, where, f"{mount}/revoke")
    except (InvalidRequest, SecretNotFound) as exc:
        if "not found" not in str(exc):
            raise
