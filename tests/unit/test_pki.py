"""VaultPKISecret without a cluster: the spec's rules, when to renew, certificates read back
with `cryptography`, the Vault calls, and whole reconciles against fakes of Vault and the
Secrets (issue, keep, renew, re-issue on a spec change, fail without touching the Secret)."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import hvac.exceptions as hv
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes import faked
from vaultsync.api.base import parse
from vaultsync.api.crds import KINDS, crd
from vaultsync.api.pki import MESSAGES, VaultPKISecretSpec
from vaultsync.api.secret import CreationPolicy, Destination
from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.view import View
from vaultsync.secrets import certificates, pki, renewal
from vaultsync.secrets.destination import (
    HASH_ANNOTATION,
    OWNER_ANNOTATIONS,
    Owner,
    drifted,
    owner_of,
    plan,
    released,
    unmarked,
)
from vaultsync.vault import pki as vault_pki
from vaultsync.vault.errors import PermissionDenied, VaultUnavailable

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("test root"))
        .issuer_name(_name("test root"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


CA_KEY, CA_CERT = make_ca()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def issued(
    cn: str = "web.team-a.svc",
    dns: tuple[str, ...] = ("web.team-a.svc",),
    start: datetime | None = None,
    lifetime: float = 3600.0,
    serial: int | None = None,
) -> vault_pki.IssuedCertificate:
    """A certificate as Vault's pki/issue returns it, signed by CA_CERT."""
    start = start or datetime.now(UTC) - timedelta(seconds=30)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(CA_CERT.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(seconds=lifetime))
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    cert = builder.sign(CA_KEY, hashes.SHA256())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return vault_pki.IssuedCertificate(
        certificate=pem(cert),
        issuing_ca=pem(CA_CERT),
        ca_chain=(pem(CA_CERT),),
        serial_number=certificates.serial_text(cert.serial_number),
        private_key=private,
    )


def test_serial_numbers_are_written_as_vault_writes_them() -> None:
    assert certificates.serial_text(0x0A) == "0a"
    assert certificates.serial_text(0x1234ABCD) == "12:34:ab:cd"
    assert certificates.serial_text(0x80FF) == "80:ff"  # no sign byte, as Go's big.Int.Bytes


def test_tls_data_is_the_leaf_then_the_chain_the_key_and_the_ca() -> None:
    cert = issued(dns=("web.team-a.svc", "web"))
    data = certificates.tls_data(cert)
    assert sorted(data) == ["ca.crt", "tls.crt", "tls.key"]
    bundle = x509.load_pem_x509_certificates(data["tls.crt"])
    assert [c.subject for c in bundle] == [_name("web.team-a.svc"), CA_CERT.subject]
    bundle[0].verify_directly_issued_by(x509.load_pem_x509_certificate(data["ca.crt"]))
    assert data["tls.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----")
    parsed = certificates.parse(data["tls.crt"])
    assert parsed.serial_number == cert.serial_number
    assert parsed.common_name == "web.team-a.svc"
    assert parsed.dns_names == ("web.team-a.svc", "web")
    assert parsed.lifetime.seconds == pytest.approx(3600)


def test_a_secret_holds_a_certificate_only_when_it_is_complete_and_readable() -> None:
    data = certificates.tls_data(issued())
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    assert certificates.held({"data": encoded}) is not None
    assert certificates.held(None) is None
    assert certificates.held({"data": {**encoded, "tls.key": ""}}) is None
    garbage = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot\n").decode()
    assert certificates.held({"data": {**encoded, "tls.crt": garbage}}) is None
    with pytest.raises(certificates.CertificateUnreadable, match=r"^not a PEM certificate$"):
        certificates.parse(data["tls.key"])  # a key is never echoed in the error


def test_the_private_key_is_not_in_the_repr_of_what_vault_issued() -> None:
    cert = issued()
    assert "PRIVATE KEY" not in repr(cert)
    assert cert.private_key.strip().splitlines()[1] not in repr(cert)


# --------------------------------------------------------------------------- renewal


def life(seconds: float) -> renewal.Lifetime:
    return renewal.Lifetime(NOW, NOW + timedelta(seconds=seconds))


