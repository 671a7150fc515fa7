"""Certificates in kubernetes.io/tls Secrets: what Vault issued as Secret data, and what a
Secret holds, read back with `cryptography` (pure: no Vault, no Kubernetes).

Only certificates are parsed; the private key is copied as it came and never looked into.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from vaultsync.secrets.renewal import Lifetime
from vaultsync.secrets.renewal import rfc3339 as rfc3339
from vaultsync.vault.pki import CertificateRequest, IssuedCertificate

CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
TLS_KEYS = (CERT_KEY, KEY_KEY, CA_KEY)
REQUEST_ANNOTATION = "vaultsync.io/certificate-request"
"""On the Secret: a digest of the request its certificate was issued for (no secret in it)."""


@dataclass(frozen=True)
class Certificate:
    """The facts of a leaf certificate that vaultsync reports and decides on."""

    serial_number: str  # as Vault writes it: lower-case hex pairs joined by ':'
    not_before: datetime
    not_after: datetime
    common_name: str | None
    dns_names: tuple[str, ...]

    @property
    def lifetime(self) -> Lifetime:
        return Lifetime(self.not_before, self.not_after)


class CertificateUnreadable(ValueError):
    """Not a PEM certificate (the message says no more than that)."""


def serial_text(serial: int) -> str:
    """An integer serial number as Vault writes it (Go's big.Int bytes, hex, ':'-joined)."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def parse(pem: bytes) -> Certificate:
    """The first certificate of a PEM bundle (a tls.crt: the leaf, then its chain)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateUnreadable("not a PEM certificate") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    return Certificate(
        serial_number=serial_text(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        common_name=str(names[0].value) if names else None,
        dns_names=dns,
    )


def tls_data(issued: IssuedCertificate) -> dict[str, bytes]:
    """The Secret's data: tls.crt the certificate followed by the chain Vault returned,
    tls.key the private key, ca.crt the issuing CA."""
    bundle = "\n".join(pem.strip() for pem in (issued.certificate, *issued.ca_chain))
    return {
        CERT_KEY: (bundle + "\n").encode(),
        KEY_KEY: (issued.private_key.strip() + "\n").encode(),
        CA_KEY: (issued.issuing_ca.strip() + "\n").encode(),
    }


def held(secret: Mapping[str, Any] | None) -> tuple[Certificate, dict[str, bytes]] | None:
    """The certificate a Secret holds and its TLS data, or None when it holds no complete
    readable one."""
    if secret is None:
        return None
    encoded = secret.get("data") or {}
    if not all(encoded.get(key) for key in TLS_KEYS):
        return None
    try:
        data = {key: base64.b64decode(encoded[key]) for key in TLS_KEYS}
        return parse(data[CERT_KEY]), data
    except (ValueError, CertificateUnreadable):
        return None


def request_digest(auth_ref: str, mount: str, role: str, wanted: CertificateRequest) -> str:
    """Who asks what of which role: a new value means the certificate must be issued again."""
    text = json.dumps([auth_ref, mount, role, wanted.payload()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
