"""VaultPKISecret end to end: OpenBao's PKI engine (a root CA and a role) -> kubernetes.io/tls
Secrets, issued with the tenant's own identity, re-issued before expiry with exactly one
rollout of a restart target per new certificate, re-issued at once on a spec change, kept
through a Vault outage across a renewal point, and revoked on delete.

The chain is checked with `cryptography`; every private key issued here is registered for the
session's leak scan (operator log, Events, statuses).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from e2e.harness.manifests import deployment
from e2e.harness.metrics import parse
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack, add_tenant, tenant_policy
from vaultsync import GROUP, VERSION
from vaultsync.secrets.certificates import serial_text

pytestmark = pytest.mark.e2e

MOUNT = "pki"
ROLE = "web"
DOMAIN = "vaultsync.test"
REPORT: dict[str, Any] = {}
"""Figures for the report at the end of the module (printed with -s)."""


# --- Vault side ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(stack: Stack) -> Iterator[x509.Certificate]:
    """A `pki` mount with a root CA and a role for names under vaultsync.test, short lifetimes
    (max 1h) and a notBefore backdated by 1 s only, so that a ttl of 30 s is a lifetime of 31 s."""
    vault = stack.vault
    if f"{MOUNT}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
        vault.sys.enable_secrets_engine("pki", path=MOUNT, config={"max_lease_ttl": "87600h"})
        vault.secrets.pki.generate_root(
            "internal",
            "vaultsync e2e root",
            extra_params={"ttl": "87600h", "key_type": "ec", "key_bits": 256},
            mount_point=MOUNT,
        )
    vault.secrets.pki.create_or_update_role(
        ROLE,
        extra_params={
            "allowed_domains": [DOMAIN],
            "allow_subdomains": True,
            "allow_ip_sans": True,
            "allowed_uri_sans": ["spiffe://*"],
            "key_type": "ec",
            "key_bits": 256,
            "ttl": "10m",
            "max_ttl": "1h",
            "not_before_duration": "1s",
        },
        mount_point=MOUNT,
    )
    yield x509.load_pem_x509_certificate(unauthenticated(stack, f"{MOUNT}/ca/pem").encode())
    if REPORT:
        print(f"\nVaultPKISecret e2e figures: {REPORT}")


def unauthenticated(stack: Stack, path: str) -> str:
    """GET an unauthenticated Vault endpoint (the CA, the CRL) as PEM text."""
    tls_on = stack.bao.address.startswith("https")
    verify: bool | str = str(stack.bao.ca_file) if tls_on else True
    response = requests.get(f"{stack.bao.address}/v1/{path}", timeout=10, verify=verify)
    response.raise_for_status()
    return response.text


@pytest.fixture
def pki_tenant(stack: Stack, tenant: str, ca: x509.Certificate) -> str:
    """A tenant whose Vault policy also allows pki/issue/web and pki/revoke."""
    grant_pki(stack, tenant)
    return tenant


def grant_pki(stack: Stack, tenant: str) -> None:
    """The tenant's Vault policy, with pki/issue/web and pki/revoke."""
    policy = tenant_policy(tenant) + (
        f'path "{MOUNT}/issue/{ROLE}" {{ capabilities = ["update"] }}\n'
        f'path "{MOUNT}/revoke" {{ capabilities = ["update"] }}\n'
    )
    stack.vault.sys.create_or_update_policy(f"{tenant}-read", policy)


# --- helpers ------------------------------------------------------------------------------------


def pki_secret(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VaultPKISecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "role": ROLE,
            "commonName": f"{name}.{namespace}.{DOMAIN}",
            "destination": {"name": f"{name}-tls"},
            **spec,
        },
    }