def test_the_default_renewal_is_at_two_thirds_of_the_lifetime() -> None:
    assert renewal.renewal(life(90)).at == NOW + timedelta(seconds=60)
    assert renewal.renewal(life(72 * 3600)).at == NOW + timedelta(hours=48)


def test_renewal_percent_and_renew_before() -> None:
    assert renewal.renewal(life(100), percent=50).at == NOW + timedelta(seconds=50)
    assert renewal.renewal(life(100), percent=99).at == NOW + timedelta(seconds=99)
    at = renewal.renewal(life(72 * 3600), before=24 * 3600)
    assert (at.at, at.note) == (NOW + timedelta(hours=48), "")


def test_renew_before_longer_than_the_real_lifetime_falls_back_and_says_so() -> None:
    # ttl 72h asked with renewBefore 24h, but the role's max_ttl gave 12h
    at = renewal.renewal(life(12 * 3600), before=24 * 3600)
    assert at.at == NOW + timedelta(hours=8)
    assert "renewBefore (24h) is not shorter than the lifetime Vault gave (12h)" in at.note


def test_a_wait_is_never_shorter_than_a_second() -> None:
    assert renewal.wait(NOW - timedelta(hours=1), NOW) == renewal.MIN_WAIT
    assert renewal.wait(NOW + timedelta(seconds=90), NOW) == 90


# --------------------------------------------------------------------------- spec


def spec(**fields: Any) -> dict[str, Any]:
    return {
        "role": "web",
        "commonName": "web.team-a.svc",
        "destination": {"name": "web-tls"},
        **fields,
    }


def rules(kind: str) -> list[str]:
    (found,) = [k for k in KINDS if k.kind == kind]
    schema = crd(found)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return [r["message"] for r in schema["x-kubernetes-validations"]]


def test_defaults() -> None:
    parsed = parse(VaultPKISecretSpec, spec())
    assert (parsed.mount, parsed.auth_ref, parsed.revoke_on_delete) == ("pki", "default", False)
    assert parsed.ttl is None and parsed.renew_before is None and parsed.renewal_percent is None
    assert parsed.destination.creation_policy is CreationPolicy.OWNER


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"renewBefore": "1h", "renewalPercent": 50}, MESSAGES["one_renewal"]),
        ({"ttl": "1h", "renewBefore": "1h"}, MESSAGES["renew_before_ttl"]),
        ({"ttl": "30s", "renewBefore": "2m"}, MESSAGES["renew_before_ttl"]),
        ({"ttl": "0"}, MESSAGES["ttl_not_zero"]),
        ({"ttl": "500ms"}, MESSAGES["ttl_not_zero"]),
        ({"renewalPercent": 100}, "less than or equal to 99"),
        ({"renewalPercent": 0}, "greater than or equal to 1"),
        ({"altNames": ["a.example,b.example"]}, "must not contain ',' or whitespace"),
        ({"commonName": "web team"}, "must not contain ',' or whitespace"),
        ({"ipSans": ["10.0.0.300"]}, "must be an IPv4 or IPv6 address"),
        ({"ipSans": ["web"]}, "String should match pattern"),
        ({"uriSans": ["not a uri"]}, "String should match pattern"),
        ({"role": "../root"}, "String should match pattern"),
        ({"role": ".."}, "must not be '.' or '..'"),
        ({"mount": "../sys"}, "must not contain a '.' or '..' segment"),
        ({"ttl": "3d"}, "String should match pattern"),
        ({"destination": {"name": "web-tls", "type": "Opaque"}}, "Extra inputs"),
    ],
)
def test_bad_input_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SyncError, match="spec") as caught:
        parse(VaultPKISecretSpec, spec(**fields))
    assert message in str(caught.value)
    assert caught.value.reason == "InvalidSpec" and not caught.value.retryable


def test_the_crd_carries_the_same_rules_as_the_model() -> None:
    assert rules("VaultPKISecret") == [
        MESSAGES["one_renewal"],
        MESSAGES["renew_before_ttl"],
        MESSAGES["ttl_not_zero"],
    ]


