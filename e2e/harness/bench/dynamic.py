"""N VaultDynamicSecrets on one fresh stack with a real PostgreSQL (DynamicResult).

OpenBao's database engine is configured against a PostgreSQL of the stack's own
(e2e/harness/postgres.py) with one dynamic role (lease TTL `TTL`, max_ttl a day: renewed, never
replaced during the run). N VaultDynamicSecrets over the tenants are created at once with the
operator running: timed until every one is Ready with its Secret (each a new database role).
Then a steady window of `STEADY` seconds: renewals per minute, and nothing else may happen (no
new credential, no Secret write). Then the operator is killed (SIGKILL) and started again:
timed until the new process has reconciled all N, after which Vault must hold exactly N leases
and PostgreSQL N roles, with no credential read or lease revoked by the new process. Last, all
N are deleted: timed until Vault holds no lease and PostgreSQL no role. Figures that break a
guarantee are `violations`: the bench fails on them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.harness.bench.measure import (
    BENCH_LABEL,
    CREATORS,
    REQUEST_TIMEOUT,
    Bench,
    Recorded,
    Usage,
    percentile,
    say,
    timed,
    versions,
)
from e2e.harness.bench.procstats import memory
from e2e.harness.conditions import ready_is
from e2e.harness.manifests import connection, namespace_object, vault_auth
from e2e.harness.metrics import by_label, total
from e2e.harness.polling import Pending
from e2e.harness.postgres import Postgres
from e2e.harness.stack import grant_tenant, tenant_policy
from vaultsync import GROUP, VERSION

PLURAL = "vaultdynamicsecrets"
TTL = 60  # seconds: the role's default_ttl, the lease duration renewed
STEADY = 120  # seconds of the steady window (two lease durations)
MOUNT = "database"
ISSUED = "vaultsync_dynamic_credentials_issued_total"
RENEWED = "vaultsync_lease_renewals_total"
REVOKED = "vaultsync_lease_revocations_total"
READS = "vaultsync_vault_request_duration_seconds_count"  # by operation

Key = tuple[str, str]


@dataclass
class DynamicResult(Recorded):
    issue_s: float | None = None  # first create → every VaultDynamicSecret Ready with its Secret
    create_s: float | None = None  # creating the N objects (CREATORS parallel API clients)
    ready_p50_s: float | None = None  # per object, its create → first seen Ready
    ready_p95_s: float | None = None
    ready_max_s: float | None = None
    issue_usage: Usage | None = None
    issued: float | None = None  # credentials the operator counted issuing
    leases_after_issue: int | None = None  # Vault, as an admin
    roles_after_issue: int | None = None  # PostgreSQL
    failures_issue: dict[str, int] = field(default_factory=dict)
    steady_s: float | None = None
    steady_usage: Usage | None = None
    renewals: float | None = None  # renewed in the steady window
    renewal_results: dict[str, float] = field(default_factory=dict)
    steady_issued: float | None = None  # must be 0
    steady_secret_changes: int | None = None  # Secret resourceVersions, must be 0
    resync_s: float | None = None  # SIGKILL → N reconciles by the new process
    restart_usage: Usage | None = None
    leases_after_restart: int | None = None  # must be N
    roles_after_restart: int | None = None  # must be N
    restart_reads: float | None = None  # credential reads by the new process, must be 0
    restart_revoked: float | None = None  # must be 0
    restart_secret_changes: int | None = None  # must be 0
    delete_s: float | None = None  # delete all → no lease in Vault, no role in PostgreSQL
    revoked: float | None = None  # revocations the operator counted while deleting
    leases_after_delete: int | None = None
    roles_after_delete: int | None = None
    violations: list[str] = field(default_factory=list)


class DynamicBench(Bench):
    """N VaultDynamicSecrets of one database role, spread over the tenants."""

    def __init__(self, root: Path, size: int, namespaces: int, source: Path | None) -> None:
        super().__init__(root, size, namespaces, TTL, source)
        self.postgres = Postgres()

    @contextmanager
    def running(self) -> Iterator[None]:
        with super().running():
            self.postgres.start()
            try:
                yield
            finally:
                self.postgres.stop()

    def prepare(self) -> None:
        """The database engine and its role; tenants whose policy reads it and renews and
        revokes its leases (the minimal policy of docs/vaultdynamicsecret.md)."""
        vault = self.vault
        self.postgres.configure_vault(vault, ttl=f"{TTL}s", max_ttl="24h", rotation_period="24h")
        objects = [connection(self.bao.address)]
        for tenant in self.tenants:
            objects += [namespace_object(tenant.namespace), vault_auth(tenant.namespace)]
            grant_tenant(vault, tenant.namespace)
            policy = tenant_policy(tenant.namespace) + (
                f'path "{MOUNT}/creds/app" {{ capabilities = ["read"] }}\n'
                f'path "sys/leases/renew/{MOUNT}/creds/app/*" {{ capabilities = ["update"] }}\n'
                f'path "sys/leases/revoke/{MOUNT}/creds/app/*" {{ capabilities = ["update"] }}\n'
            )
            vault.sys.create_or_update_policy(f"{tenant.namespace}-read", policy)
        self.kubectl_apply(objects)

    def objects(self) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "VaultDynamicSecret",
                "metadata": {
                    "name": name,
                    "namespace": tenant.namespace,
                    "labels": {BENCH_LABEL: "true"},
                },
                "spec": {"path": "creds/app", "destination": {"name": name}},
            }
            for tenant in self.tenants
            for name, _path in tenant.objects
        ]

    def create_dynamic(self, obj: dict[str, Any]) -> tuple[Key, float]:
        meta = obj["metadata"]
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, obj, _request_timeout=REQUEST_TIMEOUT
        )
        return (meta["namespace"], meta["name"]), time.monotonic()

    def dynamic_secrets(self) -> list[dict[str, Any]]:
        return self.listed(GROUP, VERSION, PLURAL)

    def leases(self) -> int:
        return len(self.postgres.leases(self.vault, MOUNT))

    # ----------------------------------------------------------------- phases

    def issue(self, result: DynamicResult, timeout: float) -> None:
        """Create all N at once; time until every one is Ready and its Secret exists."""
        before = self.sample()
        with ThreadPoolExecutor(CREATORS) as pool:
            created = dict(pool.map(self.create_dynamic, self.objects(), timeout=timeout))
        result.create_s = time.monotonic() - before.at
        ready: dict[Key, float] = {}

        def check() -> bool | Pending:
            now = time.monotonic()
            for obj in self.dynamic_secrets():
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if ready_is(obj, "True"):
                    ready.setdefault(key, now)
                else:
                    ready.pop(key, None)
            if len(ready) < self.size:
                return Pending(f"{len(ready)}/{self.size} Ready")
            secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in self.secrets()}
            have = len(secrets & set(created))
            return have == self.size or Pending(f"all Ready, {have}/{self.size} Secrets")

        timed(check, timeout, f"{self.size} VaultDynamicSecrets Ready", interval=0.5)
        after = self.sample()
        result.issue_s = after.at - before.at
        result.issue_usage = after.since(before)
        latencies = [ready[key] - created[key] for key in created]
        result.ready_p50_s = percentile(latencies, 0.5)
        result.ready_p95_s = percentile(latencies, 0.95)
        result.ready_max_s = max(latencies)
        result.issued = after.delta(before, ISSUED)
        reasons = by_label(
            [s for s in after.metrics if s.labels.get("kind") == "VaultDynamicSecret"],
            "vaultsync_syncs_total",
            "reason",
        )
        result.failures_issue = {k: v for k, v in reasons.items() if k != "Leased" and v}
        result.leases_after_issue = self.leases()
        result.roles_after_issue = self.postgres.counts().live

    def steady(self, result: DynamicResult) -> None:
        """STEADY seconds of renewals and nothing else."""
        secrets_before, before = versions(self.secrets()), self.sample()
        time.sleep(STEADY)
        after = self.sample()
        result.steady_usage = after.since(before)
        result.steady_s = result.steady_usage[0]
        result.renewals = after.delta(before, RENEWED, result="renewed")
        results = {
            s.labels["result"]: s.value
            for s in after.metrics
            if s.name == RENEWED and "result" in s.labels
        }
        for s in before.metrics:
            if s.name == RENEWED and "result" in s.labels:
                results[s.labels["result"]] -= s.value
        result.renewal_results = {k: v for k, v in results.items() if v}
        result.steady_issued = after.delta(before, ISSUED)
        secrets_after = versions(self.secrets())
        result.steady_secret_changes = sum(
            1 for k, v in secrets_after.items() if secrets_before.get(k) != v
        )

    def restart(self, result: DynamicResult, timeout: float) -> None:
        """SIGKILL, start: the live leases are re-used."""
        secrets_before = versions(self.secrets())
        started = time.monotonic()
        self.operator.kill()
        self.operator.start()
        before = self.sample()

        def resynced() -> bool | Pending:
            syncs = self.metric("vaultsync_syncs_total", kind="VaultDynamicSecret")
            return syncs >= self.size or Pending(f"{syncs:.0f}/{self.size} reconciles")

        timed(resynced, timeout, "every VaultDynamicSecret reconciled after the restart", 0.5)
        result.resync_s = time.monotonic() - started
        time.sleep(5)
        after = self.sample()
        result.restart_usage = after.since(before)
        # the new process counts from 0: its totals are what it did
        result.restart_reads = total(after.metrics, READS, operation="credential_read")
        result.restart_revoked = total(after.metrics, REVOKED)
        result.leases_after_restart = self.leases()
        result.roles_after_restart = self.postgres.counts().live
        secrets_after = versions(self.secrets())
        result.restart_secret_changes = sum(
            1 for k, v in secrets_after.items() if secrets_before.get(k) != v
        )
        result.memory["after the operator restart"] = memory(self.operator.pid)

    def delete(self, result: DynamicResult, timeout: float) -> None:
        """Delete all N; time until Vault holds no lease and PostgreSQL no role."""
        before = self.sample()
        self.cp.kubectl(
            f"--request-timeout={REQUEST_TIMEOUT}s",
            "delete",
            PLURAL,
            "-A",
            "-l",
            f"{BENCH_LABEL}=true",
            "--wait=false",
        )

        def gone() -> bool | Pending:
            leases, roles = self.leases(), self.postgres.counts().live
            return (leases, roles) == (0, 0) or Pending(f"{leases} leases, {roles} roles left")

        timed(gone, timeout, "every lease revoked", interval=0.5)
        after = self.sample()
        result.delete_s = after.at - before.at
        result.revoked = after.delta(before, REVOKED, result="revoked")
        result.leases_after_delete = self.leases()
        result.roles_after_delete = self.postgres.counts().live


def violations(r: DynamicResult) -> list[str]:
    n = r.size
    checks = [
        ("credentials issued for N objects", r.issued, n),
        ("leases in Vault after the issue", r.leases_after_issue, n),
        ("roles in PostgreSQL after the issue", r.roles_after_issue, n),
        ("new credentials in the steady window", r.steady_issued, 0),
        ("Secret writes in the steady window", r.steady_secret_changes, 0),
        ("leases outstanding after the operator restart", r.leases_after_restart, n),
        ("roles in PostgreSQL after the operator restart", r.roles_after_restart, n),
        ("credentials read by the restarted operator", r.restart_reads, 0),
        ("leases revoked by the restarted operator", r.restart_revoked, 0),
        ("Secrets written after the operator restart", r.restart_secret_changes, 0),
        ("leases left in Vault after deleting all", r.leases_after_delete, 0),
        ("roles left in PostgreSQL after deleting all", r.roles_after_delete, 0),
    ]
    return [
        f"{what}: {value:.0f} (must be {want})"
        for what, value, want in checks
        if value is not None and value != want
    ]


def run_dynamic(root: Path, args: argparse.Namespace) -> tuple[DynamicResult, bool]:
    """(result, ok): ok unless a phase failed or a guarantee was broken."""
    bench = DynamicBench(root, args.dynamic_size, args.namespaces, args.operator_source)
    result = DynamicResult(args.dynamic_size, len(bench.tenants), TTL)

    def phases() -> None:
        bench.phase = "PostgreSQL, the database engine and the tenants"
        bench.prepare()
        bench.start_operator(result)
        bench.phase = "issuing"
        say(f"dynamic: creating {result.size} VaultDynamicSecrets")
        bench.issue(result, args.timeout)
        bench.record(result, "issue", "after the issue")
        bench.phase = "steady window"
        say(f"dynamic: all Ready in {result.issue_s:.1f}s; {STEADY}s of renewals")
        bench.steady(result)
        bench.record(result, "steady window", "after the steady window")
        bench.phase = "operator restart"
        bench.restart(result, args.timeout)
        bench.record(result, "operator restart")
        bench.phase = "deleting"
        bench.delete(result, args.timeout)
        bench.record(result, "deletion")

    bench.scenario(result, "dynamic", phases)
    result.violations = violations(result)
    return result, result.error is None and not result.violations
