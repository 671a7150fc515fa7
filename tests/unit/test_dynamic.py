"""VaultDynamicSecret without a cluster: the spec's rules, lease timing (renewal point, jitter
bounds, replacement before the credential ends), the record a Secret carries, what to do
given the state of a lease (keep, renew, issue; a lost status, a changed spec, a static role),
and whole reconciles against fakes of Vault's leases and the Secrets (issue, keep, renew,
replace and revoke after the grace, a lost lease, failures that keep the Secret, deletion)."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tests.fakes import faked
from vaultsync.api.base import parse
from vaultsync.api.crds import KINDS, crd
from vaultsync.api.dynamic import VaultDynamicSecretSpec
from vaultsync.kube.credentials import CredentialsUnavailable
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.view import View
from vaultsync.secrets import dynamic, leased, renewal
from vaultsync.secrets.destination import OWNER_ANNOTATIONS, Owner, owner_of, plan
from vaultsync.secrets.digest import keyed_digest
from vaultsync.secrets.dynamic import destination
from vaultsync.secrets.leased import Held, Lease, Pending, Record, Step
from vaultsync.secrets.renewal import Lifetime
from vaultsync.secrets.writer import REVOKE_PATIENCE, may_heal
from vaultsync.vault import leases as vault_leases
from vaultsync.vault.errors import (
    AuthenticationFailed,
    PermissionDenied,
    VaultSealed,
    VaultUnavailable,
)
from vaultsync.vault.leases import Credential

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
DATA = {"username": b"v-app-1", "password": b"pw-0123456789"}
OWNER = Owner("db", "team-a", "uid-1", kind="VaultDynamicSecret")
BINDING = leased.Binding.of(OWNER, "db-dynamic")


def spec(**fields: Any) -> VaultDynamicSecretSpec:
    return parse(
        VaultDynamicSecretSpec,
        {"path": "creds/app", "destination": {"name": "db-dynamic"}, **fields},
    )


def record(**fields: Any) -> Record:
    values: dict[str, Any] = {
        "lease_id": "database/creds/app/abc",
        "request": leased.request_digest(spec()),
        "issued": NOW,
        "ttl": 60,
        "renewable": True,
        "data": keyed_digest(KEY, DATA),
    }
    return Record(**(values | fields))


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- spec


def test_the_sketch_of_the_design_parses_with_its_defaults() -> None:
    parsed = spec(
        authRef="default",
        mount="database",
        renewalPercent=67,
        rolloutRestartTargets=[{"kind": "Deployment", "name": "api"}],
    )
    assert parsed.renewal_percent == 67 and parsed.revoke_grace_period == "5m"
    assert spec().mount == "database" and spec().renewal_percent == 67


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"renewalPercent": 95}, "less than or equal to 90"),
        ({"renewalPercent": 0}, "greater than or equal to 1"),
        ({"revokeGracePeriod": "soon"}, "should match pattern"),
        ({"path": "creds/../../sys"}, ""),
        (
            {"keys": [{"from": "username", "to": "U"}, {"from": "password", "to": "U"}]},
            "two keys entries write the same Secret key",
        ),
        (
            {"keys": [{"from": "username", "to": "U"}], "template": {"U": "x"}},
            "a keys entry and a template key write the same Secret key",
        ),
    ],
)
def test_a_bad_spec_is_invalid_spec(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SyncError) as caught:
        spec(**fields)
    assert caught.value.reason == "InvalidSpec" and not caught.value.retryable
    assert message in str(caught.value)


def test_the_crd_carries_the_shape_rules_and_a_printer_column_for_the_lease() -> None:
    kind = next(k for k in KINDS if k.kind == "VaultDynamicSecret")
    generated = crd(kind)
    version = generated["spec"]["versions"][0]
    rules = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    assert any("two keys entries" in r["message"] for r in rules)
    assert ".status.leaseExpiry" in {c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert generated["spec"]["names"]["shortNames"] == ["vdyn"]


def test_a_secret_written_by_a_dynamic_secret_names_its_owner() -> None:
    made = plan(None, destination(spec(), record(), KEY, OWNER), OWNER, DATA, key=KEY).body
    annotations = made["metadata"]["annotations"]
    assert annotations[OWNER_ANNOTATIONS["VaultDynamicSecret"]] == "db"
    assert owner_of(made) == ("VaultDynamicSecret", "db")
    assert json.loads(annotations[leased.LEASE_ANNOTATION])["lease"] == "database/creds/app/abc"
    assert "pw-0123456789" not in json.dumps(made["metadata"])


# --------------------------------------------------------------------------- timing


@given(
    span=st.floats(min_value=1, max_value=1e7),
    percent=st.integers(min_value=1, max_value=90),
    seed=st.text(max_size=40),
)
def test_a_renewal_is_at_percent_of_the_lease_and_jitter_only_makes_it_earlier(
    span: float, percent: int, seed: str
) -> None:
    life = Lifetime(NOW, at(span))
    when = renewal.lease_renewal(life, percent, seed)
    latest = NOW + timedelta(seconds=span * percent / 100)
    assert latest - timedelta(seconds=span * renewal.JITTER) <= when <= latest
    assert renewal.lease_renewal(life, percent, seed) == when  # the same after a restart


def test_jitter_spreads_leases_issued_together() -> None:
    points = {renewal.jitter(f"database/creds/app/{n}", 60) for n in range(100)}
    assert len(points) == 100
    assert all(0 <= p < 6 for p in points)
    assert max(points) - min(points) > 4  # spread over most of the tenth


def test_a_credential_is_replaced_while_the_rest_of_a_lease_duration_is_left() -> None:
    assert renewal.replacement(at(100), 60, 67) == at(100 - 60 * 0.33)
    assert renewal.replacement(at(100), 60, 90) == at(94)


# --------------------------------------------------------------------------- the record


def test_the_record_round_trips_and_bad_text_is_none() -> None:
    full = record(revoke=(Pending("database/creds/app/old", at(300)),))
    assert Record.parse(full.text(KEY, BINDING), KEY, BINDING) == full
    for text in (
        None,
        "",
        "{",
        "[]",
        '{"lease": "x"}',
        json.dumps({**json.loads(full.text(KEY, BINDING)), "issued": "no"}),
    ):
        assert Record.parse(text, KEY, BINDING) is None


def secret(data: dict[str, bytes] = DATA, rec: Record | None = None) -> dict[str, Any]:
    made = plan(None, destination(spec(), rec or record(), KEY, OWNER), OWNER, data, key=KEY).body
    return made


def test_a_secret_of_ours_is_held_and_edited_data_is_not() -> None:
    held = leased.kept(secret(), OWNER, KEY, None)
    assert isinstance(held, Held) and held.data == DATA and held.record == record()
    assert leased.kept(None, OWNER, KEY, None) == "the Secret does not exist"
    other = Owner("db", "team-a", "uid-2", kind="VaultDynamicSecret")
    foreign = secret()
    foreign["metadata"]["ownerReferences"] = []
    foreign["metadata"]["annotations"].pop(OWNER_ANNOTATIONS["VaultDynamicSecret"])
    assert "holds no credential" in str(leased.kept(foreign, other, KEY, None))
    edited = secret()
    edited["data"]["password"] = base64.b64encode(b"hand-made").decode()
    assert leased.kept(edited, OWNER, KEY, None) == "the Secret's data was changed by someone else"
    relabelled = secret()
    relabelled["metadata"]["labels"]["vaultsync.io/managed"] = "no"
    assert isinstance(leased.kept(relabelled, OWNER, KEY, None), Held)  # repaired, credential kept
    unrecorded = secret()
    del unrecorded["metadata"]["annotations"][leased.LEASE_ANNOTATION]
    assert (
        leased.kept(unrecorded, OWNER, KEY, None)
        == "the Secret holds no lease record vaultsync wrote"
    )


@pytest.mark.parametrize(
    "forged",
    [
        {"lease": "database/creds/other-team/xyz"},  # renew or revoke someone else's lease
        {"revoke": [["database/creds/other-team/xyz", "2026-01-01T12:00:00Z"]]},
        {"ttl": 999999},
    ],
)
def test_a_lease_record_edited_by_hand_is_no_record(forged: dict[str, Any]) -> None:
    """Whoever may edit the Secret cannot make vaultsync renew or revoke a lease of their
    choosing: the record is sealed with the operator's key."""
    edited = secret()
    annotations = edited["metadata"]["annotations"]
    raw = json.loads(annotations[leased.LEASE_ANNOTATION])
    annotations[leased.LEASE_ANNOTATION] = json.dumps(raw | forged)
    assert Record.parse(annotations[leased.LEASE_ANNOTATION], KEY, BINDING) is None
    assert (
        leased.kept(edited, OWNER, KEY, None) == "the Secret holds no lease record vaultsync wrote"
    )
    assert Record.parse(json.dumps(raw), b"another key" * 3, BINDING) is None