def test_good_input() -> None:
    parsed = parse(
        VaultPKISecretSpec,
        spec(
            altNames=["web", "web.team-a.svc.cluster.local"],
            ipSans=["10.0.0.1", "::1"],
            uriSans=["spiffe://cluster.local/ns/team-a/sa/web"],
            ttl="72h",
            renewBefore="24h",
            rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}],
            revokeOnDelete=True,
        ),
    )
    request = pki.certificate_request(parsed)
    assert request.payload() == {
        "common_name": "web.team-a.svc",
        "alt_names": "web,web.team-a.svc.cluster.local",
        "ip_sans": "10.0.0.1,::1",
        "uri_sans": "spiffe://cluster.local/ns/team-a/sa/web",
        "ttl": "259200s",
        "format": "pem",
        "private_key_format": "der",
    }


def test_the_destination_is_a_tls_secret_unless_merged() -> None:
    parsed = parse(VaultPKISecretSpec, spec())
    dest = pki.destination(parsed.destination, "d1")
    assert dest.type == "kubernetes.io/tls"
    assert dest.annotations == {certificates.REQUEST_ANNOTATION: "d1"}
    merged = parse(VaultPKISecretSpec, spec(destination={"name": "x", "creationPolicy": "Merge"}))
    assert "type" not in pki.destination(merged.destination, None).model_fields_set


def test_the_request_digest_changes_with_what_is_asked_only() -> None:
    base = parse(VaultPKISecretSpec, spec())

    def digest(**fields: Any) -> str:
        parsed = parse(VaultPKISecretSpec, spec(**fields))
        request = pki.certificate_request(parsed)
        return certificates.request_digest(parsed.auth_ref, parsed.mount, parsed.role, request)

    first = digest()
    assert first == certificates.request_digest(
        "default", "pki", "web", pki.certificate_request(base)
    )
    for changed in ({"altNames": ["web"]}, {"ttl": "1h"}, {"role": "other"}, {"mount": "pki2"}):
        assert digest(**changed) != first, changed
    for same in (
        {"renewalPercent": 50},
        {"destination": {"name": "web-tls", "labels": {"a": "b"}}},
    ):
        assert digest(**same) == first, same


# --------------------------------------------------------------------------- Vault calls


class Adapter:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, Any]] = []

    def post(self, url: str, json: Any = None) -> Any:
        self.calls.append((url, json))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def vault_answer(cert: vault_pki.IssuedCertificate) -> dict[str, Any]:
    return {
        "data": {
            "certificate": cert.certificate,
            "issuing_ca": cert.issuing_ca,
            "ca_chain": list(cert.ca_chain),
            "serial_number": cert.serial_number,
            "private_key": cert.private_key,
            "private_key_type": "ec",
        }
    }


def test_issue_posts_the_request_to_the_role() -> None:
    cert = issued()
    adapter = Adapter(vault_answer(cert))
    got = vault_pki.issue(
        SimpleNamespace(adapter=adapter), "pki", "web", vault_pki.CertificateRequest("a.b")
    )
    assert got == cert
    assert adapter.calls == [
        ("/v1/pki/issue/web", {"common_name": "a.b", "format": "pem", "private_key_format": "der"})
    ]


@pytest.mark.parametrize(
    ("error", "reason", "text"),
    [
        (hv.Forbidden("permission denied"), "PermissionDenied", "needs 'update' on pki/issue/web"),
        (
            hv.InvalidRequest(errors=["common name x.evil is not allowed by this role"]),
            "IssueRefused",
            "common name x.evil is not allowed by this role",
        ),
        (hv.InvalidPath("no handler for route"), "IssueRefused", "pki/issue/web"),
        (hv.VaultDown("sealed"), "VaultSealed", "pki/issue/web"),
    ],
)
def test_issue_failures_have_reasons(error: Exception, reason: str, text: str) -> None:
    client = SimpleNamespace(adapter=Adapter(error))
    with pytest.raises(SyncError) as caught:
        vault_pki.issue(client, "pki", "web", vault_pki.CertificateRequest("a.b"))
    assert caught.value.reason == reason
    assert text in str(caught.value)


def test_an_answer_without_a_key_is_an_error() -> None:
    answer = vault_answer(issued())
    del answer["data"]["private_key"]
    client = SimpleNamespace(adapter=Adapter(answer))
    with pytest.raises(SyncError, match="lacks a certificate or key"):
        vault_pki.issue(client, "pki", "web", vault_pki.CertificateRequest("a.b"))


