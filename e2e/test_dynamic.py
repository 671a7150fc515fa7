"""VaultDynamicSecret end to end: OpenBao's database engine against a real PostgreSQL
(e2e/harness/postgres.py) -> Secrets whose credentials log in; the lease renewed past its TTL,
a new credential before max_ttl with exactly one rollout of a restart target and the old
credential revoked after the grace; an operator restart (kill -9) that issues, revokes and
rolls nothing; deletion revokes; a lease revoked out of band is replaced; Vault sealed or
PostgreSQL down across a renewal point never empties the Secret; a static role's rotation
rolls the target once. At the end: issued - revoked - live == 0, counted by PostgreSQL (a
ledger the roles' own statements write) and by Vault (its leases, as an admin).

Every password synced is registered for the session's leak scan (operator log, Events,
statuses).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import hvac
import pytest

from e2e.harness import conditions
from e2e.harness.chart import OPERATOR_NAMESPACE
from e2e.harness.manifests import deployment, vault_auth
from e2e.harness.polling import eventually
from e2e.harness.postgres import LEDGER, STATIC_USER, Postgres
from e2e.harness.stack import Stack, add_tenant, tenant_policy
from vaultsync import GROUP, VERSION
from vaultsync.kube import hmackey
from vaultsync.secrets.digest import keyed_digest

pytestmark = pytest.mark.e2e

MOUNT = "database"
PLURAL = "vaultdynamicsecrets"
REPORT: dict[str, Any] = {}
"""Figures for the report at the end of the module (printed with -s)."""


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres(stack: Stack) -> Iterator[Postgres]:
    """PostgreSQL with OpenBao's database engine on it: roles `app` (ttl 1h: no renewal
    during a test), `short` (ttl 6 s, max_ttl 1h: renewed), `capped` (ttl 6 s, max_ttl 14 s:
    replaced) and the static role `static` (rotated every 12 s)."""
    server = Postgres()
    server.start()
    try:
        vault = stack.vault
        server.configure_vault(vault, ttl="1h", max_ttl="2h", rotation_period="12s")
        server.add_role(vault, "short", ttl="6s", max_ttl="1h")
        server.add_role(vault, "capped", ttl="6s", max_ttl="14s")
        yield server
        _no_lease_leaked(stack, server)
    finally:
        server.stop()
        if REPORT:
            print(f"\nVaultDynamicSecret e2e figures: {REPORT}")


def _no_lease_leaked(stack: Stack, postgres: Postgres) -> None:
    """Every object of the module deleted: no role left in PostgreSQL, no lease in Vault, and
    every credential issued was revoked (by vaultsync, or by Vault at its expiry)."""
    objects = stack.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    for obj in objects:
        meta = obj["metadata"]
        stack.cp.kubectl(
            "delete", "vaultdynamicsecret", meta["name"], "-n", meta["namespace"], "--wait=false"
        )
    eventually(
        lambda: not stack.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"],
        90,
        "every VaultDynamicSecret gone",
    )
    counts = eventually(
        lambda: (c := postgres.counts()).live == 0 and not postgres.leases(stack.vault) and c,
        90,
        "no dynamic role left in PostgreSQL and no lease in Vault",
    )
    REPORT["issued"], REPORT["revoked"], REPORT["live"] = counts.issued, counts.revoked, 0
    assert counts.issued - counts.revoked - counts.live == 0, counts


@pytest.fixture(scope="module")
def ns(stack: Stack, postgres: Postgres) -> str:
    """A tenant whose Vault policy is the minimal one of docs/vaultdynamicsecret.md, for the
    roles of this module."""
    return dynamic_tenant(stack, f"d-{uuid.uuid4().hex[:8]}")


def dynamic_tenant(stack: Stack, name: str) -> str:
    """A namespace with the tenant policy of the ns fixture."""
    add_tenant(stack.cp, stack.bao, name)
    policy = tenant_policy(name) + (
        f'path "{MOUNT}/creds/*" {{ capabilities = ["read"] }}\n'
        f'path "{MOUNT}/static-creds/static" {{ capabilities = ["read"] }}\n'
        f'path "sys/leases/renew/{MOUNT}/creds/*" {{ capabilities = ["update"] }}\n'
        f'path "sys/leases/revoke/{MOUNT}/creds/*" {{ capabilities = ["update"] }}\n'
    )
    stack.vault.sys.create_or_update_policy(f"{name}-read", policy)
    return name


# --- helpers ------------------------------------------------------------------------------------


def dynamic(namespace: str, name: str, role: str = "app", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VaultDynamicSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"path": f"creds/{role}", "destination": {"name": f"{name}-db"}, **spec},
    }


def get(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    return stack.get(PLURAL, name, namespace)


def ready_is(stack: Stack, namespace: str, name: str, status: str) -> dict[str, Any] | None:
    return conditions.ready_is(get(stack, namespace, name), status)


def credential(stack: Stack, namespace: str, secret: str) -> dict[str, str] | None:
    """The Secret's data (registering its password for the leak scan), or None."""
    data = stack.secret_data(namespace, secret)
    if data is None:
        return None
    stack.values.update(v for k, v in data.items() if "password" in k.lower() and len(v) >= 6)
    return data