@pytest.mark.parametrize(
    "elsewhere",
    [
        leased.Binding("team-b", "VaultDynamicSecret", "db", "db-dynamic"),  # another namespace
        leased.Binding("team-a", "VaultDynamicSecret", "other", "db-dynamic"),  # another object
        leased.Binding("team-a", "VaultDynamicSecret", "db", "renamed"),  # another Secret
        leased.Binding("team-a", "VaultPKISecret", "db", "db-dynamic"),  # another kind
    ],
)
def test_a_lease_record_copied_from_another_secret_is_no_record(
    elsewhere: leased.Binding,
) -> None:
    """A record sealed for another object or Secret, copied here with the data it describes,
    is not this object's: it is neither renewed nor revoked as its own."""
    rec = record(revoke=(Pending("database/creds/app/old", at(300)),))
    copied = secret(rec=rec)
    copied["metadata"]["annotations"][leased.LEASE_ANNOTATION] = rec.text(KEY, elsewhere)
    assert Record.parse(rec.text(KEY, elsewhere), KEY, BINDING) is None
    assert Record.parse(rec.text(KEY, elsewhere), KEY, elsewhere) == rec
    # not even with status naming its lease: only a record without a binding needs that
    assert leased.kept(copied, OWNER, KEY, rec.lease_id) == (
        "the Secret holds no lease record vaultsync wrote"
    )