def get(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    return stack.get("vaultpkisecrets", name, namespace)


def ready_is(stack: Stack, namespace: str, name: str, status: str) -> dict[str, Any] | None:
    obj = get(stack, namespace, name)
    generation = obj["metadata"]["generation"]
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if (
            condition["type"] == "Ready"
            and condition["status"] == status
            and condition["observedGeneration"] == generation
        ):
            return condition
    return None


def tls(stack: Stack, namespace: str, secret: str) -> dict[str, bytes] | None:
    """The Secret's data (registering its private key for the leak scan), or None."""
    found = stack.secret_data(namespace, secret)  # PEM: text
    if found is None:
        return None
    data = {k: v.encode() for k, v in found.items()}
    key = data.get("tls.key", b"").decode()
    body = [line for line in key.splitlines() if line and not line.startswith("-----")]
    stack.values.update(line for line in body if len(line) >= 6)
    return data


def leaf(data: dict[str, bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificates(data["tls.crt"])[0]


def serial(data: dict[str, bytes]) -> str:
    return serial_text(leaf(data).serial_number)


def expiry(stack: Stack, namespace: str, name: str) -> list[float]:
    """The samples of vaultsync_certificate_expiry_timestamp_seconds of one VaultPKISecret
    (its label `name` clashes with the harness's metric(name, ...), so filtered here)."""
    labels = {"namespace": namespace, "name": name}
    return [
        s.value
        for s in parse(stack.operator.metrics())
        if s.name == "vaultsync_certificate_expiry_timestamp_seconds"
        and labels.items() <= s.labels.items()
    ]


def revocation(stack: Stack, number: str) -> int:
    """When Vault revoked the certificate (0: it did not)."""
    data = stack.vault.secrets.pki.read_certificate(number, mount_point=MOUNT)["data"]
    return int(data.get("revocation_time") or 0)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def issued(stack: Stack, namespace: str, name: str) -> dict[str, bytes]:
    """Wait for Ready on the current generation; the Secret's data."""
    eventually(lambda: ready_is(stack, namespace, name, "True"), 60, f"{name} Ready")
    data = tls(stack, namespace, f"{name}-tls")
    assert data is not None
    return data


# --- tests --------------------------------------------------------------------------------------


def test_a_certificate_is_issued_into_a_tls_secret_with_its_chain(
    stack: Stack, pki_tenant: str, ca: x509.Certificate
) -> None:
    ns = pki_tenant
    started = time.monotonic()
    stack.apply(
        pki_secret(
            ns,
            "web",
            altNames=[f"www.{ns}.{DOMAIN}"],
            ipSans=["10.0.0.7"],
            uriSans=[f"spiffe://cluster.local/ns/{ns}/sa/web"],
            ttl="20m",
        )
    )
    data = issued(stack, ns, "web")
    REPORT["issue_seconds"] = round(time.monotonic() - started, 2)
    assert sorted(data) == ["ca.crt", "tls.crt", "tls.key"]
    chain = x509.load_pem_x509_certificates(data["tls.crt"])
    cert = chain[0]
    cert.verify_directly_issued_by(ca)  # the leaf is signed by the mount's root CA
    assert chain[1:] == [ca]  # then the chain Vault returned
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == ca
    key = serialization.load_pem_private_key(data["tls.key"], password=None)
    assert key.public_key() == cert.public_key()  # the key belongs to the certificate
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == f"web.{ns}.{DOMAIN}"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        f"web.{ns}.{DOMAIN}",
        f"www.{ns}.{DOMAIN}",
    }
    assert sans.get_values_for_type(x509.IPAddress) == [ip_address("10.0.0.7")]
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://cluster.local/ns/{ns}/sa/web"
    ]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    # ttl + the role's backdating (to the second)
    assert abs(lifetime - timedelta(minutes=20, seconds=1)) <= timedelta(seconds=1)

    status = get(stack, ns, "web")["status"]
    assert status["serialNumber"] == serial_text(cert.serial_number)
    assert parse_time(status["notAfter"]) == cert.not_valid_after_utc
    assert parse_time(status["notBefore"]) == cert.not_valid_before_utc
    expected = cert.not_valid_before_utc + lifetime * 2 / 3
    assert abs(parse_time(status["nextRenewal"]) - expected) <= timedelta(seconds=1)
    assert status["secretName"] == "web-tls" and status["lastIssueTime"]
    assert status["observedGeneration"] == 1
    vault_side = stack.vault.secrets.pki.read_certificate(status["serialNumber"], mount_point=MOUNT)
    assert x509.load_pem_x509_certificate(vault_side["data"]["certificate"].encode()) == cert
    assert expiry(stack, ns, "web") == [cert.not_valid_after_utc.timestamp()]
    secret = stack.core.read_namespaced_secret("web-tls", ns)
    assert secret.type == "kubernetes.io/tls"
    assert secret.metadata.owner_references[0].kind == "VaultPKISecret"
    assert secret.metadata.annotations["vaultsync.io/vaultpkisecret"] == "web"

    # an operator restart issues nothing, writes nothing: the Secret is the record
    version = secret.metadata.resource_version
    status_version = get(stack, ns, "web")["metadata"]["resourceVersion"]
    stack.operator.stop()
    stack.operator.start()
    eventually(
        lambda: stack.operator.metric("vaultsync_syncs_total", kind="VaultPKISecret") >= 1,
        60,
        "a reconcile of the VaultPKISecret by the restarted operator",
    )
    time.sleep(2)
    issues = stack.operator.metric(
        "vaultsync_vault_request_duration_seconds_count", operation="pki_issue"
    )
    assert issues == 0
    assert stack.core.read_namespaced_secret("web-tls", ns).metadata.resource_version == version
    assert get(stack, ns, "web")["metadata"]["resourceVersion"] == status_version


def test_the_certificate_is_reissued_before_expiry_and_each_one_rolls_the_target_once(
    stack: Stack, pki_tenant: str
) -> None:
    ns = pki_tenant
    stack.apply(deployment(ns, "api"))
    eventually(lambda: stack.rollouts(ns, "api") == 1, 30, "the first ReplicaSet")
    stack.apply(
        pki_secret(
            ns, "short", ttl="30s", rolloutRestartTargets=[{"kind": "Deployment", "name": "api"}]
        )
    )
    first = issued(stack, ns, "short")
    seen: dict[str, x509.Certificate] = {serial(first): leaf(first)}
    renewals: list[float] = []  # seconds between the notBefore of one certificate and the next
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        data = tls(stack, ns, "short-tls")
        assert data is not None and all(data.get(k) for k in ("tls.crt", "tls.key", "ca.crt"))
        cert = leaf(data)
        now = datetime.now(UTC)
        assert cert.not_valid_after_utc > now, "the Secret held an expired certificate"
        if serial(data) not in seen:
            previous = list(seen.values())[-1]
            renewals.append(
                (cert.not_valid_before_utc - previous.not_valid_before_utc).total_seconds()
            )
            seen[serial(data)] = cert
        time.sleep(0.5)
    renewed = len(seen) - 1
    # lifetime 31 s, renewal at two thirds: every ~21 s, so 3 renewals in 75 s (at least 2)
    assert 2 <= renewed <= 4, renewals
    for gap in renewals:
        assert 18 <= gap <= 27, renewals  # at two thirds, not early and not late

    def one_rollout_per_renewal() -> bool:
        """The Deployment's first ReplicaSet plus one per renewal (a renewal after the loop
        is counted too)."""
        data = tls(stack, ns, "short-tls")
        assert data is not None
        seen.setdefault(serial(data), leaf(data))
        return stack.rollouts(ns, "api") == len(seen)

    eventually(one_rollout_per_renewal, 15, "exactly one rollout per new certificate")
    time.sleep(3)  # and no more after a while
    assert one_rollout_per_renewal(), (len(seen), stack.rollouts(ns, "api"))
    REPORT["renewals_in_75s"] = renewed
    REPORT["renewal_gaps_s"] = [round(g, 1) for g in renewals]
    REPORT["rollouts_per_new_certificate"] = (stack.rollouts(ns, "api") - 1) / (len(seen) - 1)


def test_a_spec_change_reissues_at_once_and_a_label_change_does_not(
    stack: Stack, pki_tenant: str
) -> None:
    ns = pki_tenant
    manifest = pki_secret(ns, "change", ttl="20m")
    stack.apply(manifest)
    first = serial(issued(stack, ns, "change"))
    manifest["spec"]["destination"]["labels"] = {"team": "a"}
    stack.apply(manifest)
    eventually(
        lambda: stack.core.read_namespaced_secret("change-tls", ns).metadata.labels.get("team"),
        30,
        "the label",
    )
    assert serial(issued(stack, ns, "change")) == first
    manifest["spec"]["altNames"] = [f"api.{ns}.{DOMAIN}"]
    started = time.monotonic()
    stack.apply(manifest)
    data = eventually(
        lambda: (d := tls(stack, ns, "change-tls")) and serial(d) != first and d, 30, "re-issue"
    )
    REPORT["reissue_after_spec_change_s"] = round(time.monotonic() - started, 2)
    sans = leaf(data).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"api.{ns}.{DOMAIN}" in sans.get_values_for_type(x509.DNSName)
    issued(stack, ns, "change")

    # a deleted Secret wakes its VaultPKISecret (the watch of our Secrets): a new certificate
    second = serial(data)
    stack.core.delete_namespaced_secret("change-tls", ns)
    repaired = eventually(
        lambda: (d := tls(stack, ns, "change-tls")) and serial(d) != second and d, 30, "repair"
    )
    eventually(
        lambda: get(stack, ns, "change")["status"]["serialNumber"] == serial(repaired),
        10,
        "the status names the new certificate",
    )


@pytest.mark.parametrize("outage", ["seal", "kill"])
def test_vault_down_across_a_renewal_keeps_the_secret_and_recovers(
    stack: Stack, pki_tenant: str, outage: str
) -> None:
    ns = pki_tenant
    stack.apply(pki_secret(ns, "outage", ttl="90s"))
    first = issued(stack, ns, "outage")
    status = get(stack, ns, "outage")["status"]
    renewal, not_after = parse_time(status["nextRenewal"]), parse_time(status["notAfter"])
    down: Callable[[], None] = stack.bao.seal if outage == "seal" else stack.bao.kill
    up: Callable[[], None] = stack.bao.unseal if outage == "seal" else stack.bao.start
    reason = "VaultSealed" if outage == "seal" else "VaultUnavailable"
    down()
    try:
        failed = eventually(
            lambda: (c := ready_is(stack, ns, "outage", "False")) and c["reason"] == reason and c,
            90,
            f"Ready=False {reason} after the renewal point",
        )
        assert datetime.now(UTC) >= renewal - timedelta(seconds=1)
        assert f"the Secret keeps certificate {serial(first)}" in failed["message"]
        steady = time.monotonic() + 4
        while time.monotonic() < steady:
            assert tls(stack, ns, "outage-tls") == first  # never blanked, never replaced
            time.sleep(0.5)
    finally:
        up()
    renewed = eventually(
        lambda: (d := tls(stack, ns, "outage-tls")) and serial(d) != serial(first) and d,
        60,
        "a new certificate after Vault is back",
    )
    # issued (notBefore is backdated 1 s) before the old certificate expired
    assert leaf(renewed).not_valid_before_utc + timedelta(seconds=1) < not_after
    assert leaf(renewed).not_valid_after_utc > not_after
    issued(stack, ns, "outage")


def test_revoke_on_delete_revokes_the_serial(stack: Stack, pki_tenant: str) -> None:
    ns = pki_tenant
    stack.apply(
        pki_secret(ns, "revoked", ttl="20m", revokeOnDelete=True),
        pki_secret(ns, "kept", ttl="20m"),
    )
    revoked, kept = serial(issued(stack, ns, "revoked")), serial(issued(stack, ns, "kept"))
    assert get(stack, ns, "revoked")["metadata"].get("finalizers") == ["vaultsync.io/finalizer"]
    assert not get(stack, ns, "kept")["metadata"].get("finalizers")  # Owner + Delete: GC's job
    for name in ("revoked", "kept"):
        stack.cp.kubectl("delete", "vaultpkisecret", name, "-n", ns, "--timeout=60s")
    for name in ("revoked-tls", "kept-tls"):
        eventually(lambda n=name: tls(stack, ns, n) is None, 60, f"{name} garbage collected")

    assert expiry(stack, ns, "revoked") == [] and expiry(stack, ns, "kept") == []
    assert revocation(stack, revoked) > 0
    assert revocation(stack, kept) == 0
    crl = x509.load_pem_x509_crl(unauthenticated(stack, f"{MOUNT}/crl/pem").encode())
    numbers = {serial_text(entry.serial_number) for entry in crl}
    assert revoked in numbers and kept not in numbers
    assert "PRIVATE KEY" not in stack.operator.log_text()


def test_deleting_an_object_in_the_way_of_another_revokes_nothing_of_its_certificate(
    stack: Stack, pki_tenant: str
) -> None:
    """A second VaultPKISecret (revokeOnDelete) naming the Secret of another is SecretConflict;
    its deletion must not revoke the certificate the other one's Secret holds."""
    ns = pki_tenant
    stack.apply(pki_secret(ns, "holder", ttl="20m"))
    number = serial(issued(stack, ns, "holder"))
    intruder = pki_secret(ns, "intruder", revokeOnDelete=True, destination={"name": "holder-tls"})
    stack.apply(intruder)
    failed = eventually(lambda: ready_is(stack, ns, "intruder", "False"), 60, "SecretConflict")
    assert failed["reason"] == "SecretConflict"
    stack.cp.kubectl("delete", "vaultpkisecret", "intruder", "-n", ns, "--timeout=60s")
    assert revocation(stack, number) == 0
    held = tls(stack, ns, "holder-tls")
    assert held is not None and serial(held) == number


def test_revoke_on_delete_after_the_vaultauth_went(stack: Stack, pki_tenant: str) -> None:
    """A namespace's deletion removes its VaultAuth together with its VaultPKISecrets: the
    revocation uses the identity that issued, so the deletion neither waits for a VaultAuth
    that will not come back nor leaves the certificate unrevoked."""
    ns = pki_tenant
    stack.apply(pki_secret(ns, "orphaned", ttl="20m", revokeOnDelete=True))
    number = serial(issued(stack, ns, "orphaned"))
    stack.cp.kubectl("delete", "vaultauth", "default", "-n", ns)
    stack.cp.kubectl("delete", "vaultpkisecret", "orphaned", "-n", ns, "--timeout=30s")
    assert revocation(stack, number) > 0


def test_deletions_after_a_restart_finish_at_once_where_the_identity_is_gone(
    stack: Stack, pki_tenant: str
) -> None:
    """The operator down while a namespace is deleted (its VaultAuth and ServiceAccount go at
    once): started again, it knows no identity that issued and none can be had, so the
    deletion finishes at once (not after the revocation patience of 10 minutes) and says the
    certificate was not revoked. Where the identity is still there, it is revoked as ever."""
    doomed, alive = pki_tenant, f"p-{uuid.uuid4().hex[:8]}"
    add_tenant(stack.cp, stack.bao, alive)
    grant_pki(stack, alive)
    stack.apply(
        pki_secret(doomed, "orphan", ttl="20m", revokeOnDelete=True),
        pki_secret(alive, "normal", ttl="20m", revokeOnDelete=True),
    )
    orphan, normal = serial(issued(stack, doomed, "orphan")), serial(issued(stack, alive, "normal"))
    stack.operator.stop()
    try:
        stack.cp.kubectl("delete", "namespace", doomed, "--wait=false")
        stack.cp.kubectl("delete", "vaultpkisecret", "normal", "-n", alive, "--wait=false")
        eventually(
            lambda: stack.identity_gone(doomed),
            60,
            "the namespace controller deleted the VaultAuth and the ServiceAccount",
        )
    finally:
        stack.operator.start()
    started = time.monotonic()
    eventually(
        lambda: stack.namespace_gone(doomed),
        90,
        f"namespace {doomed} gone",
    )
    REPORT["terminating_namespace_deleted_after_restart_s"] = round(time.monotonic() - started, 1)
    eventually(
        lambda: (
            not stack.custom.list_namespaced_custom_object(
                GROUP, VERSION, alive, "vaultpkisecrets"
            )["items"]
        ),
        90,
        f"{alive}/normal deleted",
    )
    assert revocation(stack, normal) > 0
    assert revocation(stack, orphan) == 0
    assert f"certificate {orphan} was not revoked" in stack.operator.log_text()
    stack.cp.kubectl("delete", "namespace", alive, "--wait=false")


def test_a_bad_spec_is_refused_at_apply_time(stack: Stack, pki_tenant: str) -> None:
    bad = pki_secret(pki_tenant, "bad", ttl="1h", renewBefore="2h")
    result = stack.cp.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0
    assert "renewBefore must be shorter than ttl" in result.stderr
    bad = pki_secret(pki_tenant, "bad", altNames=["a.example,b.example"])
    result = stack.cp.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert "must not contain ',' or whitespace" in result.stderr


def test_a_name_the_role_does_not_allow_is_a_clear_failure_and_no_secret(
    stack: Stack, pki_tenant: str
) -> None:
    ns = pki_tenant
    stack.apply(pki_secret(ns, "evil", commonName="www.example.com"))
    failed = eventually(lambda: ready_is(stack, ns, "evil", "False"), 60, "Ready=False")
    assert failed["reason"] == "IssueRefused"
    assert "www.example.com" in failed["message"]
    assert tls(stack, ns, "evil-tls") is None