def test_revoke_and_a_certificate_vault_no_longer_knows() -> None:
    adapter = Adapter({"data": {"revocation_time": 1}})
    vault_pki.revoke(SimpleNamespace(adapter=adapter), "pki", "0a:0b")
    assert adapter.calls == [("/v1/pki/revoke", {"serial_number": "0a:0b"})]
    gone = hv.InvalidRequest(errors=["certificate with serial 0a:0b not found"])
    vault_pki.revoke(SimpleNamespace(adapter=Adapter(gone)), "pki", "0a:0b")
    with pytest.raises(PermissionDenied, match="needs 'update' on pki/revoke"):
        vault_pki.revoke(SimpleNamespace(adapter=Adapter(hv.Forbidden())), "pki", "0a:0b")


# --------------------------------------------------------------------------- reconciles


class Vault:
    """pki/issue as a fake: a new certificate per call, or the error set in `failure`."""

    def __init__(self) -> None:
        self.issued: list[vault_pki.IssuedCertificate] = []
        self.requests: list[vault_pki.CertificateRequest] = []
        self.failure: Exception | None = None
        self.lifetime = 3600.0
        self.start: datetime | None = None

    def issue(
        self, _client: Any, mount: str, role: str, wanted: vault_pki.CertificateRequest
    ) -> vault_pki.IssuedCertificate:
        if self.failure is not None:
            raise self.failure
        self.requests.append(wanted)
        cert = issued(wanted.common_name, tuple(wanted.alt_names), self.start, self.lifetime)
        self.issued.append(cert)
        return cert


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    vault = Vault()
    cluster, reconciler, restarts = faked(monkeypatch, "pki", pki.VaultPKISecretReconciler, KEY)
    monkeypatch.setattr("vaultsync.secrets.pki.pki.issue", vault.issue)
    return SimpleNamespace(vault=vault, cluster=cluster, reconciler=reconciler, restarts=restarts)


def pki_object(generation: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultPKISecret",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u1", "generation": generation},
        "spec": spec(**fields),
    }


def reconcile(world: SimpleNamespace, body: dict[str, Any]) -> Any:
    result = world.reconciler.sync(body, View())
    status = {**(body.get("status") or {}), **result.fields}
    body["status"] = status
    return result.outcome


def secret(world: SimpleNamespace) -> dict[str, Any]:
    found: dict[str, Any] = world.cluster.secrets[("team-a", "web-tls")]
    return found


def test_first_reconcile_issues_and_writes_a_tls_secret(world: SimpleNamespace) -> None:
    body = pki_object(altNames=["web"])
    outcome = reconcile(world, body)
    assert outcome.ready and outcome.reason == "Issued" and outcome.written
    (cert,) = world.vault.issued
    written = secret(world)
    assert written["type"] == "kubernetes.io/tls"
    assert written["metadata"]["annotations"][OWNER_ANNOTATIONS["VaultPKISecret"]] == "web"
    assert written["metadata"]["ownerReferences"][0]["kind"] == "VaultPKISecret"
    assert owner_of(written) == ("VaultPKISecret", "web")
    data = {k: base64.b64decode(v) for k, v in written["data"].items()}
    assert data == certificates.tls_data(cert)
    status = body["status"]
    assert status["serialNumber"] == cert.serial_number
    parsed = certificates.parse(data["tls.crt"])
    assert status["notAfter"] == certificates.rfc3339(parsed.not_after)
    due = parsed.not_before + (parsed.not_after - parsed.not_before) * 2 / 3
    assert status["nextRenewal"] == certificates.rfc3339(due)
    assert status["secretName"] == "web-tls" and status["lastIssueTime"]
    assert outcome.wake_after == pytest.approx((due - datetime.now(UTC)).total_seconds(), abs=2)
    sample = metrics.CERTIFICATE_EXPIRY.labels("team-a", "web")._value.get()
    assert sample == parsed.not_after.timestamp()
    assert world.restarts.runs == [(None, data)]  # created: nothing ran with other data
    text = f"{outcome.message} {status}"
    assert cert.private_key.splitlines()[1] not in text


