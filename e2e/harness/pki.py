"""Certificates for the local servers: one small CA per server family, EC P-256 leaves."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CERT_VALIDITY = timedelta(days=3650)


def write_pem(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def distinguished_name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Ca:
    """A certificate authority that lives in memory (its certificate is written out)."""

    name: x509.Name
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def certificate(self) -> bytes:
        ca = [(x509.BasicConstraints(ca=True, path_length=None), True), (_key_usage(ca=True), True)]
        return self._sign(self.name, self.key, ca)

    def issue(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, *sans: x509.GeneralName
    ) -> tuple[bytes, bytes]:
        """A new leaf key and certificate, as (certificate PEM, private key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(ca=False), True),
            (x509.ExtendedKeyUsage([usage]), False),
        ]
        if sans:
            extensions.append((x509.SubjectAlternativeName(sans), False))
        return self._sign(subject, key, extensions), private_pem(key)

    def issue_server(
        self, crt: Path, key: Path, common_name: str, ips: Sequence[str], dns: Sequence[str]
    ) -> None:
        """Write a serving certificate and its key for these IP addresses and DNS names."""
        sans: list[x509.GeneralName] = [
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips),
            *(x509.DNSName(name) for name in dns),
        ]
        crt_pem, key_pem = self.issue(
            distinguished_name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, *sans
        )
        write_pem(crt, crt_pem)
        write_pem(key, key_pem, private=True)

    def _sign(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        extensions: Sequence[tuple[x509.ExtensionType, bool]],
    ) -> bytes:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + _CERT_VALIDITY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class ControlPlanePki:
    """The control plane's certificates and keys: one CA signs serving and client certs."""

    def __init__(self, directory: Path, server_ips: Sequence[str]) -> None:
        self.dir = directory
        self.server_ips = server_ips
        self.ca_crt = directory / "ca.crt"
        self.serving_crt = directory / "apiserver.crt"
        self.serving_key = directory / "apiserver.key"
        self.admin_crt = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    def ensure(self) -> None:
        """Generate everything once; kept across restarts so issued tokens stay valid."""
        if self.sa_pub.exists():  # written last
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        ca = Ca(distinguished_name("vaultsync-local-ca"))
        write_pem(self.ca_crt, ca.certificate())
        write_pem(self.dir / "ca.key", private_pem(ca.key), private=True)
        ca.issue_server(
            self.serving_crt,
            self.serving_key,
            "kube-apiserver",
            self.server_ips,
            ("localhost", "kubernetes.default.svc"),
        )
        crt, key = ca.issue(
            distinguished_name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH
        )
        write_pem(self.admin_crt, crt)
        write_pem(self.admin_key, key, private=True)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_pem(self.sa_key, private_pem(sa_key), private=True)
        public = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        write_pem(self.sa_pub, public)

    def admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_crt)
        context.load_cert_chain(self.admin_crt, self.admin_key)
        return context