def synced(stack: Stack, namespace: str, name: str) -> dict[str, str]:
    eventually(lambda: ready_is(stack, namespace, name, "True"), 60, f"{name} Ready")
    data = credential(stack, namespace, f"{name}-db")
    assert data is not None
    return data


def restarted(stack: Stack, namespace: str, name: str) -> list[dict[str, str]]:
    """A Deployment `name` with its first ReplicaSet, as rolloutRestartTargets name it."""
    stack.apply(deployment(namespace, name))
    eventually(lambda: stack.rollouts(namespace, name) == 1, 30, "the first ReplicaSet")
    return [{"kind": "Deployment", "name": name}]


def lease_record(stack: Stack, namespace: str, secret: str) -> dict[str, Any]:
    annotations = stack.core.read_namespaced_secret(secret, namespace).metadata.annotations
    found: dict[str, Any] = json.loads(annotations["vaultsync.io/lease"])
    return found


def metric(stack: Stack, name: str, **labels: str) -> float:
    return stack.operator.metric(name, **labels)


# --- tests --------------------------------------------------------------------------------------


def test_credentials_log_in_and_an_operator_restart_reuses_the_lease(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    targets = restarted(stack, ns, "api")
    started = time.monotonic()
    stack.apply(
        dynamic(
            ns,
            "app",
            keys=[{"from": "username", "to": "DB_USER"}, {"from": "password", "to": "DB_PASS"}],
            template={"DATABASE_URL": "postgres://{{ username }}@db:5432/app"},
            rolloutRestartTargets=targets,
        )
    )
    data = synced(stack, ns, "app")
    REPORT["issue_seconds"] = round(time.monotonic() - started, 2)
    assert sorted(data) == ["DATABASE_URL", "DB_PASS", "DB_USER"]
    assert data["DATABASE_URL"] == f"postgres://{data['DB_USER']}@db:5432/app"
    assert postgres.can_log_in(data["DB_USER"], data["DB_PASS"])

    status = get(stack, ns, "app")["status"]
    assert status["leaseID"].startswith(f"{MOUNT}/creds/app/")
    assert status["leaseDuration"] == 3600 and status["secretName"] == "app-db"
    assert status["leaseExpiry"] and status["nextRenewal"] and status["lastIssueTime"]
    record = lease_record(stack, ns, "app-db")
    assert record["lease"] == status["leaseID"] and record["ttl"] == 3600
    assert data["DB_PASS"] not in json.dumps(record) and data["DB_PASS"] not in json.dumps(status)
    secret = stack.core.read_namespaced_secret("app-db", ns)
    assert secret.metadata.owner_references[0].kind == "VaultDynamicSecret"
    assert get(stack, ns, "app")["metadata"]["finalizers"] == ["vaultsync.io/finalizer"]
    assert stack.rollouts(ns, "api") == 1  # a new Secret restarts nothing

    # kill -9 and start again: the live lease is re-used
    roles, leases = postgres.roles(), postgres.leases(stack.vault)
    version = secret.metadata.resource_version
    stack.operator.kill()
    stack.operator.start()
    eventually(
        lambda: metric(stack, "vaultsync_syncs_total", kind="VaultDynamicSecret") >= 1,
        60,
        "a reconcile of the VaultDynamicSecret by the restarted operator",
    )
    time.sleep(2)
    for operation in ("credential_read", "lease_revoke"):
        count = metric(stack, "vaultsync_vault_request_duration_seconds_count", operation=operation)
        assert count == 0, operation
    assert postgres.roles() == roles and postgres.leases(stack.vault) == leases
    assert stack.core.read_namespaced_secret("app-db", ns).metadata.resource_version == version
    assert stack.rollouts(ns, "api") == 1
    assert ready_is(stack, ns, "app", "True")
    REPORT["restart"] = {"new_roles": 0, "leases_before": len(leases), "after": len(leases)}

    # a new shape is a new credential (the Secret holds shaped data only): one rollout, and
    # the old lease waits out its grace period (5m here: it is revoked when the object is
    # deleted at the end of the module, with the lease it has then)
    old_lease = get(stack, ns, "app")["status"]["leaseID"]
    obj = get(stack, ns, "app")
    obj["spec"]["template"] = {"DATABASE_URL": "postgresql://{{ username }}@db/app"}
    stack.apply({k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    reshaped = eventually(
        lambda: (d := credential(stack, ns, "app-db")) and d["DB_USER"] != data["DB_USER"] and d,
        30,
        "a new credential for the new template",
    )
    assert reshaped["DATABASE_URL"] == f"postgresql://{reshaped['DB_USER']}@db/app"
    eventually(lambda: stack.rollouts(ns, "api") == 2, 15, "one rollout")
    status = get(stack, ns, "app")["status"]
    assert [p["leaseID"] for p in status["pendingRevocations"]] == [old_lease]
    assert postgres.can_log_in(data["DB_USER"], data["DB_PASS"])  # within its grace
    assert postgres.can_log_in(reshaped["DB_USER"], reshaped["DB_PASS"])


def test_keys_that_do_not_fit_the_credential_revoke_it_at_once(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    before = postgres.counts()
    stack.apply(dynamic(ns, "misfit", keys=[{"from": "user"}]))
    failed = eventually(lambda: ready_is(stack, ns, "misfit", "False"), 30, "Ready=False")
    assert failed["reason"] == "KeyNotFound"
    assert credential(stack, ns, "misfit-db") is None
    after = eventually(
        lambda: (c := postgres.counts()).issued > before.issued and c, 10, "the issue"
    )
    # the credential read for nothing is revoked in the same reconcile; not retried (Stalled)
    assert after.issued - before.issued == after.revoked - before.revoked == 1
    assert after.live == before.live
    stack.cp.kubectl("delete", "vaultdynamicsecret", "misfit", "-n", ns, "--timeout=60s")


def test_the_lease_is_renewed_past_its_ttl(stack: Stack, postgres: Postgres, ns: str) -> None:
    stack.apply(dynamic(ns, "renewed", role="short"))
    data = synced(stack, ns, "renewed")
    lease = get(stack, ns, "renewed")["status"]["leaseID"]
    before = metric(stack, "vaultsync_lease_renewals_total", result="renewed")
    time.sleep(10)  # past the lease's first end
    status = get(stack, ns, "renewed")["status"]
    assert status["leaseID"] == lease and status["lastRenewalTime"]
    assert credential(stack, ns, "renewed-db") == data
    assert postgres.can_log_in(data["username"], data["password"])
    assert stack.vault.sys.read_lease(lease)["data"]["ttl"] > 0
    renewals = metric(stack, "vaultsync_lease_renewals_total", result="renewed") - before
    assert 1 <= renewals <= 5, renewals  # at about two thirds of 6 s, with jitter
    REPORT["renewals_in_10s_ttl_6s"] = renewals


def lease_expiry(stack: Stack, lease: str) -> datetime | None:
    """When Vault would end the lease (as an admin sees it), or None once it is gone."""
    try:
        data = stack.vault.sys.read_lease(lease)["data"]
    except hvac.exceptions.InvalidRequest:
        return None
    return datetime.fromisoformat(data["expire_time"].replace("Z", "+00:00"))


def test_a_new_credential_before_max_ttl_rolls_the_target_once_and_the_old_one_is_revoked(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    targets = restarted(stack, ns, "worker")
    stack.apply(
        dynamic(
            ns,
            "capped",
            role="capped",
            renewalPercent=50,  # a new credential 3 s before max_ttl; revoked 1 s after that
            revokeGracePeriod="1s",
            rolloutRestartTargets=targets,
        )
    )
    seen: dict[str, dict[str, str]] = {}  # lease -> credential, in order
    ends: dict[str, datetime] = {}  # a replaced lease -> when Vault would have ended it
    gone: dict[str, datetime] = {}  # a replaced lease -> when it was first seen gone
    first = synced(stack, ns, "capped")
    seen[lease_record(stack, ns, "capped-db")["lease"]] = first
    deadline = time.monotonic() + 45  # max_ttl 14 s: a new credential about every 11 s
    while time.monotonic() < deadline and (len(seen) < 3 or len(gone) < len(ends)):
        data = credential(stack, ns, "capped-db")
        assert data and data.get("username") and data.get("password"), "never emptied"
        lease = lease_record(stack, ns, "capped-db")["lease"]
        if lease not in seen:
            previous = list(seen)[-1]
            end = lease_expiry(stack, previous)
            assert end is not None, "the replaced lease is kept for its grace period"
            ends[previous] = end
            seen[lease] = data
        for old in set(ends) - set(gone):
            if lease_expiry(stack, old) is None:
                gone[old] = datetime.now(UTC)
        time.sleep(0.25)
    assert len(seen) >= 3, list(seen)
    # each replaced lease revoked by vaultsync after its grace, before Vault would have ended it
    assert set(gone) == set(ends), (ends, gone)
    for old, end in ends.items():
        assert gone[old] < end, (old, gone[old], end)
    for old in list(seen.values())[:-1]:
        assert not postgres.can_log_in(old["username"], old["password"])
    current = credential(stack, ns, "capped-db")
    assert current is not None
    assert postgres.can_log_in(current["username"], current["password"])

    def one_rollout_per_credential() -> bool:
        lease = lease_record(stack, ns, "capped-db")["lease"]
        seen.setdefault(lease, {})
        return stack.rollouts(ns, "worker") == len(seen)

    eventually(one_rollout_per_credential, 15, "exactly one rollout per new credential")
    time.sleep(2)
    assert one_rollout_per_credential(), (len(seen), stack.rollouts(ns, "worker"))
    REPORT["new_credentials"] = len(seen) - 1
    REPORT["revoked_before_max_ttl_by_s"] = [
        round((ends[o] - gone[o]).total_seconds(), 1) for o in ends
    ]
    REPORT["rollouts_per_new_credential"] = (stack.rollouts(ns, "worker") - 1) / (len(seen) - 1)


def test_a_lease_revoked_out_of_band_is_replaced(stack: Stack, postgres: Postgres, ns: str) -> None:
    stack.apply(dynamic(ns, "oob", role="short", revokeGracePeriod="2s"))
    data = synced(stack, ns, "oob")
    lease = get(stack, ns, "oob")["status"]["leaseID"]
    stack.vault.sys.revoke_lease(lease)
    assert not postgres.can_log_in(data["username"], data["password"])
    replaced = eventually(
        lambda: (d := credential(stack, ns, "oob-db")) and d != data and d,
        30,
        "a new credential at the next renewal point",
    )
    assert postgres.can_log_in(replaced["username"], replaced["password"])
    status = eventually(
        lambda: (s := get(stack, ns, "oob")["status"])["leaseID"] != lease and s, 10, "status"
    )
    assert lease not in {p["leaseID"] for p in status.get("pendingRevocations") or []}
    eventually(lambda: ready_is(stack, ns, "oob", "True"), 10, "Ready again")

    # the Secret deleted by hand: the credential cannot be restored, a new one is issued and
    # the one the Secret held is revoked after the grace period
    stack.core.delete_namespaced_secret("oob-db", ns)
    again = eventually(
        lambda: (d := credential(stack, ns, "oob-db")) and d != replaced and d, 30, "re-issued"
    )
    assert postgres.can_log_in(again["username"], again["password"])
    eventually(
        lambda: not postgres.can_log_in(replaced["username"], replaced["password"]),
        20,
        "the credential of the deleted Secret revoked after the grace",
    )
    assert postgres.can_log_in(again["username"], again["password"])


@pytest.mark.parametrize("outage", ["vault-sealed", "postgres-down"])
def test_an_outage_across_a_renewal_point_keeps_the_secret_and_leaks_nothing(
    stack: Stack, postgres: Postgres, ns: str, outage: str
) -> None:
    name = f"out-{outage.split('-')[0]}"
    stack.apply(dynamic(ns, name, role="short"))
    data = synced(stack, ns, name)
    if outage == "vault-sealed":
        stack.bao.seal()
    else:
        postgres.kill()
    try:
        failed = eventually(
            lambda: ready_is(stack, ns, name, "False"), 30, "Ready=False at the renewal point"
        )
        assert "the Secret keeps the credential of lease" in failed["message"]
        steady = time.monotonic() + 6  # past the lease's end
        while time.monotonic() < steady:
            assert credential(stack, ns, f"{name}-db") == data  # never emptied, never replaced
            time.sleep(0.5)
    finally:
        if outage == "vault-sealed":
            stack.bao.unseal()
        else:
            postgres.start()
    eventually(lambda: ready_is(stack, ns, name, "True"), 60, "Ready after the outage")
    now = credential(stack, ns, f"{name}-db")
    assert now is not None and postgres.can_log_in(now["username"], now["password"])
    live = get(stack, ns, name)["status"]["leaseID"]
    # what Vault holds of this object is its one lease (and what awaits revocation)
    pending = {p["leaseID"] for p in get(stack, ns, name)["status"].get("pendingRevocations") or []}
    prefix = f"{MOUNT}/creds/short/"
    mine = {lease for lease in postgres.leases(stack.vault) if lease.startswith(prefix)}
    assert live in mine
    REPORT[f"{outage}_failed_reason"] = failed["reason"]
    REPORT[f"{outage}_pending_after"] = len(pending)


def test_deletion_revokes_the_lease_and_retain_keeps_it(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    stack.apply(
        dynamic(ns, "gone"),
        dynamic(ns, "kept", destination={"name": "kept-db", "deletionPolicy": "Retain"}),
    )
    data, kept = synced(stack, ns, "gone"), synced(stack, ns, "kept")
    lease = get(stack, ns, "gone")["status"]["leaseID"]
    kept_lease = get(stack, ns, "kept")["status"]["leaseID"]
    for name in ("gone", "kept"):
        stack.cp.kubectl("delete", "vaultdynamicsecret", name, "-n", ns, "--timeout=60s")
    assert data["username"] not in postgres.roles()
    assert not postgres.can_log_in(data["username"], data["password"])
    assert lease not in postgres.leases(stack.vault)
    eventually(lambda: credential(stack, ns, "gone-db") is None, 30, "the Secret collected")
    # Retain: the Secret and its credential stay (the lease is no longer renewed)
    assert credential(stack, ns, "kept-db") == kept
    assert postgres.can_log_in(kept["username"], kept["password"])
    assert kept_lease in postgres.leases(stack.vault)
    stack.vault.sys.revoke_lease(kept_lease)  # what its owner does when done with it
    stack.core.delete_namespaced_secret("kept-db", ns)


def test_deleting_an_object_in_the_way_of_another_revokes_nothing_of_its_lease(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    """A second VaultDynamicSecret naming the Secret of another is SecretConflict and issues
    nothing; its deletion must not revoke the lease the other one's Secret records."""
    stack.apply(dynamic(ns, "holder"))
    data = synced(stack, ns, "holder")
    lease = get(stack, ns, "holder")["status"]["leaseID"]
    stack.apply(dynamic(ns, "intruder", destination={"name": "holder-db"}))
    failed = eventually(lambda: ready_is(stack, ns, "intruder", "False"), 60, "SecretConflict")
    assert failed["reason"] == "SecretConflict"
    assert not get(stack, ns, "intruder")["status"].get("leaseID")
    stack.cp.kubectl("delete", "vaultdynamicsecret", "intruder", "-n", ns, "--timeout=60s")
    assert lease in postgres.leases(stack.vault)
    assert postgres.can_log_in(data["username"], data["password"])
    assert credential(stack, ns, "holder-db") == data


def _copy_lease(stack: Stack, source: tuple[str, str], target: tuple[str, str]) -> None:
    """What a user who may write Secrets in target's namespace does with a copy of source's
    Secret: its data, lease record and data hash put on target's Secret (whose owner markers
    stay as they are)."""
    copied = stack.core.read_namespaced_secret(source[1], source[0])
    annotations = {
        k: v
        for k, v in copied.metadata.annotations.items()
        if k in ("vaultsync.io/lease", "vaultsync.io/data-hash")
    }
    patch = {"metadata": {"annotations": annotations}, "data": copied.data}
    stack.core.patch_namespaced_secret(target[1], target[0], patch)


@pytest.mark.parametrize("where", ["another namespace", "the same namespace"])
def test_a_lease_record_copied_from_another_secret_is_not_taken_as_its_own(
    stack: Stack, postgres: Postgres, ns: str, where: str
) -> None:
    """The attacker may write the Secrets of ns and has a copy of another object's Secret:
    vaultsync must neither renew nor revoke that lease for the attacker's object."""
    suffix = uuid.uuid4().hex[:4]
    other = (
        dynamic_tenant(stack, f"d-{uuid.uuid4().hex[:8]}") if where != "the same namespace" else ns
    )
    victim, mine = f"victim-{suffix}", f"mine-{suffix}"
    stack.apply(dynamic(other, victim), dynamic(ns, mine, revokeGracePeriod="2s"))
    victim_data, mine_data = synced(stack, other, victim), synced(stack, ns, mine)
    victim_lease = get(stack, other, victim)["status"]["leaseID"]
    mine_lease = get(stack, ns, mine)["status"]["leaseID"]

    _copy_lease(stack, (other, f"{victim}-db"), (ns, f"{mine}-db"))
    # the copy passes the drift check (its data hash is the source's): a spec change makes
    # vaultsync look at the Secret now instead of at the next renewal
    stack.apply(dynamic(ns, mine, revokeGracePeriod="3s"))
    record = eventually(
        lambda: (
            (r := lease_record(stack, ns, f"{mine}-db"))["lease"] not in (victim_lease, mine_lease)
            and r
        ),
        30,
        "a credential of its own instead of the copied one",
    )
    eventually(lambda: ready_is(stack, ns, mine, "True"), 30, "Ready")
    assert get(stack, ns, mine)["status"]["leaseID"] == record["lease"]
    data = credential(stack, ns, f"{mine}-db")
    assert data is not None and data["username"] not in (
        victim_data["username"],
        mine_data["username"],
    )
    eventually(
        lambda: mine_lease not in postgres.leases(stack.vault), 30, "its replaced lease revoked"
    )

    stack.cp.kubectl("delete", "vaultdynamicsecret", mine, "-n", ns, "--timeout=60s")
    assert record["lease"] not in postgres.leases(stack.vault)
    assert victim_lease in postgres.leases(stack.vault), "the copied lease is not revoked"
    assert postgres.can_log_in(victim_data["username"], victim_data["password"])
    assert get(stack, other, victim)["status"]["leaseID"] == victim_lease
    assert credential(stack, other, f"{victim}-db") == victim_data
    stack.cp.kubectl("delete", "vaultdynamicsecret", victim, "-n", other, "--timeout=60s")


def test_deleting_an_object_whose_secret_holds_a_copied_lease_record_revokes_only_its_own(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    other = dynamic_tenant(stack, f"d-{uuid.uuid4().hex[:8]}")
    stack.apply(dynamic(other, "victim"), dynamic(ns, "copier"))
    victim_data, _ = synced(stack, other, "victim"), synced(stack, ns, "copier")
    victim_lease = get(stack, other, "victim")["status"]["leaseID"]
    own_lease = get(stack, ns, "copier")["status"]["leaseID"]
    _copy_lease(stack, (other, "victim-db"), (ns, "copier-db"))
    stack.cp.kubectl("delete", "vaultdynamicsecret", "copier", "-n", ns, "--timeout=60s")
    assert own_lease not in postgres.leases(stack.vault), "its own lease (status) is revoked"
    assert victim_lease in postgres.leases(stack.vault), "the copied lease is not"
    assert postgres.can_log_in(victim_data["username"], victim_data["password"])
    stack.cp.kubectl("delete", "vaultdynamicsecret", "victim", "-n", other, "--timeout=60s")


def test_a_lease_record_of_the_previous_version_is_honoured_and_sealed_again(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    """A record sealed before the MAC bound it to its object (no "for") is the object's own
    when status names its lease: kept, no new credential, and written again bound. A role of
    its own: the ledger counts every test's credentials, and those of other tests' objects are
    issued again as their TTLs run out."""
    postgres.add_role(stack.vault, "legacy", ttl="1h", max_ttl="2h")
    stack.apply(dynamic(ns, "legacy", role="legacy"))
    data = synced(stack, ns, "legacy")
    lease = get(stack, ns, "legacy")["status"]["leaseID"]

    def own_leases() -> set[str]:
        prefix = f"{MOUNT}/creds/legacy/"
        return {id for id in postgres.leases(stack.vault) if id.startswith(prefix)}

    def own_issued() -> int:
        """Credentials of the role ever issued (its name is in every user name of it)."""
        with postgres.connect() as conn:
            query = f"SELECT count(*) FROM {LEDGER} WHERE event = 'issued' AND name LIKE %s"
            count: int = conn.execute(query, ("v-%-legacy-%",)).fetchone()[0]
            return count

    assert own_leases() == {lease} and own_issued() == 1
    secret = stack.core.read_namespaced_secret(hmackey.SECRET_NAME, OPERATOR_NAMESPACE)
    key = base64.b64decode(secret.data[hmackey.DATA_KEY])
    body = {
        k: v for k, v in lease_record(stack, ns, "legacy-db").items() if k not in ("mac", "for")
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    mac = keyed_digest(key, {"vaultsync.io/lease": text.encode()})
    legacy = json.dumps({**body, "mac": mac}, separators=(",", ":"))
    patch = {"metadata": {"annotations": {"vaultsync.io/lease": legacy}}}
    stack.core.patch_namespaced_secret("legacy-db", ns, patch)
    record = eventually(
        lambda: (r := lease_record(stack, ns, "legacy-db")).get("for") and r,
        30,
        "the record sealed again, bound to its object",
    )
    assert record["lease"] == lease and record["for"] == [
        ns,
        "VaultDynamicSecret",
        "legacy",
        "legacy-db",
    ]
    assert get(stack, ns, "legacy")["status"]["leaseID"] == lease
    assert credential(stack, ns, "legacy-db") == data
    assert own_leases() == {lease} and own_issued() == 1, "no new credential"
    stack.cp.kubectl("delete", "vaultdynamicsecret", "legacy", "-n", ns, "--timeout=60s")
    assert lease not in postgres.leases(stack.vault)


def test_a_merge_whose_keys_are_taken_issues_no_credential(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    """Merge into a Secret whose key is someone else's: KeyConflict, found before a credential
    is issued (the keys the spec writes are known without one), not issued and revoked at
    every retry."""
    postgres.add_role(stack.vault, "inway", ttl="1h", max_ttl="2h")
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shared-db", "namespace": ns},
            "stringData": {"DB_USER": "someone-else"},
        },
        dynamic(
            ns,
            "merged",
            role="inway",
            keys=[{"from": "username", "to": "DB_USER"}, {"from": "password"}],
            destination={"name": "shared-db", "creationPolicy": "Merge"},
        ),
    )
    failed = eventually(lambda: ready_is(stack, ns, "merged", "False"), 60, "KeyConflict")
    assert failed["reason"] == "KeyConflict" and "DB_USER" in failed["message"]
    with postgres.connect() as conn:
        issued = conn.execute(
            "SELECT count(*) FROM vaultsync_ledger WHERE event = 'issued' AND name LIKE '%-inway-%'"
        ).fetchone()[0]
    assert issued == 0
    assert stack.secret_data(ns, "shared-db") == {"DB_USER": "someone-else"}
    stack.cp.kubectl("delete", "vaultdynamicsecret", "merged", "-n", ns, "--timeout=60s")


def test_a_deletion_after_its_vaultauth_went_still_revokes(
    stack: Stack, postgres: Postgres
) -> None:
    """The namespace controller deletes a namespace's VaultAuth and VaultDynamicSecrets at
    once: a revocation after the VaultAuth went uses the identity that read the lease, so
    the deletion neither waits for a VaultAuth that will not come back nor leaves the lease."""
    gone = dynamic_tenant(stack, f"g-{uuid.uuid4().hex[:8]}")
    stack.apply(dynamic(gone, "first"), dynamic(gone, "second"))
    first, second = synced(stack, gone, "first"), synced(stack, gone, "second")
    leases = [get(stack, gone, name)["status"]["leaseID"] for name in ("first", "second")]
    stack.cp.kubectl("delete", "vaultauth", "default", "-n", gone)
    stack.cp.kubectl("delete", "vaultdynamicsecret", "first", "-n", gone, "--timeout=30s")
    assert leases[0] not in postgres.leases(stack.vault)
    assert not postgres.can_log_in(first["username"], first["password"])
    stack.cp.kubectl("delete", "namespace", gone, "--timeout=60s")
    assert leases[1] not in postgres.leases(stack.vault)
    assert not postgres.can_log_in(second["username"], second["password"])


def revoke_failed(stack: Stack, namespace: str, name: str) -> list[str]:
    """The messages of the RevokeFailed Warning Events about one object."""
    return [
        e.message
        for e in stack.core.list_namespaced_event(namespace).items
        if e.reason == "RevokeFailed" and e.type == "Warning" and e.involved_object.name == name
    ]


def ledger(postgres: Postgres, user: str) -> list[str]:
    """What the ledger says of one dynamic role: issued, then revoked (by whoever revoked)."""
    with postgres.connect() as conn:
        rows = conn.execute("SELECT event FROM vaultsync_ledger WHERE name = %s", (user,))
        return [str(r[0]) for r in rows]


def test_deletions_after_a_restart_finish_at_once_where_the_identity_is_gone(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    """The operator down while a namespace is deleted (its VaultAuth and ServiceAccount go at
    once), or while a VaultAuth and then its object are deleted: started again, it knows no
    identity that issued, and none can be had; waiting cannot help, so each deletion finishes
    at once (not after the revocation patience of 10 minutes) and says the lease was not
    revoked. Where the identity is still there, the lease is revoked as ever."""
    doomed = dynamic_tenant(stack, f"n-{uuid.uuid4().hex[:8]}")
    lonely = dynamic_tenant(stack, f"l-{uuid.uuid4().hex[:8]}")
    stack.apply(dynamic(doomed, "orphan"), dynamic(lonely, "lonely"), dynamic(ns, "normal"))
    orphan, alone, normal = (
        synced(stack, n, o) for n, o in ((doomed, "orphan"), (lonely, "lonely"), (ns, "normal"))
    )
    leases = {
        name: get(stack, where, name)["status"]["leaseID"]
        for where, name in ((doomed, "orphan"), (lonely, "lonely"), (ns, "normal"))
    }
    stack.operator.stop()
    try:
        stack.cp.kubectl("delete", "namespace", doomed, "--wait=false")
        stack.cp.kubectl("delete", "vaultauth", "default", "-n", lonely)
        for where, name in ((lonely, "lonely"), (ns, "normal")):
            stack.cp.kubectl("delete", "vaultdynamicsecret", name, "-n", where, "--wait=false")
        eventually(
            lambda: stack.identity_gone(doomed),
            60,
            "the namespace controller deleted the VaultAuth and the ServiceAccount",
        )
    finally:
        stack.operator.start()
    started = time.monotonic()
    eventually(lambda: stack.namespace_gone(doomed), 90, f"namespace {doomed} gone")
    REPORT["terminating_namespace_deleted_after_restart_s"] = round(time.monotonic() - started, 1)
    for where, name in ((lonely, "lonely"), (ns, "normal")):
        eventually(
            lambda w=where, n=name: (
                not stack.custom.list_namespaced_custom_object(
                    GROUP, VERSION, w, PLURAL, field_selector=f"metadata.name={n}"
                )["items"]
            ),
            90,
            f"{where}/{name} deleted",
        )
    # where the identity is there, the lease is revoked as ever
    assert ledger(postgres, normal["username"]) == ["issued", "revoked"]
    assert leases["normal"] not in postgres.leases(stack.vault)
    assert not postgres.can_log_in(normal["username"], normal["password"])
    # where it is gone, the lease is not revoked, and that is said
    warned = revoke_failed(stack, lonely, "lonely")
    assert warned and leases["lonely"] in warned[0] and "not revoked" in warned[0], warned
    assert "expires at its TTL" in warned[0], warned
    log = stack.operator.log_text()
    assert f"lease {leases['orphan']} was not revoked" in log
    # and counted, by kind and reason (the operator started since: counted from 0)
    dropped = "vaultsync_revocations_dropped_total"
    assert metric(stack, dropped, kind="VaultDynamicSecret") == 2
    assert metric(stack, dropped, kind="VaultDynamicSecret", reason="AuthNotFound") >= 1
    for name, data in (("orphan", orphan), ("lonely", alone)):
        assert ledger(postgres, data["username"]) == ["issued"]
        assert postgres.can_log_in(data["username"], data["password"])
        stack.vault.sys.revoke_lease(leases[name])  # what an admin does with the warning
    stack.cp.kubectl("delete", "namespace", lonely, "--wait=false")


def test_a_changed_auth_ref_revokes_the_old_lease_with_the_identity_that_issued_it(
    stack: Stack, postgres: Postgres
) -> None:
    """authRef (and path) changed to a VaultAuth whose role may not revoke the old role's
    leases: the replaced lease is revoked after its grace by the identity that issued it. An
    operator restarted meanwhile no longer knows that identity: it tries the new one once and,
    refused, says so and drops the revocation instead of retrying it for ever."""
    moved = dynamic_tenant(stack, f"m-{uuid.uuid4().hex[:8]}")
    postgres.add_role(stack.vault, "moved", ttl="1h", max_ttl="2h")
    other = f"{moved}-other"
    stack.vault.sys.create_or_update_policy(
        other,
        f'path "{MOUNT}/creds/moved" {{ capabilities = ["read"] }}\n'
        f'path "sys/leases/renew/{MOUNT}/creds/moved/*" {{ capabilities = ["update"] }}\n'
        f'path "sys/leases/revoke/{MOUNT}/creds/moved/*" {{ capabilities = ["update"] }}\n',
    )
    stack.vault.auth.kubernetes.create_role(
        other,
        bound_service_account_names=["default"],
        bound_service_account_namespaces=[moved],
        policies=[other],
        ttl="1h",
        mount_point="kubernetes",
    )
    auth = vault_auth(moved, role=other)
    auth["metadata"]["name"] = "other"
    stack.apply(auth)

    def move(name: str, grace: str) -> tuple[str, dict[str, str]]:
        """Issue with `default`, then move to `other`: (the old lease, the old credential)."""
        stack.apply(dynamic(moved, name, revokeGracePeriod=grace))
        data = synced(stack, moved, name)
        lease = get(stack, moved, name)["status"]["leaseID"]
        stack.apply(dynamic(moved, name, role="moved", authRef="other", revokeGracePeriod=grace))
        eventually(
            lambda: get(stack, moved, name)["status"].get("pendingRevocations"),
            30,
            "the new credential issued, the old lease pending",
        )
        return lease, data

    def settled(name: str) -> None:
        """Deleted while its VaultAuth is there: its lease revoked."""
        held = get(stack, moved, name)["status"]["leaseID"]
        stack.cp.kubectl("delete", "vaultdynamicsecret", name, "-n", moved, "--timeout=60s")
        assert held not in postgres.leases(stack.vault)

    lease, data = move("known", "3s")
    eventually(lambda: lease not in postgres.leases(stack.vault), 30, "the old lease revoked")
    assert ledger(postgres, data["username"]) == ["issued", "revoked"]
    eventually(
        lambda: not get(stack, moved, "known")["status"].get("pendingRevocations"),
        15,
        "no revocation pending",
    )
    assert not revoke_failed(stack, moved, "known")
    settled("known")

    lease, data = move("unknown", "15s")
    stack.operator.kill()  # the identity that issued the old lease is forgotten
    stack.operator.start()
    warned = eventually(lambda: revoke_failed(stack, moved, "unknown"), 40, "RevokeFailed")
    assert lease in warned[0] and "expires at its TTL" in warned[0], warned
    eventually(
        lambda: not get(stack, moved, "unknown")["status"].get("pendingRevocations"),
        15,
        "the revocation dropped",
    )
    time.sleep(12)  # not retried every 10 s
    assert len(revoke_failed(stack, moved, "unknown")) == len(warned)
    assert ledger(postgres, data["username"]) == ["issued"]
    stack.vault.sys.revoke_lease(lease)  # what an admin does with the warning
    settled("unknown")
    stack.cp.kubectl("delete", "namespace", moved, "--wait=false")


def test_a_static_role_rotation_changes_the_secret_and_rolls_the_target_once(
    stack: Stack, postgres: Postgres, ns: str
) -> None:
    targets = restarted(stack, ns, "reporter")
    stack.apply(
        dynamic(
            ns,
            "static",
            path="static-creds/static",
            rolloutRestartTargets=targets,
        )
    )
    first = synced(stack, ns, "static")
    assert first["username"] == STATIC_USER
    status = get(stack, ns, "static")["status"]
    assert status["leaseID"] == "" and status["credentialExpiry"]
    rotated = eventually(
        lambda: (
            (d := credential(stack, ns, "static-db")) and d["password"] != first["password"] and d
        ),
        40,
        "the rotated password in the Secret",
    )
    assert postgres.can_log_in(STATIC_USER, rotated["password"])
    assert not postgres.can_log_in(STATIC_USER, first["password"])
    eventually(lambda: stack.rollouts(ns, "reporter") == 2, 15, "one rollout")
    time.sleep(2)
    passwords = {first["password"], rotated["password"]}
    current = credential(stack, ns, "static-db")
    assert current is not None
    passwords.add(current["password"])  # a second rotation meanwhile: one more rollout
    assert stack.rollouts(ns, "reporter") == len(passwords)