def test_a_reconcile_before_the_renewal_time_calls_nothing_and_writes_nothing(
    world: SimpleNamespace,
) -> None:
    body = pki_object()
    first = reconcile(world, body)
    # the watch has the Secret now: no request at all
    world.reconciler.kube.secrets.get = lambda ns, n: copy.deepcopy(secret(world))
    writes, reads, status = world.cluster.writes, world.cluster.reads, dict(body["status"])
    again = reconcile(world, body)
    assert len(world.vault.issued) == 1
    assert (world.cluster.writes, world.cluster.reads) == (writes, reads)
    assert again.ready and not again.written
    assert (again.reason, again.message) == (first.reason, first.message)
    assert body["status"] == status  # nothing to patch either
    assert again.wake_after == pytest.approx(first.wake_after, abs=2)


def test_the_renewal_time_issues_a_new_certificate_and_rolls_workloads_once(
    world: SimpleNamespace,
) -> None:
    world.vault.start = datetime.now(UTC) - timedelta(seconds=50)
    world.vault.lifetime = 60  # 2/3 of it passed 10 s ago
    body = pki_object()
    reconcile(world, body)
    old = secret(world)
    world.vault.start, world.vault.lifetime = None, 3600
    outcome = reconcile(world, body)
    assert outcome.ready and outcome.written and len(world.vault.issued) == 2
    assert body["status"]["serialNumber"] == world.vault.issued[1].serial_number
    previous, data = world.restarts.runs[-1]
    assert previous == old and data == certificates.tls_data(world.vault.issued[1])


def test_a_spec_change_reissues_at_once_and_a_label_change_does_not(
    world: SimpleNamespace,
) -> None:
    body = pki_object()
    reconcile(world, body)
    body["spec"]["destination"]["labels"] = {"team": "a"}
    body["metadata"]["generation"] = 2
    outcome = reconcile(world, body)
    assert len(world.vault.issued) == 1 and outcome.written  # labels only: same certificate
    assert secret(world)["metadata"]["labels"]["team"] == "a"
    body["spec"]["altNames"] = ["web", "www"]
    body["metadata"]["generation"] = 3
    reconcile(world, body)
    assert len(world.vault.issued) == 2
    assert world.vault.requests[-1].alt_names == ("web", "www")


def test_a_failed_renewal_keeps_the_secret_and_says_what_it_holds(
    world: SimpleNamespace,
) -> None:
    body = pki_object()
    reconcile(world, body)
    before = copy.deepcopy(secret(world))
    serial = body["status"]["serialNumber"]
    body["spec"]["ttl"] = "2h"  # the request changed: an issue is due
    world.vault.failure = VaultUnavailable("issue a certificate from pki/issue/web: down")
    writes = world.cluster.writes
    outcome = reconcile(world, body)
    assert not outcome.ready and outcome.retryable and outcome.reason == "VaultUnavailable"
    assert f"the Secret keeps certificate {serial}" in outcome.message
    assert secret(world) == before and world.cluster.writes == writes
    assert body["status"]["serialNumber"] == serial
    world.vault.failure = None
    assert reconcile(world, body).ready and body["status"]["serialNumber"] != serial


def test_an_edited_or_deleted_secret_is_issued_again(world: SimpleNamespace) -> None:
    body = pki_object()
    reconcile(world, body)
    secret(world)["data"]["tls.key"] = base64.b64encode(b"edited").decode()
    reconcile(world, body)
    assert len(world.vault.issued) == 2
    assert HASH_ANNOTATION in secret(world)["metadata"]["annotations"]
    del world.cluster.secrets[("team-a", "web-tls")]
    reconcile(world, body)
    assert len(world.vault.issued) == 3


