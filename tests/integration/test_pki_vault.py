"""The PKI calls of the Vault layer against a real OpenBao: issue, the errors a tenant meets,
revoke, and serial numbers written as Vault writes them."""

from __future__ import annotations

import uuid

import hvac
import pytest
from cryptography import x509

from e2e.harness.openbao import OpenBao
from vaultsync.secrets import certificates
from vaultsync.vault import pki
from vaultsync.vault.errors import PermissionDenied

pytestmark = pytest.mark.integration

ROLE = "web"
DOMAIN = "vaultsync.test"


@pytest.fixture(scope="module")
def mount(bao: OpenBao) -> str:
    root = bao.client()
    name = f"pki-{uuid.uuid4().hex[:6]}"
    root.sys.enable_secrets_engine("pki", path=name, config={"max_lease_ttl": "8760h"})
    root.secrets.pki.generate_root(
        "internal", "integration root", extra_params={"ttl": "8760h"}, mount_point=name
    )
    root.secrets.pki.create_or_update_role(
        ROLE,
        extra_params={
            "allowed_domains": [DOMAIN],
            "allow_subdomains": True,
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": "1h",
        },
        mount_point=name,
    )
    return name


def tenant(root: hvac.Client, rules: str) -> hvac.Client:
    """A client whose token has only the policy rules."""
    policy = f"pki-tenant-{uuid.uuid4().hex[:6]}"
    root.sys.create_or_update_policy(policy, rules)
    token = root.auth.token.create(policies=[policy], ttl="10m")["auth"]["client_token"]
    return hvac.Client(url=root.url, token=token)


def test_issue_returns_a_certificate_its_chain_and_key(root: hvac.Client, mount: str) -> None:
    wanted = pki.CertificateRequest(f"a.{DOMAIN}", alt_names=(f"b.{DOMAIN}",), ttl=600)
    issued = pki.issue(root, mount, ROLE, wanted)
    data = certificates.tls_data(issued)
    cert = certificates.parse(data["tls.crt"])
    assert cert.serial_number == issued.serial_number  # our formatting is Vault's
    assert cert.common_name == f"a.{DOMAIN}"
    assert set(cert.dns_names) == {f"a.{DOMAIN}", f"b.{DOMAIN}"}
    assert 600 <= cert.lifetime.seconds <= 600 + 31  # backdated by not_before_duration
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    x509.load_pem_x509_certificates(data["tls.crt"])[0].verify_directly_issued_by(ca)
    assert "PRIVATE KEY" in issued.private_key and "PRIVATE KEY" not in repr(issued)


def test_a_name_the_role_refuses_is_issue_refused(root: hvac.Client, mount: str) -> None:
    with pytest.raises(pki.IssueRefused) as caught:
        pki.issue(root, mount, ROLE, pki.CertificateRequest("www.example.com"))
    assert "www.example.com" in str(caught.value)
    assert f"{mount}/issue/{ROLE}" in str(caught.value)
    with pytest.raises(pki.IssueRefused):
        pki.issue(root, mount, "no-such-role", pki.CertificateRequest(f"a.{DOMAIN}"))


def test_a_tenant_without_the_grant_is_told_what_it_lacks(root: hvac.Client, mount: str) -> None:
    client = tenant(root, 'path "secret/*" { capabilities = ["read"] }\n')
    with pytest.raises(PermissionDenied, match=f"needs 'update' on {mount}/issue/{ROLE}"):
        pki.issue(client, mount, ROLE, pki.CertificateRequest(f"a.{DOMAIN}"))
    with pytest.raises(PermissionDenied, match=f"needs 'update' on {mount}/revoke"):
        pki.revoke(client, mount, "01:02")


def test_revoke_with_the_tenant_grant_and_an_unknown_serial(root: hvac.Client, mount: str) -> None:
    client = tenant(
        root,
        f'path "{mount}/issue/{ROLE}" {{ capabilities = ["update"] }}\n'
        f'path "{mount}/revoke" {{ capabilities = ["update"] }}\n',
    )
    issued = pki.issue(client, mount, ROLE, pki.CertificateRequest(f"r.{DOMAIN}", ttl=600))
    pki.revoke(client, mount, issued.serial_number)
    stored = root.secrets.pki.read_certificate(issued.serial_number, mount_point=mount)
    assert stored["data"]["revocation_time"] > 0
    pki.revoke(client, mount, issued.serial_number)  # again: still fine
    pki.revoke(client, mount, "7f:00:00:00:00:01")  # unknown to Vault: nothing to revoke