def _unbound(rec: Record) -> str:
    """rec as the version before the binding sealed it: no "for", the MAC over the rest."""
    body = {k: v for k, v in json.loads(rec.text(KEY, BINDING)).items() if k not in ("for", "mac")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    mac = keyed_digest(KEY, {leased.LEASE_ANNOTATION: text.encode()})
    return json.dumps({**body, "mac": mac}, separators=(",", ":"))


def test_a_record_sealed_before_the_binding_is_kept_only_when_status_names_its_lease() -> None:
    rec = record(revoke=(Pending("database/creds/app/old", at(300)),))
    legacy = secret(rec=rec)
    legacy["metadata"]["annotations"][leased.LEASE_ANNOTATION] = _unbound(rec)
    held = leased.kept(legacy, OWNER, KEY, rec.lease_id)
    assert isinstance(held, Held) and held.record == rec
    for listed in (None, "", "database/creds/app/another"):
        assert leased.kept(legacy, OWNER, KEY, listed) == (
            "the Secret holds no lease record vaultsync wrote"
        ), listed
    static = record(lease_id="")
    assert Record.parse(_unbound(static), KEY, BINDING, "") is None, "no lease to vouch for"
    # stripping the binding off a bound record breaks its MAC
    raw = json.loads(rec.text(KEY, BINDING))
    del raw["for"]
    assert Record.parse(json.dumps(raw), KEY, BINDING, rec.lease_id) is None


def test_a_record_sealed_before_the_binding_is_written_again_bound() -> None:
    rec = record()
    made = plan(None, destination(spec(), rec, KEY, OWNER), OWNER, DATA, key=KEY).body
    text = made["metadata"]["annotations"][leased.LEASE_ANNOTATION]
    assert json.loads(text)["for"] == ["team-a", "VaultDynamicSecret", "db", "db-dynamic"]
    assert text != _unbound(rec)
    assert Record.parse(text, KEY, BINDING) == rec


def test_status_describes_the_lease_only_when_it_names_the_records() -> None:
    rec = record()
    status = {"leaseID": rec.lease_id, "leaseExpiry": "2026-01-01T12:01:00Z"}
    lease = leased.lease_of(status, rec)
    assert lease == Lease(Lifetime(NOW, at(60)), None)
    renewed = {
        **status,
        "lastRenewalTime": "2026-01-01T12:00:40Z",
        "leaseExpiry": "2026-01-01T12:01:40Z",
    }
    assert leased.lease_of(renewed, rec) == Lease(Lifetime(at(40), at(100)), None)
    assert leased.lease_of({**status, "leaseID": "database/creds/app/old"}, rec) is None
    assert leased.lease_of({}, rec) is None


def test_pending_revocations_come_from_the_secret_and_status_without_the_held_lease() -> None:
    rec = record(revoke=(Pending("a", at(10)),))
    status = {
        "pendingRevocations": [
            {"leaseID": "a", "revokeAt": "2026-01-01T12:00:10Z"},
            {"leaseID": "b", "revokeAt": "2026-01-01T12:00:20Z"},
            {"leaseID": rec.lease_id, "revokeAt": "2026-01-01T12:00:20Z"},
            {"leaseID": "c"},
        ]
    }
    found = leased.pending(Held(rec, DATA), status, rec.lease_id)
    assert found == (Pending("a", at(10)), Pending("b", at(20)))


def test_a_new_credential_replaces_the_held_lease_and_the_one_status_names() -> None:
    rec = record()
    status = {"leaseID": "database/creds/app/restored-over"}
    replaced = leased.replaced(Held(rec, DATA), status, 30, NOW)
    assert replaced == (Pending(rec.lease_id, at(30)), Pending(status["leaseID"], at(30)))
    assert leased.replaced("the Secret does not exist", {}, 30, NOW) == ()
    # one Vault no longer knows, or already pending, is not added again
    known = {rec.lease_id, Pending(status["leaseID"], at(5))}
    assert leased.replaced(Held(rec, DATA), status, 30, NOW, known) == ()


def test_a_credential_read_now_has_a_lease_from_now_and_a_static_one_ends_for_good() -> None:
    assert Lease.issued(60, True, NOW) == Lease(Lifetime(NOW, at(60)), None)
    assert Lease.issued(30, False, NOW) == Lease(Lifetime(NOW, at(30)), at(30))


def test_a_static_roles_password_read_again_unchanged_keeps_its_record() -> None:
    static = record(lease_id="", renewable=False)
    fresh = Credential(dict(DATA), "", 30, False)
    digest = keyed_digest(KEY, DATA)
    assert leased.new_record(Held(static, DATA), fresh, static.request, digest, at(99)) is static
    rotated = leased.new_record(Held(static, DATA), fresh, static.request, "other", at(99))
    assert rotated.issued == at(99) and rotated.data == "other"


# --------------------------------------------------------------------------- deciding


def lease(start: float = 0, end: float = 60, credential_end: float | None = None) -> Lease:
    return Lease(
        Lifetime(at(start), at(end)), None if credential_end is None else at(credential_end)
    )


def decide(held: Held | str, lease_: Lease | None, now: float, **fields: Any) -> leased.Decision:
    return leased.decide(held, leased.request_digest(spec(**fields)), lease_, 67, at(now))


def test_nothing_is_due_before_the_renewal_point() -> None:
    held = Held(record(), DATA)
    decision = decide(held, lease(), 30)
    assert decision.step is Step.KEEP
    assert at(40.2 - 6) <= (decision.at or NOW) <= at(40.2)


def test_the_lease_is_renewed_at_its_renewal_point() -> None:
    assert decide(Held(record(), DATA), lease(), 40.2).step is Step.RENEW


def test_a_lost_status_renews_at_once_which_issues_nothing() -> None:
    decision = decide(Held(record(), DATA), None, 1)
    assert decision.step is Step.RENEW and "not recorded" in decision.why


def test_no_credential_held_issues_one() -> None:
    decision = decide("the Secret does not exist", None, 0)
    assert (decision.step, decision.why) == (Step.ISSUE, "the Secret does not exist")


def test_a_changed_request_issues_a_new_credential_and_a_label_does_not() -> None:
    held = Held(record(), DATA)
    assert decide(held, lease(), 1, path="creds/other").step is Step.ISSUE
    assert decide(held, lease(), 1, template={"URL": "{{ username }}"}).step is Step.ISSUE
    relabelled = {"destination": {"name": "db-dynamic", "labels": {"team": "a"}}}
    assert decide(held, lease(), 1, **relabelled).step is Step.KEEP
    assert (
        decide(held, lease(), 1, rolloutRestartTargets=[{"kind": "Deployment", "name": "x"}]).step
        is Step.KEEP
    )


def test_a_lease_at_its_max_ttl_is_replaced_before_it_ends() -> None:
    held = Held(record(), DATA)
    capped = lease(start=100, end=130, credential_end=130)  # the last renewal gave 30 s of 60
    replace_at = at(130 - 60 * 0.33)
    assert decide(held, capped, 110) == leased.Decision(Step.KEEP, at=replace_at)
    decision = decide(held, capped, 111)
    assert decision.step is Step.ISSUE and "ends at 2026-01-01T12:02:10Z" in decision.why


def test_a_non_renewable_lease_is_replaced_at_percent_of_it() -> None:
    held = Held(record(renewable=False), DATA)
    assert decide(held, lease(), 40).step is Step.KEEP
    assert decide(held, lease(), 40.2).step is Step.ISSUE


def test_a_renewal_that_gets_less_than_asked_marks_the_credentials_end() -> None:
    life = Lifetime(at(50), at(80))
    assert leased.renewed(life, 60, 30, True).credential_end == at(80)
    assert leased.renewed(life, 30, 30, False).credential_end == at(80)
    assert leased.renewed(life, 30, 30, True).credential_end is None


def test_a_static_role_is_read_again_just_after_vault_rotates_it() -> None:
    static = Held(record(lease_id="", renewable=False), DATA)
    rotation = lease(end=30)
    assert decide(static, rotation, 31) == leased.Decision(
        Step.KEEP, at=at(30 + leased.ROTATION_MARGIN)
    )
    assert decide(static, rotation, 32).step is Step.ISSUE
    assert decide(static, None, 1).step is Step.ISSUE  # no record of the time: read again


# --------------------------------------------------------------------------- whole reconciles


class Leases:
    """Vault's leased paths and sys/leases as a fake: a new credential per read."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.issued: list[str] = []
        self.renewed: list[str] = []
        self.revoked: list[str] = []
        self.cap: int | None = None  # what a renewal gives, when less than asked
        self.failure: Exception | None = None

    def read(self, _client: Any, mount: str, path: str) -> Credential:
        if self.failure is not None:
            raise self.failure
        lease = f"{mount}/{path}/{len(self.issued)}"
        self.issued.append(lease)
        self.live.add(lease)
        data = {"username": f"v-{len(self.issued)}", "password": f"pw-{len(self.issued)}"}
        return Credential(data, lease, 60, True)

    def renew(self, _client: Any, lease: str, increment: int) -> vault_leases.Renewed:
        if self.failure is not None:
            raise self.failure
        if lease not in self.live:
            raise vault_leases.LeaseGone(f"renew lease {lease}: lease not found")
        self.renewed.append(lease)
        return vault_leases.Renewed(self.cap if self.cap is not None else increment, True)

    def revoke(self, _client: Any, lease: str) -> None:
        self.revoked.append(lease)
        self.live.discard(lease)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    vault = Leases()
    kind = dynamic.VaultDynamicSecretReconciler
    cluster, reconciler, restarts = faked(monkeypatch, "dynamic", kind, KEY)
    for call in ("read", "renew", "revoke"):
        monkeypatch.setattr(f"vaultsync.secrets.dynamic.leases.{call}", getattr(vault, call))
    return SimpleNamespace(vault=vault, cluster=cluster, reconciler=reconciler, restarts=restarts)


def dynamic_object(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultDynamicSecret",
        "metadata": {"name": "db", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"path": "creds/app", "destination": {"name": "db-dynamic"}, **fields},
    }


def reconcile(world: SimpleNamespace, body: dict[str, Any]) -> Any:
    result = world.reconciler.sync(body, View())
    body["status"] = {
        k: v for k, v in {**(body.get("status") or {}), **result.fields}.items() if v is not None
    }
    return result.outcome


def held_secret(world: SimpleNamespace) -> dict[str, Any]:
    found: dict[str, Any] = world.cluster.secrets[("team-a", "db-dynamic")]
    return found


def password(world: SimpleNamespace) -> str:
    return base64.b64decode(held_secret(world)["data"]["password"]).decode()


def past_renewal(body: dict[str, Any]) -> None:
    """Status as if the lease's renewal point had passed."""
    body["status"]["leaseExpiry"] = "2020-01-01T00:00:00Z"


def test_a_reconcile_issues_then_keeps_and_renews_without_writing(world: SimpleNamespace) -> None:
    body = dynamic_object()
    outcome = reconcile(world, body)
    assert outcome.ready and outcome.reason == "Leased"
    assert world.vault.issued == ["database/creds/app/0"] and password(world) == "pw-1"
    assert body["status"]["leaseID"] == "database/creds/app/0"
    assert "pw-1" not in json.dumps(body["status"]) and "pw-1" not in outcome.message
    writes = world.cluster.writes

    outcome = reconcile(world, body)  # nothing due: no Vault call, no write
    assert outcome.ready and not outcome.written
    assert (world.vault.issued, world.vault.renewed) == (["database/creds/app/0"], [])

    past_renewal(body)
    assert reconcile(world, body).ready
    assert world.vault.renewed == ["database/creds/app/0"]
    assert world.cluster.writes == writes and len(world.vault.issued) == 1
    assert body["status"]["lastRenewalTime"]


def test_a_lost_status_renews_the_leases_of_the_secret(world: SimpleNamespace) -> None:
    body = dynamic_object()
    reconcile(world, body)
    body["status"] = {}
    assert reconcile(world, body).ready
    assert world.vault.renewed == ["database/creds/app/0"] and len(world.vault.issued) == 1
    assert body["status"]["leaseID"] == "database/creds/app/0"


def test_a_capped_renewal_issues_a_new_credential_and_revokes_the_old_after_grace(
    world: SimpleNamespace,
) -> None:
    body = dynamic_object(revokeGracePeriod="0")
    reconcile(world, body)
    world.vault.cap = 5  # max_ttl is 5 s away: less than a third of 60 s
    past_renewal(body)
    outcome = reconcile(world, body)
    assert outcome.ready and "read now: the credential ends at" in outcome.message
    assert world.vault.issued == ["database/creds/app/0", "database/creds/app/1"]
    assert password(world) == "pw-2"
    previous, data = world.restarts.runs[-1]
    assert previous is not None and data["password"] == b"pw-2"  # a change: targets roll
    assert [p["leaseID"] for p in body["status"]["pendingRevocations"]] == ["database/creds/app/0"]
    assert world.vault.revoked == []  # not in the reconcile that wrote the new one
    reconcile(world, body)
    assert world.vault.revoked == ["database/creds/app/0"]
    assert body["status"]["pendingRevocations"] == []
    assert (
        "database/creds/app/0"
        not in held_secret(world)["metadata"]["annotations"][leased.LEASE_ANNOTATION]
    )


def test_a_lease_vault_no_longer_knows_is_replaced_and_not_revoked(world: SimpleNamespace) -> None:
    body = dynamic_object()
    reconcile(world, body)
    world.vault.live.clear()  # revoked out of band
    past_renewal(body)
    assert reconcile(world, body).ready
    assert len(world.vault.issued) == 2 and password(world) == "pw-2"
    assert body["status"]["pendingRevocations"] == []


def test_a_failure_keeps_the_secret_and_a_credential_for_nothing_is_revoked(
    world: SimpleNamespace,
) -> None:
    body = dynamic_object()
    reconcile(world, body)
    before = copy.deepcopy(held_secret(world))
    world.vault.failure = VaultUnavailable("renew lease: cannot reach Vault")
    past_renewal(body)
    outcome = reconcile(world, body)
    assert not outcome.ready and outcome.reason == "VaultUnavailable"
    assert "the Secret keeps the credential of lease database/creds/app/0" in outcome.message
    assert held_secret(world) == before

    world.vault.failure = None
    body["spec"]["keys"] = [{"from": "user"}]  # a new request that does not fit the credential
    outcome = reconcile(world, body)
    assert not outcome.ready and outcome.reason == "KeyNotFound" and not outcome.retryable
    assert world.vault.revoked == ["database/creds/app/1"]  # the one read for nothing
    assert held_secret(world) == before


def test_a_lease_without_a_duration_is_refused_and_revoked_not_replaced_in_a_loop(
    world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read(_client: Any, mount: str, path: str) -> Credential:
        world.vault.live.add("database/creds/app/0")
        return Credential({"username": "u", "password": "p"}, "database/creds/app/0", 0, True)

    monkeypatch.setattr("vaultsync.secrets.dynamic.leases.read", read)
    outcome = reconcile(world, dynamic_object())
    assert not outcome.ready and outcome.reason == "CredentialRefused"
    assert world.vault.revoked == ["database/creds/app/0"] and not world.cluster.secrets


def test_deletion_revokes_the_lease_and_the_pending_ones(world: SimpleNamespace) -> None:
    body = dynamic_object()
    reconcile(world, body)
    world.vault.cap = 5
    past_renewal(body)
    reconcile(world, body)  # a new credential; the first one pending for 5 minutes
    assert world.reconciler.needs_cleanup(body)
    message = world.reconciler.cleanup(body, View())
    assert sorted(world.vault.revoked) == ["database/creds/app/0", "database/creds/app/1"]
    assert "revoked leases" in message


# --------------------------------------------------------------------------- identities


@pytest.fixture
def who(world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The identity of an object is its authRef's name; Vault refuses every request of the
    identities in `refused`; `used` lists the identity of every request; `events` the
    Events emitted."""
    seen = SimpleNamespace(used=[], refused=set(), events=[])

    def run(_sessions: Any, identity: str, operation: Any) -> Any:
        seen.used.append(identity)
        if identity in seen.refused:
            raise PermissionDenied(f"request as {identity}: permission denied")
        return operation(None)

    monkeypatch.setattr("vaultsync.secrets.dynamic.with_client", run)
    monkeypatch.setattr(
        "vaultsync.kube.events.emit", lambda _kube, _body, **event: seen.events.append(event)
    )
    world.reconciler.identities = SimpleNamespace(tenant=lambda _ns, ref, _view: ref)
    return seen


def deleted(body: dict[str, Any], ago: float = 1) -> dict[str, Any]:
    stamp = datetime.now(UTC) - timedelta(seconds=ago)
    body["metadata"]["deletionTimestamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return body


def dropped(reason: str, kind: str = "VaultDynamicSecret") -> float:
    """vaultsync_revocations_dropped_total{kind, reason} now."""
    labels = {"kind": kind, "reason": reason}
    return REGISTRY.get_sample_value("vaultsync_revocations_dropped_total", labels) or 0.0


@pytest.mark.parametrize(
    ("error", "terminating"),
    [
        (SyncError("VaultAuth 'default' not found", reason="AuthNotFound"), False),
        (CredentialsUnavailable("TokenRequest for ServiceAccount team-a/default: 404"), True),
        (AuthenticationFailed("login as ServiceAccount team-a/default: denied"), False),
    ],
)
def test_a_deletion_whose_identity_cannot_come_back_finishes_at_once_and_says_so(
    world: SimpleNamespace, who: SimpleNamespace, error: SyncError, terminating: bool
) -> None:
    body = dynamic_object()
    reconcile(world, body)
    world.reconciler.forget(body)  # as an operator started since

    def fails(*_: Any) -> str:
        raise error

    world.reconciler.identities = SimpleNamespace(tenant=fails)
    view = View(terminating=frozenset({"team-a"}) if terminating else frozenset())
    before = dropped(error.reason)
    message = world.reconciler.cleanup(deleted(body), view)
    assert "lease database/creds/app/0 was not revoked and expires at its TTL" in message
    assert [e["reason"] for e in who.events] == ["RevokeFailed"]
    assert world.vault.revoked == []
    assert dropped(error.reason) == before + 1


def test_a_deletion_waits_for_what_may_heal(
    world: SimpleNamespace, who: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ServiceAccount missing outside a namespace being deleted may come back (the default
    one is made again); Vault down may come back anywhere: retried, within the patience."""
    body = dynamic_object()
    reconcile(world, body)
    world.reconciler.forget(body)

    def missing(*_: Any) -> str:
        raise CredentialsUnavailable("TokenRequest for ServiceAccount team-a/default: 404")

    world.reconciler.identities = SimpleNamespace(tenant=missing)
    with pytest.raises(CredentialsUnavailable):
        world.reconciler.cleanup(deleted(body), View())

    def sealed(*_: Any) -> Any:
        raise VaultSealed("revoke lease: Vault is sealed")

    world.reconciler.identities = SimpleNamespace(tenant=lambda _ns, ref, _view: ref)
    monkeypatch.setattr("vaultsync.secrets.dynamic.with_client", sealed)
    terminating = View(terminating=frozenset({"team-a"}))
    before = dropped("VaultSealed")
    with pytest.raises(VaultSealed):
        world.reconciler.cleanup(deleted(body), terminating)
    assert not who.events
    assert dropped("VaultSealed") == before, "retried: not dropped (yet)"
    message = world.reconciler.cleanup(deleted(body, ago=REVOKE_PATIENCE + 1), terminating)
    assert "was not revoked" in message
    assert [e["reason"] for e in who.events] == ["RevokeFailed"]
    assert dropped("VaultSealed") == before + 1


@pytest.mark.parametrize(
    ("error", "terminating", "heals"),
    [
        (VaultUnavailable("cannot reach Vault"), False, True),
        (VaultSealed("sealed"), True, True),
        (CredentialsUnavailable("TokenRequest: 404"), False, True),
        (CredentialsUnavailable("TokenRequest: 404"), True, False),
        (SyncError("VaultAuth 'default' not found", reason="AuthNotFound"), False, False),
        (PermissionDenied("revoke: permission denied"), False, False),
        (AuthenticationFailed("login: permission denied"), False, False),
        (SyncError("invalid", reason="InvalidAuth", retryable=False), False, False),
    ],
)
def test_what_a_deletion_waits_for(error: SyncError, terminating: bool, heals: bool) -> None:
    assert may_heal(error, terminating=terminating) is heals


def moved(world: SimpleNamespace, who: SimpleNamespace) -> dict[str, Any]:
    """An object whose lease `default` read, then moved to authRef `other`: a new credential,
    read by `other`, and the first lease pending (due at once)."""
    body = dynamic_object(revokeGracePeriod="0")
    reconcile(world, body)
    body["spec"]["authRef"] = "other"
    reconcile(world, body)
    assert [p["leaseID"] for p in body["status"]["pendingRevocations"]] == ["database/creds/app/0"]
    assert who.used == ["default", "other"]
    who.used.clear()
    return body


def test_a_replaced_lease_is_revoked_by_the_identity_that_read_it(
    world: SimpleNamespace, who: SimpleNamespace
) -> None:
    body = moved(world, who)
    who.refused.add("other")  # its policy does not cover the old role's leases
    assert reconcile(world, body).ready
    assert world.vault.revoked == ["database/creds/app/0"] and who.used == ["default"]
    assert body["status"]["pendingRevocations"] == [] and not who.events


def test_a_refused_revocation_by_the_identity_that_read_the_lease_is_retried(
    world: SimpleNamespace, who: SimpleNamespace
) -> None:
    body = moved(world, who)
    who.refused.add("default")  # a policy that may come back
    before = dropped("PermissionDenied")
    outcome = reconcile(world, body)
    assert dropped("PermissionDenied") == before, "retried: not dropped"
    assert outcome.ready and outcome.wake_after == dynamic.REVOKE_RETRY
    assert [p["leaseID"] for p in body["status"]["pendingRevocations"]] == ["database/creds/app/0"]
    assert [e["reason"] for e in who.events] == ["RevokeFailed"]
    assert "not revoked yet" in who.events[0]["message"]


def test_a_replaced_lease_of_an_unknown_reader_is_tried_once_with_the_current_identity(
    world: SimpleNamespace, who: SimpleNamespace
) -> None:
    body = moved(world, who)
    world.reconciler.forget(body)  # as an operator started since: who read it is not known
    who.refused.add("other")
    before = dropped("PermissionDenied")
    assert reconcile(world, body).ready
    assert who.used == ["other"] and world.vault.revoked == []
    assert body["status"]["pendingRevocations"] == []  # dropped, not retried for ever
    assert dropped("PermissionDenied") == before + 1
    assert [e["reason"] for e in who.events] == ["RevokeFailed"]
    assert "database/creds/app/0" in who.events[0]["message"]
    assert "expires at its TTL" in who.events[0]["message"]
    who.used.clear()
    reconcile(world, body)
    assert who.used == []


def test_deletion_revokes_each_lease_with_the_identity_that_read_it(
    world: SimpleNamespace, who: SimpleNamespace
) -> None:
    body = moved(world, who)
    body["spec"]["revokeGracePeriod"] = "1h"
    message = world.reconciler.cleanup(body, View())
    assert sorted(zip(who.used, world.vault.revoked, strict=True)) == [
        ("default", "database/creds/app/0"),
        ("other", "database/creds/app/1"),
    ]
    assert "revoked leases" in message