def test_a_foreign_secret_is_a_conflict_before_anything_is_issued(
    world: SimpleNamespace,
) -> None:
    world.cluster.secrets[("team-a", "web-tls")] = {
        "metadata": {"name": "web-tls", "namespace": "team-a"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    }
    outcome = reconcile(world, pki_object())
    assert (outcome.ready, outcome.reason) == (False, "SecretConflict")
    assert world.vault.issued == []


def test_cleanup_is_needed_for_revocation_or_a_secret_that_outlives_it() -> None:
    reconciler = pki.VaultPKISecretReconciler.__new__(pki.VaultPKISecretReconciler)
    assert not reconciler.needs_cleanup(pki_object())
    assert reconciler.needs_cleanup(pki_object(revokeOnDelete=True))
    retained = pki_object(destination={"name": "x", "deletionPolicy": "Retain"})
    assert reconciler.needs_cleanup(retained)
    assert not reconciler.needs_cleanup(pki_object(ttl="nonsense"))


def test_until_renewal() -> None:
    soon = certificates.rfc3339(NOW + timedelta(seconds=90))
    assert pki.until_renewal({"nextRenewal": soon}, NOW) == 90
    assert pki.until_renewal({"nextRenewal": certificates.rfc3339(NOW)}, NOW) is None
    assert pki.until_renewal({}, NOW) is None
    assert pki.until_renewal({"nextRenewal": "soon"}, NOW) is None


# --------------------------------------------------------------------------- destination


def test_a_secret_names_the_kind_that_writes_it() -> None:
    dest = pki.destination(parse(VaultPKISecretSpec, spec()).destination, "d")
    owner = Owner("web", "team-a", "u1", kind="VaultPKISecret")
    body = plan(None, dest, owner, {"tls.crt": b"c"}, key=KEY).body
    assert owner_of(body) == ("VaultPKISecret", "web")
    assert "vaultsync.io/vaultsecret" not in body["metadata"]["annotations"]
    assert not drifted(body, key=KEY)
    assert OWNER_ANNOTATIONS["VaultPKISecret"] not in unmarked(body)["metadata"]["annotations"]
    refs = body["metadata"]["ownerReferences"]
    assert owner_of({"metadata": {"ownerReferences": refs}}) == ("VaultPKISecret", "web")
    # a VaultSecret of the same name does not own it
    namesake = Owner("web", "team-a", "u2")
    with pytest.raises(SyncError) as caught:
        plan(body, Destination(name="web-tls", type="kubernetes.io/tls"), namesake, {}, key=KEY)
    assert caught.value.reason == "SecretConflict"
    assert "not managed by this VaultSecret" in str(caught.value)


def test_two_kinds_never_merge_into_one_secret() -> None:
    foreign = {
        "metadata": {"name": "shared", "namespace": "team-a", "annotations": {"theirs": "t"}},
        "type": "Opaque",
        "data": {},
    }
    merge = Destination(name="shared", creation_policy=CreationPolicy.MERGE)
    pki_owner = Owner("web", "team-a", "u1", kind="VaultPKISecret")
    merged = plan(foreign, merge, pki_owner, {"tls.crt": b"c"}, key=KEY).body
    with pytest.raises(SyncError) as caught:
        plan(merged, merge, Owner("web", "team-a", "u2"), {"other": b"v"}, key=KEY)
    assert caught.value.reason == "SecretConflict"
    assert "VaultPKISecret 'web' already merges into Secret 'shared'" in str(caught.value)
    released_body = released(merged, merge, pki_owner)
    assert released_body is not None
    assert released_body.body["metadata"]["annotations"] == {"theirs": "t"}
    assert released_body.body["data"] == {}


def test_a_revocation_refused_on_delete_is_given_up_said_and_counted(
    world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = pki_object(revokeOnDelete=True)
    assert reconcile(world, body).ready
    serial = body["status"]["serialNumber"]

    def refused(_client: Any, mount: str, _serial: str) -> None:
        raise PermissionDenied(f"revoke certificate: needs 'update' on {mount}/revoke")

    posted: list[str] = []
    monkeypatch.setattr("vaultsync.secrets.pki.pki.revoke", refused)
    monkeypatch.setattr(
        "vaultsync.secrets.writer.events.emit", lambda *_, **event: posted.append(event["reason"])
    )
    labels = {"kind": "VaultPKISecret", "reason": "PermissionDenied"}
    before = metrics.REGISTRY.get_sample_value("vaultsync_revocations_dropped_total", labels)
    message = world.reconciler.cleanup(body, View())
    assert f"certificate {serial} was not revoked and expires at its TTL" in message
    assert posted == ["RevokeFailed"]
    after = metrics.REGISTRY.get_sample_value("vaultsync_revocations_dropped_total", labels)
    assert (after or 0.0) == (before or 0.0) + 1
