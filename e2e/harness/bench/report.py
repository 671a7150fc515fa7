"""The benchmark's Markdown: a table per size, plain statements of what was measured, and
how it was measured (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path

from e2e.harness import ROOT
from e2e.harness.bench.apiserver import BACKGROUND, Requests, counted, resource_of
from e2e.harness.bench.dynamic import STEADY, TTL, DynamicResult
from e2e.harness.bench.floor import FLOOR_THREADS
from e2e.harness.bench.measure import CREATORS, VAULT_REQUESTS, SizeResult, Usage
from e2e.harness.bench.procstats import Memory, machine
from e2e.harness.bench.rotation import (
    NEVER,
    POLL,
    QUIET_REFRESHES,
    SETTLE,
    RotationResult,
    Spread,
    per_object,
)
from e2e.harness.bench.sharding import (
    DURATION,
    HOLDERS_POLL,
    REPLICAS,
    SECRETS_POLL,
    SHARDS,
    Load,
    Move,
    ShardingResult,
    Share,
)
from vaultsync.secrets.reconciler import ROTATE_ANNOTATION


def _s(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def _n(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _reasons(found: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(found.items())) or "0"


def _cpu(usage: Usage | None, operator: bool = True) -> list[tuple[str, str]]:
    """CPU rows of a measured span; without operator, the operator (not running) is left out."""
    if usage is None:
        return []
    seconds, cpu, other = usage
    own = []
    if operator:  # absent when the operator did not run, or ran as several replicas
        own.append(
            (
                "  operator CPU (utime+stime)",
                f"{cpu['operator']:.1f} s = {100 * cpu['operator'] / seconds:.0f}% of a core",
            )
        )
    return [
        *own,
        (
            "  kube-apiserver / etcd / OpenBao / this benchmark CPU",
            " / ".join(f"{cpu[n]:.1f}" for n in ("kube-apiserver", "etcd", "OpenBao", "bench"))
            + " s",
        ),
        (
            "  CPU of other processes on the machine (not this stack)",
            f"{other:.1f} s = {other / seconds:.1f} cores on average",
        ),
    ]


def _requests(requests: Requests, objects: float, least: float = 0.05) -> str:
    """Requests per object (objects: objects x intervals), their total in bold, then by verb
    and resource, most first, those below least per object summed as "other"; BACKGROUND
    resources shown but not in the total."""
    if not objects:
        return "—"
    ranked = sorted(requests.items(), key=lambda item: (-item[1], item[0]))
    parts = [f"{key} {n / objects:.2f}" for key, n in ranked if n / objects >= least]
    rest = [n for key, n in ranked if n / objects < least and resource_of(key) not in BACKGROUND]
    if rest:
        parts.append(f"{len(rest)} other kinds {sum(rest) / objects:.2f}")
    background = [key for key, _ in ranked if resource_of(key) in BACKGROUND]
    note = f" ({', '.join(background)}: coordination, not counted)" if background else ""
    return (
        f"**{counted(requests) / objects:.2f}**" + (f": {', '.join(parts)}" if parts else "") + note
    )


def _times_floor(seconds: float | None, r: SizeResult) -> str:
    if seconds is None or r.floor is None:
        return "—"
    return f"{seconds / r.floor.seconds:.1f}"


def _intervals(r: SizeResult) -> float:
    """Objects x refresh intervals of the no-op window."""
    return 0.0 if r.window_s is None else r.size * r.window_s / r.refresh


def table(r: SizeResult) -> str:
    floor = r.floor
    peak = r.start_memory
    rows: list[tuple[str, str]] = [
        ("VaultSecrets / namespaces = Vault identities", f"{r.size} / {r.identities}"),
        (
            f"create the N VaultSecrets, operator stopped ({CREATORS} parallel API clients)",
            _s(r.precreate_s),
        ),
        (
            f"**floor**: {FLOOR_THREADS} threads on the pre-created objects: a login per "
            "identity, then per object KV read + Secret create + status patch",
            "—" if floor is None else f"{_s(floor.seconds)} ({floor.per_second:.0f} objects/s)",
        ),
        *_cpu(r.floor_usage, operator=False),
        ("  API requests per object", _requests(r.floor_requests, r.size)),
        (
            "**sync from start** (objects pre-created): the operator's process start → every "
            "Secret exists and every VaultSecret Ready=True",
            _s(r.start_s),
        ),
        ("  x floor", _times_floor(r.start_s, r)),
        ("  throughput", "—" if not r.start_s else f"{r.size / r.start_s:.1f} objects/s"),
        *_cpu(r.start_usage),
        (
            "  operator peak RSS (VmHWM) / RSS at the end",
            "—" if peak is None else f"{peak.hwm_mib:.0f} MiB / {peak.rss_mib:.0f} MiB",
        ),
        (
            "  API requests per object (the benchmark's own requests taken out)",
            _requests(r.start_requests, r.size),
        ),
        ("  reconciles that did not end Synced", _reasons(r.start_failures)),
        (
            "  Vault logins (`vaultsync_vault_logins_total`)",
            f"{_n(r.start_logins)} (identities: {r.identities})",
        ),
        (
            f"create the N VaultSecrets, operator running ({CREATORS} parallel API clients; "
            "a stack of its own)",
            _s(r.create_s),
        ),
        (
            "**sync from the first create**: first create → every Secret exists and every "
            "VaultSecret Ready=True",
            _s(r.sync_s),
        ),
        ("  x floor (the floor of the other stack)", _times_floor(r.sync_s, r)),
        ("  throughput", "—" if not r.sync_s else f"{r.size / r.sync_s:.1f} objects/s"),
        (
            "  per object, its create → Ready=True (p50 / p95 / max)",
            f"{_s(r.ready_p50_s)} / {_s(r.ready_p95_s)} / {_s(r.ready_max_s)}",
        ),
        *_cpu(r.sync_cpu),
        ("  reconciles that did not end Synced", _reasons(r.sync_failures)),
        (
            "  Vault logins (`vaultsync_vault_logins_total`)",
            f"{_n(r.logins_after_sync)} (identities: {r.identities})",
        ),
        (f"**no-op refresh window** (refreshInterval {r.refresh}s)", _s(r.window_s)),
        ("  Secret writes (`vaultsync_secret_writes_total`)", _n(r.window_writes)),
        ("  Secret resourceVersion changes", _n(r.window_secret_rv_changes)),
        ("  VaultSecret resourceVersion changes", _n(r.window_vs_rv_changes)),
        (
            "  syncs performed (`vaultsync_syncs_total`) / N x window / interval",
            "—"
            if r.window_syncs is None or r.window_s is None
            else f"{r.window_syncs:.0f} / {r.size * r.window_s / r.refresh:.0f}",
        ),
        ("  syncs that did not end Synced", _reasons(r.window_failures)),
        (
            "  mean reconcile time (`vaultsync_sync_duration_seconds`)",
            "—" if r.window_sync_mean_ms is None else f"{r.window_sync_mean_ms:.1f} ms",
        ),
        ("  Vault logins", _n(r.window_logins)),
        (
            "  Kubernetes API requests per object per refresh interval",
            _requests(r.window_requests, _intervals(r)),
        ),
        (
            f"  Vault requests per object per refresh interval (`{VAULT_REQUESTS}`), by operation",
            _vault_requests(r),
        ),
        *_cpu(r.window_usage),
        (
            f"**change latency**: {r.change_count or '—'} KV entries updated → Secret (p50 / max)",
            f"{_s(r.change_p50_s)} / {_s(r.change_max_s)}",
        ),
    ]
    for label, value in r.memory.items():
        rows.append((f"operator memory {label}: VmRSS (VmHWM)", str(value)))
    if r.outage_to_false_s is not None or r.outage_recovery_s is not None:
        rows += [
            ("**Vault sealed** → every VaultSecret Ready=False", _s(r.outage_to_false_s)),
            (
                "  Secrets untouched while sealed (resourceVersions)",
                "—" if r.outage_secrets_untouched is None else str(r.outage_secrets_untouched),
            ),
            ("  unsealed → every VaultSecret Ready=True", _s(r.outage_recovery_s)),
            ("  Vault logins during the outage and recovery", _n(r.outage_logins)),
        ]
    return _markdown(rows, r.log_warnings, r.load_before, r.error)


def _vault_requests(r: SizeResult) -> str:
    intervals = _intervals(r)
    if not intervals or r.window_s is None:
        return "—"
    ranked = sorted(r.window_vault_requests.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{op} {n / intervals:.2f}" for op, n in ranked) or "0"


def _markdown(
    rows: list[tuple[str, str]],
    log_warnings: dict[str, Counter[str]],
    load_before: str,
    error: str | None,
) -> str:
    """The table (with the log and load rows every scenario has), then what did not complete
    and the operator's warnings."""
    for phase, found in log_warnings.items():
        rows.append((f"operator log WARNING/ERROR lines ({phase})", str(sum(found.values()))))
    rows.append(("load average (1/5/15 min) before the stack started", load_before))
    lines = ["| measurement | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    if error:
        lines.append(f"\n**Did not complete** — {error}")
    notable = Counter[str]()
    for found in log_warnings.values():
        notable.update(found)
    if notable:
        lines.append("\nOperator log warnings/errors (digits replaced by N):\n")
        lines += [f"- {count}x `{message}`" for message, count in notable.most_common(8)]
    return "\n".join(lines)


def _spread(spread: Spread | None) -> str:
    return "—" if spread is None else " / ".join(_s(v) for v in astuple(spread))


def _must(value: float | None, want: float) -> str:
    """A correctness figure: the value, and FAILED when it is not what must hold."""
    if value is None:
        return "—"
    return f"{value:.0f}" if value == want else f"**{value:.0f} — FAILED (must be {want:.0f})**"


def _once_each(total: int | None, per: Counter[int], n: int, what: str) -> str:
    """A count that must be n, made of exactly one for each of n objects."""
    if total is None:
        return "—"
    if per == Counter({1: n}):
        return f"{total} ({what}: {per_object(per, '')})"
    return f"**{total} — FAILED** ({what}: {per_object(per, '')})"


def rotation_table(r: RotationResult) -> str:
    n = r.size
    setup = r.setup
    rows: list[tuple[str, str]] = [
        (
            "VaultSecrets / namespaces = Vault identities / Deployments (one per VaultSecret)",
            f"{n} / {r.identities} / {n}",
        ),
        (
            "setup: first create → every VaultSecret Ready=True",
            _s(setup.sync_s if setup else None),
        ),
        ("setup: first create → every Deployment adopted (Restarted=True)", _s(r.adopted_s)),
        ("  rollouts when the Deployments were adopted (must be 0)", _must(r.adoption_rollouts, 0)),
        (
            f"**trigger**: `{ROTATE_ANNOTATION}` set on all N ({CREATORS} parallel API clients)",
            _s(r.trigger_s),
        ),
        (
            "**rotation with restarts**: first annotation → every KV entry rotated, every Secret "
            "updated, every Deployment rolled out",
            _s(r.total_s),
        ),
        ("  per object, its annotation → all three (p50 / p95 / max)", _spread(r.to_all)),
        ("  per object, its annotation → new KV version (p50 / p95 / max)", _spread(r.to_vault)),
        (
            "  per object, its annotation → Secret holds the new value (p50 / p95 / max)",
            _spread(r.to_secret),
        ),
        (
            "  per object, its annotation → its Deployment's pod template patched by vaultsync "
            "(p50 / p95 / max)",
            _spread(r.to_patch),
        ),
        (
            "  per object, its annotation → new ReplicaSet, made by kube-controller-manager "
            "(p50 / p95 / max)",
            _spread(r.to_rollout),
        ),
        *_cpu(r.usage),
        (
            "  rotations counted (`vaultsync_rotations_total`)",
            "—" if r.restarts_counted is None else _reasons(r.rotations),
        ),
        (
            "  mean rotation time (`vaultsync_rotation_duration_seconds`)",
            "—" if r.rotation_mean_ms is None else f"{r.rotation_mean_ms:.1f} ms",
        ),
        (
            "  rollout restarts counted (`vaultsync_rollout_restarts_total`)",
            _must(r.restarts_counted, n),
        ),
        (
            "  **KV versions written** (KV metadata; must be N, 1 per KV entry)",
            _once_each(r.kv_writes, r.kv_writes_per_path, n, "KV entries x new versions"),
        ),
        (
            "  **rollouts**: new ReplicaSets (must be N, exactly 1 per Deployment)",
            _once_each(r.rollouts, r.rollouts_per_deployment, n, "Deployments x new ReplicaSets"),
        ),
        ("  Secrets equal to Vault's current version afterwards", _must(r.secrets_equal_vault, n)),
        (
            f"**quiet window**: {QUIET_REFRESHES} refreshes (refreshInterval {r.refresh}s)",
            _s(r.quiet_s),
        ),
        ("  syncs performed (`vaultsync_syncs_total`)", _n(r.quiet_syncs)),
        *_cpu(r.quiet_usage),
        (
            "**operator restart** (SIGTERM, start) → N reconciles by the new process",
            _s(r.resync_s),
        ),
        ("  then one more refresh: restart segment in all", _s(r.restart_s)),
        ("  syncs performed by the new process", _n(r.restart_syncs)),
        *_cpu(r.restart_usage),
    ]
    rows += [
        (f"quiet window + restart: {what} (must be 0)", _must(count, 0))
        for what, count in r.quiet_changes.items()
    ]
    rows += [
        (f"quiet window + restart: {what} counted by the operator (must be 0)", _must(count, 0))
        for what, count in r.quiet_counted.items()
    ]
    return _judged(
        rows,
        r,
        "one new KV version and one rollout per rotated VaultSecret, nothing changed in the "
        "quiet window.",
    )


def _judged(rows: list[tuple[str, str]], r: RotationResult | DynamicResult, held: str) -> str:
    """A scenario's table, its memory rows added, then the verdict: what broke a guarantee,
    or (when it completed) that every correctness figure held (held: which)."""
    rows = rows + [(f"operator memory {k}: VmRSS (VmHWM)", str(v)) for k, v in r.memory.items()]
    text = _markdown(rows, r.log_warnings, r.load_before, r.error)
    if r.violations:
        text += "\n\n**FAILED** — a guarantee was broken:\n\n" + "\n".join(
            f"- {v}" for v in r.violations
        )
    elif r.error is None:
        text += f"\n\nEvery correctness figure held: {held}"
    return text


def dynamic_section(r: DynamicResult) -> list[str]:
    """The section's heading, its paragraph, its table and how it was measured."""
    n = r.size
    per_minute = None if not r.renewals or not r.steady_s else r.renewals * 60 / r.steady_s
    rows: list[tuple[str, str]] = [
        ("VaultDynamicSecrets / namespaces = Vault identities", f"{n} / {r.identities}"),
        (f"create the N objects ({CREATORS} parallel API clients)", _s(r.create_s)),
        (
            "**issue**: first create → every VaultDynamicSecret Ready=True and its Secret exists",
            _s(r.issue_s),
        ),
        (
            "  per object, its create → Ready (p50 / p95 / max)",
            " / ".join(_s(v) for v in (r.ready_p50_s, r.ready_p95_s, r.ready_max_s)),
        ),
        *_cpu(r.issue_usage),
        ("  credentials issued (`vaultsync_dynamic_credentials_issued_total`)", _must(r.issued, n)),
        (
            "  leases in Vault / roles in PostgreSQL",
            f"{_must(r.leases_after_issue, n)} / {_must(r.roles_after_issue, n)}",
        ),
        ("  reconciles that did not end Leased", _reasons(r.failures_issue)),
        (
            f"**steady window**: lease TTL {TTL} s, renewed at 67% (jitter up to 10%)",
            _s(r.steady_s),
        ),
        (
            '  renewals per minute (`vaultsync_lease_renewals_total{result="renewed"}`)',
            "—" if per_minute is None else f"{per_minute:.0f} ({per_minute / n:.2f} per lease)",
        ),
        ("  renewals by result", _reasons({k: int(v) for k, v in r.renewal_results.items()})),
        *_cpu(r.steady_usage),
        ("  new credentials (must be 0)", _must(r.steady_issued, 0)),
        ("  Secret writes (resourceVersion changes, must be 0)", _must(r.steady_secret_changes, 0)),
        ("**operator restart**: SIGKILL, start → N reconciles by the new process", _s(r.resync_s)),
        *_cpu(r.restart_usage),
        (
            "  leases outstanding in Vault after the restart (must be N)",
            _must(r.leases_after_restart, n),
        ),
        ("  roles in PostgreSQL after the restart (must be N)", _must(r.roles_after_restart, n)),
        ("  credentials read by the new process (must be 0)", _must(r.restart_reads, 0)),
        ("  leases revoked by the new process (must be 0)", _must(r.restart_revoked, 0)),
        ("  Secret writes (must be 0)", _must(r.restart_secret_changes, 0)),
        ("**deletion** of all N → no lease in Vault, no role in PostgreSQL", _s(r.delete_s)),
        ("  revocations counted (`vaultsync_lease_revocations_total`)", _n(r.revoked)),
        (
            "  leases / roles left (must be 0)",
            f"{_must(r.leases_after_delete, 0)} / {_must(r.roles_after_delete, 0)}",
        ),
    ]
    text = _judged(
        rows,
        r,
        "one credential per object, none issued while renewing, the live leases re-used after "
        "SIGKILL (N leases outstanding), all revoked on deletion.",
    )
    return [
        f"## Dynamic database credentials (N = {n})",
        "",
        f"On the machine above, on a stack of its own plus a PostgreSQL 15 server "
        f"(`e2e/harness/postgres.py`): {n} VaultDynamicSecrets over {r.identities} tenants, each "
        "reading `database/creds/app` of OpenBao's database engine (a new PostgreSQL role per "
        f"read, lease TTL {TTL} s, max_ttl 24 h) with the tenant's identity and the minimal "
        "policy of [the guide](vaultdynamicsecret.md#vault-setup). Created at once with the "
        f"operator running; then {STEADY} s of renewals with nothing else to do; then the "
        "operator is killed (SIGKILL) and started again; then all N are deleted. The bench "
        "fails (exit status 1) unless the figures marked *must* hold.",
        "",
        text,
        "",
        "- *issue*: per object from its create to the first poll (every 0.5 s) that sees it "
        "Ready for its generation; the Secrets are listed once all are Ready. Leases are "
        "counted by listing `sys/leases/lookup/database/creds/<role>/` as an admin, roles as "
        "`pg_roles` named `v-%`.",
        "- *steady window*: deltas of the operator's counters and of the Secrets' "
        "resourceVersions; a renewal extends a lease by its TTL, so each lease is renewed "
        f"about every {0.67 * TTL:.0f} s (less up to a tenth of the TTL, spread by the lease "
        "id).",
        "- *operator restart*: timed from the SIGKILL to the new process's N-th reconcile "
        "(`vaultsync_syncs_total`), counted 5 s later; the new process's counters start at 0, "
        "so its totals are what it did.",
        "- *deletion*: `kubectl delete` of all N at once (not waiting), timed until Vault lists "
        "no lease and PostgreSQL no role: each deletion revokes its lease with the tenant's "
        "identity before its finalizer goes.",
        "",
    ]


def _share(share: Share | None) -> str:
    if share is None:
        return "—"
    return f"{share.shards}" + (" + leader" if share.leader else "")


def _objects(share: Share | None) -> str:
    """VaultSecrets a replica reconciles / those of the namespaces whose shards it holds."""
    if share is None:
        return "—"
    text = f"{share.objects} / {share.expected}"
    return text if share.objects == share.expected else f"**{text}**"


def _load_cpu(load: Load | None, seconds: float | None = None) -> str:
    if load is None:
        return "—"
    share = "" if not seconds else f" = {100 * load.cpu_s / seconds:.0f}% of a core"
    return f"{load.cpu_s:.1f} s{share}"


def _changes(load: Load | None) -> str:
    if load is None:
        return "—"
    return " / ".join(str(load.changes.get(c, 0)) for c in ("acquired", "released", "lost"))


def _peak(found: Memory | None) -> str:
    return "—" if found is None else f"{found.hwm_mib:.0f} MiB"


def _summed(loads: dict[str, Load]) -> Load | None:
    if not loads:
        return None
    changes: Counter[str] = Counter()
    for load in loads.values():
        changes.update(load.changes)
    return Load(
        cpu_s=sum(load.cpu_s for load in loads.values()),
        syncs=sum(load.syncs for load in loads.values()),
        writes=sum(load.writes for load in loads.values()),
        changes=dict(changes),
    )


def _together(shares: dict[str, Share]) -> Share | None:
    if not shares:
        return None
    return Share(
        sum(s.shards for s in shares.values()),
        any(s.leader for s in shares.values()),
        sum(s.objects for s in shares.values()),
        sum(s.expected for s in shares.values()),
    )


def _replicas_table(r: ShardingResult) -> str:
    """One replica against each of the three and their sum, per figure."""
    one = r.one
    one_load = (
        None
        if one is None or one.start_usage is None
        else Load(one.start_usage[1]["operator"], r.one_syncs or 0.0, 0.0, {})
    )
    one_window = (
        None
        if one is None or one.window_usage is None
        else Load(
            one.window_usage[1]["operator"], one.window_syncs or 0.0, one.window_writes or 0.0, {}
        )
    )
    whole = Share(SHARDS, True, r.size, r.size)
    three, window = _summed(r.three_load), _summed(r.window_load)
    together = _together(r.window_shares)

    def row(label: str, alone: str, each: Callable[[str], str], both: str) -> str:
        return f"| {label} | {alone} | " + " | ".join(each(n) for n in REPLICAS) + f" | {both} |"

    lines = [
        "| | one replica | " + " | ".join(REPLICAS) + " | the three |",
        "|---|---|" + "---|" * len(REPLICAS) + "---|",
        row(
            "shard Leases held when every object was synced",
            _share(whole),
            lambda n: _share(r.three_shares.get(n)),
            _share(_together(r.three_shares)),
        ),
        row(
            "shard Leases held after the refresh window",
            _share(whole),
            lambda n: _share(r.window_shares.get(n)),
            _share(together),
        ),
        row(
            "VaultSecrets it reconciles (`vaultsync_objects`) / those of its shards' "
            "namespaces, after the refresh window",
            _objects(whole),
            lambda n: _objects(r.window_shares.get(n)),
            _objects(together),
        ),
        row(
            "start → every object synced: CPU (utime+stime)",
            _load_cpu(one_load),
            lambda n: _load_cpu(r.three_load.get(n)),
            _load_cpu(three),
        ),
        row(
            "start → every object synced: syncs (`vaultsync_syncs_total`)",
            _n(None if one_load is None else one_load.syncs),
            lambda n: _n(r.three_load[n].syncs if n in r.three_load else None),
            _n(None if three is None else three.syncs),
        ),
        row(
            "start → every object synced: shard changes (acquired / released / lost)",
            "—",
            lambda n: _changes(r.three_load.get(n)),
            _changes(three),
        ),
        row(
            "peak RSS (VmHWM) when every object was synced",
            _peak(None if one is None else one.start_memory),
            lambda n: _peak(r.three_memory.get(n)),
            "—"
            if not r.three_memory
            else f"{sum(m.hwm_mib for m in r.three_memory.values()):.0f} MiB",
        ),
        row(
            "refresh window: CPU",
            _load_cpu(one_window, None if one is None else one.window_s),
            lambda n: _load_cpu(r.window_load.get(n), r.window_s),
            _load_cpu(window, r.window_s),
        ),
        row(
            "refresh window: syncs",
            _n(None if one_window is None else one_window.syncs),
            lambda n: _n(r.window_load[n].syncs if n in r.window_load else None),
            _n(None if window is None else window.syncs),
        ),
        row(
            "refresh window: Secret writes (`vaultsync_secret_writes_total`)",
            _n(None if one_window is None else one_window.writes),
            lambda n: _n(r.window_load[n].writes if n in r.window_load else None),
            _n(None if window is None else window.writes),
        ),
        row(
            "refresh window: peak RSS (VmHWM)",
            _peak(None if one is None else one.memory.get("after refresh window")),
            lambda n: _peak(r.window_memory.get(n)),
            "—"
            if not r.window_memory
            else f"{sum(m.hwm_mib for m in r.window_memory.values()):.0f} MiB",
        ),
    ]
    return "\n".join(lines)


def _move_rows(move: Move | None, what: str) -> list[tuple[str, str]]:
    if move is None:
        return []
    held = f"{move.shards} shards" + (" and the leader" if move.leader else "")
    which = "the replica holding the most shards" if what == "takeover" else "another replica"
    rows = [
        (
            f"**{what}**: `{move.how}` to {which}; the KV entries of its VaultSecrets "
            "rewritten right after",
            f"{move.replica}: {held}, {move.objects} VaultSecrets in {move.namespaces} "
            f"namespaces (KV rewritten in {move.rewrite_s:.1f} s)",
        ),
    ]
    if move.exit_s is not None:
        rows.append((f"  `{move.how}` → its process exited", _s(move.exit_s)))
    rows += [
        (
            f"  `{move.how}` → every shard Lease and the leader held by a live replica",
            _s(move.held_s),
        ),
        (f"  `{move.how}` → every one of its Secrets holds the new KV value", _s(move.synced_s)),
        (
            "  then: shards held / VaultSecrets reconciled / those of its shards' namespaces",
            ", ".join(
                f"{name} {_share(share)} / {share.objects} / {share.expected}"
                for name, share in move.shares.items()
            ),
        ),
    ]
    return rows


def sharding_table(r: ShardingResult) -> str:
    one = r.one
    spread = ", ".join(
        f"{shards} with {n}" if n else f"{shards} with none"
        for n, shards in sorted(r.namespaces_per_shard.items(), reverse=True)
    )
    strays = r.strays()
    rows: list[tuple[str, str]] = [
        (
            "VaultSecrets / namespaces = Vault identities / shards",
            f"{r.size} / {r.identities} / {r.shards}",
        ),
        ("  shards by the number of namespaces that hash into them", spread),
        (
            "**one replica** (`--shards`, alone): its start → every Secret exists and every "
            "VaultSecret Ready=True",
            _s(None if one is None else one.start_s),
        ),
        *_cpu(None if one is None else one.start_usage),
        (
            "  API requests per object (the benchmark's own requests taken out)",
            "—" if one is None else _requests(one.start_requests, r.size),
        ),
        (
            "**three replicas** started together on the same objects (Secrets deleted, "
            "statuses new): their start → every Secret exists and every VaultSecret Ready=True",
            _s(r.three_s),
        ),
        (
            "  their start → every replica holds its share (5 or 6 shards)",
            _s(r.settled_s),
        ),
        *_cpu(r.three_usage, operator=False),
        (
            "  API requests per object (the benchmark's own requests taken out)",
            _requests(r.three_requests, r.size),
        ),
        (
            f"**no-op refresh window**, one replica (refreshInterval {r.refresh}s)",
            _s(None if one is None else one.window_s),
        ),
        *_cpu(None if one is None else one.window_usage),
        (
            "  Kubernetes API requests per object per refresh interval",
            "—"
            if one is None or not one.window_s
            else _requests(one.window_requests, r.size * one.window_s / r.refresh),
        ),
        ("**no-op refresh window**, three replicas", _s(r.window_s)),
        *_cpu(r.window_usage, operator=False),
        (
            "  Kubernetes API requests per object per refresh interval",
            "—"
            if not r.window_s
            else _requests(r.window_requests, r.size * r.window_s / r.refresh),
        ),
        *_move_rows(r.takeover, "takeover"),
        *_move_rows(r.handover, "handover"),
        (
            "replicas reconciling other VaultSecrets than those of the shards they hold",
            "0" if not strays else f"**{len(strays)}**: " + "; ".join(strays),
        ),
    ]
    return _replicas_table(r) + "\n\n" + _markdown(rows, r.log_warnings, r.load_before, r.error)


def _sharding_findings(r: ShardingResult) -> str:
    """Plain statements of what was measured, as in interpretation()."""
    one, three, window = r.one, _summed(r.three_load), _summed(r.window_load)
    found: list[str] = []
    if one is not None and one.start_s and one.start_usage and three and r.three_s:
        acquired = three.changes.get("acquired", 0)
        settled = (
            f"the replicas took {acquired} Leases for {r.shards} shards and the leader"
            if acquired <= r.shards + 1
            else f"the replicas took {acquired} Leases for {r.shards} shards and the leader "
            "while they settled, and a replica that takes a shard reconciles its objects again"
        )
        found.append(
            f"Here three replicas had every object synced {r.three_s:.1f} s after their start "
            f"against {one.start_s:.1f} s for one, with {three.cpu_s:.1f} s of CPU between "
            f"them against {one.start_usage[1]['operator']:.1f} s and {three.syncs:.0f} syncs "
            f"against {r.one_syncs or 0:.0f} ({settled})"
        )
    if one is not None and one.start_requests and r.three_requests:
        patches = "PATCH vaultsecrets"
        found.append(
            f"they made {counted(r.three_requests) / r.size:.2f} API requests per object "
            f"against {counted(one.start_requests) / r.size:.2f}, {patches} "
            f"{r.three_requests[patches] / r.size:.2f} against "
            f"{one.start_requests[patches] / r.size:.2f}"
        )
    if one is not None and one.window_usage and window:
        found.append(
            f"over a no-op refresh window they used {window.cpu_s:.1f} s of CPU against "
            f"{one.window_usage[1]['operator']:.1f} s"
        )
    if one is not None and one.start_memory and r.three_memory:
        peaks = [m.hwm_mib for m in r.three_memory.values()]
        found.append(
            f"each replica's peak RSS ({min(peaks):.0f}-{max(peaks):.0f} MiB) is close to the "
            f"single replica's ({one.start_memory.hwm_mib:.0f} MiB), so memory is not split"
        )
    shares = r.window_shares
    if shares:
        empty = r.namespaces_per_shard.get(0, 0)
        most = max(r.namespaces_per_shard)
        found.append(
            "the shards split "
            + " / ".join(str(share.shards) for share in shares.values())
            + " but the objects "
            + " / ".join(str(share.objects) for share in shares.values())
            + f" ({', '.join(shares)}): {r.identities} namespaces hashed into {r.shards} shards "
            f"leave {empty} shards empty and one with {most} namespaces, so a replica's share "
            "of the objects is that of the namespaces its shards happen to hold"
        )
    for move, what in ((r.takeover, "killed"), (r.handover, "stopped")):
        if move is not None:
            found.append(
                f"the shards of a {what} replica were held again {move.held_s:.1f} s after "
                f"its {move.how} and its {move.objects} Secrets had the new KV values "
                f"{move.synced_s:.1f} s after it"
            )
    if not found:
        return ""
    text = "; ".join(found)
    return text[0].upper() + text[1:] + f" (lease duration {r.duration:g} s)."


def sharding_section(r: ShardingResult) -> list[str]:
    """The section's heading, its paragraph, its tables and how it was measured."""
    cores = len(os.sched_getaffinity(0))
    return [
        f"## Sharding: 3 replicas against 1 (N = {r.size})",
        "",
        f"On the machine above ({cores} cores), on a stack of its own: {r.size} VaultSecrets "
        f"over {r.identities} namespaces (each a Vault identity), refreshInterval "
        f"{r.refresh}s; the operator runs as `vaultsync run --shards {r.shards} "
        f"--identity rN --lease-duration {r.duration:g}`, the namespaces hashed into "
        f"{r.shards} shards, each a Lease. All the replicas share those {cores} cores with "
        "the control plane, OpenBao and the benchmark, so three replicas cannot sync faster "
        "than one here: no speed-up is expected and none is measured. What is measured is how "
        "the work splits between the replicas (shards, objects, CPU and syncs of each), what "
        "three cost against one, and how long the shards and Secrets of a replica that dies "
        "(SIGKILL) or stops (SIGTERM) take to move to the others. " + _sharding_findings(r),
        "",
        sharding_table(r),
        "",
        f"- *one replica*: the N VaultSecrets are created with the operator stopped; one "
        f"replica (`--shards {r.shards}`, identity r0) is started on them and timed as *sync "
        "from start*, then watched over a no-op refresh window (2 x refreshInterval + 2 s), "
        "as in the sizes scenario. It is stopped (SIGTERM), the Secrets are deleted, every "
        "status is put back to a new object's and any finalizer is taken off, so that the "
        "three replicas start on the objects as they were created. In the API requests, "
        "those on Leases (the replicas' own now, and the control plane's) are shown but not "
        "counted in the totals, as elsewhere in this report; the benchmark's own listings of "
        "the Leases are taken out.",
        f"- *three replicas*: {', '.join(REPLICAS)} are started at once on those objects and "
        "timed the same way. Per replica, from its metrics: "
        "the shards it holds (`vaultsync_shard_held`), the VaultSecrets it reconciles "
        "(`vaultsync_objects`), set against those of the namespaces whose shard it holds by "
        "the Leases (a mismatch after the window or a move is shown in bold and counted as "
        "reconciling other VaultSecrets), its syncs, Secret writes and shard changes "
        "(`vaultsync_shard_changes_total`); its CPU (utime+stime) and peak RSS from /proc. "
        "The Leases are listed every "
        f"{HOLDERS_POLL} s all along; *holds its share* is the first listing in which every "
        f"replica holds {r.shards // len(REPLICAS)} or {r.shards // len(REPLICAS) + 1} shards.",
        "- *takeover*: the replica holding the most shards is killed (SIGKILL) and the KV "
        "entries of every VaultSecret in its namespaces are given a new password at once "
        f"({CREATORS} threads); timed from the kill to the first listing in which every "
        "shard Lease and the leader name a live replica, and to the moment every one of its "
        f"Secrets holds the new value (polled every {SECRETS_POLL} s). A dead replica's "
        "Leases are taken over once they stayed unchanged for a lease duration "
        f"({DURATION} s) by the others' clocks, seen at their steps every third of it.",
        "- *handover*: then the first live replica by name is stopped (SIGTERM) and timed the "
        "same way; it hands its shards over as it stops, and the one replica left takes them "
        "all. The figures of a replica that is gone are not in the table.",
        "",
    ]


def interpretation(results: list[SizeResult], rotation: RotationResult | None = None) -> str:
    """Plain statements of what was measured; nothing extrapolated."""
    sentences: list[str] = []
    for r in results:
        if r.floor is None or r.start_s is None or r.start_usage is None:
            continue
        peak = "—" if r.start_memory is None else f"{r.start_memory.hwm_mib:.0f} MiB"
        text = (
            f"N={r.size}: the floor ({FLOOR_THREADS} threads) synced the pre-created objects "
            f"in {r.floor.seconds:.1f} s with {counted(r.floor_requests) / r.size:.2f} API "
            f"requests per object; started on them, the operator had every Secret and Ready "
            f"{r.start_s:.1f} s after its process start ({_times_floor(r.start_s, r)}x the "
            f"floor), using {r.start_usage[1]['operator']:.1f} s of CPU, peak RSS {peak}, "
            f"with {_requests(r.start_requests, r.size, least=0.5)} API requests per object"
        )
        if r.sync_s is not None and r.create_s is not None:
            text += (
                f"; timed from the first create with the operator running, {r.sync_s:.1f} s "
                f"({_times_floor(r.sync_s, r)}x the floor; creating the objects took "
                f"{r.create_s:.1f} s of it)"
            )
        sentences.append(text + ".")
    logins = [
        (found, r.identities)
        for r in results
        for found in (r.start_logins, r.logins_after_sync)
        if found is not None
    ]
    if logins and all(found == identities for found, identities in logins):
        sentences.append(
            "Vault logins equalled the number of identities in every sync: one login per "
            "identity, reused."
        )
    elif logins:
        sentences.append(
            "Vault logins in the syncs: "
            + ", ".join(f"{found:.0f} for {identities} identities" for found, identities in logins)
            + "."
        )
    window = [r for r in results if r.window_writes is not None]
    if window:
        quiet = all(
            r.window_writes == 0 and r.window_vs_rv_changes == 0 and r.window_secret_rv_changes == 0
            for r in window
        )
        keeping_up = "; ".join(
            f"N={r.size}: {r.window_syncs:.0f} syncs against a nominal N x window / interval "
            f"= {r.size * seconds / r.refresh:.0f}, operator at "
            f"{100 * cpu['operator'] / seconds:.0f}% of a core, "
            f"{1000 * cpu['operator'] / _intervals(r):.1f} ms of operator CPU, "
            f"{counted(r.window_requests) / _intervals(r):.2f} Kubernetes API requests and "
            f"{r.window_vault_requests.get('kv_read', 0) / _intervals(r):.2f} Vault KV reads "
            "per object per interval"
            for r in window
            if r.window_usage
            for seconds, cpu, _other in [r.window_usage]
        )
        sentences.append(
            ("No-op refreshes wrote nothing to Kubernetes" if quiet else "No-op refreshes WROTE")
            + f" ({keeping_up})."
        )
    changes = [r for r in results if r.change_max_s is not None]
    if changes:
        sentences.append(
            "A KV change reached its Secret within "
            + ", ".join(f"{r.change_max_s:.1f} s (N={r.size})" for r in changes)
            + f" with a {changes[0].refresh} s refreshInterval."
        )
    grown = [r for r in results if "idle" in r.memory and len(r.memory) > 1]
    if grown:
        sentences.append(
            "Operator RSS: "
            + ", ".join(
                f"{r.memory['idle'].rss_mib:.0f} MiB idle → "
                f"{max(m.hwm_mib for m in r.memory.values()):.0f} MiB peak with {r.size} objects"
                for r in grown
            )
            + "."
        )
    if rotation is not None and rotation.total_s is not None:
        r = rotation
        patched = (
            ""
            if r.to_patch is None
            else f"; vaultsync had patched every Deployment's pod template {r.to_patch.max:.1f} "
            "s after its annotation, the rest is kube-controller-manager making the ReplicaSets"
        )
        sentences.append(
            f"Rotating {r.size} VaultSecrets at once, each restarting a Deployment of its own, "
            f"took {r.total_s:.0f} s from the first annotation to the last new ReplicaSet "
            f"({r.kv_writes} KV versions written, {r.rollouts} rollouts{patched})"
            + (
                "; the quiet window and operator restart after it changed nothing."
                if not r.violations
                else f"; **the bench FAILED**: {'; '.join(r.violations)}."
            )
        )
    usages: list[Usage | None] = [
        u for r in results for u in (r.floor_usage, r.start_usage, r.sync_cpu, r.window_usage)
    ]
    if rotation is not None:
        usages += [rotation.usage, rotation.quiet_usage, rotation.restart_usage]
    loads = [usage[2] / usage[0] for usage in usages if usage is not None and usage[0]]
    if loads:
        sentences.append(
            "Other processes used "
            + (f"{min(loads):.1f}-{max(loads):.1f}" if len(loads) > 1 else f"{loads[0]:.1f}")
            + f" of the {len(os.sched_getaffinity(0))} cores on average while these were "
            "measured, so absolute times are from a shared, busy machine."
            if max(loads) >= 0.25
            else "The machine was otherwise quiet (other processes < 0.25 cores on average)."
        )
    return " ".join(sentences)


def source(directory: Path | None) -> str:
    """Which operator code ran: this checkout's or another's, and its `git describe`."""
    where = directory or ROOT / "operator"
    described = subprocess.run(
        ["git", "-C", str(where), "describe", "--always", "--dirty", "--tags"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout.strip()
    whose = "this checkout's `operator/`" if directory is None else "`--operator-source`"
    return f"{whose} at `{described or 'unknown'}`"


def report(
    results: list[SizeResult],
    rotation: RotationResult | None,
    args: argparse.Namespace,
    wall_s: float,
    sharding: ShardingResult | None = None,
    dynamic: DynamicResult | None = None,
) -> str:
    facts = machine()
    command = "python -m e2e.harness.bench " + " ".join(
        a if " " not in a else repr(a) for a in sys.argv[1:]
    )
    parts = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`e2e/harness/bench/`); do not edit by hand. Each size runs "
        "on a fresh local stack (and, for the sync from the first create, on a second one), "
        "the rotation scenario on one of its own — etcd + kube-apiserver + "
        "kube-controller-manager, one OpenBao "
        "(raft storage, not dev mode), and the operator as one process (`vaultsync run`, not "
        "verbose, default `VAULTSYNC_WORKERS`; backoff 1-5 s as set by "
        "`e2e.harness.stack.Operator`). All of it, and the benchmark itself, share the machine "
        "below. VaultSecrets are "
        f"spread over {args.namespaces} namespaces, each with its own VaultAuth, Vault role "
        "and policy (one Vault identity each); each copies a two-key KV v2 entry into an "
        "Opaque Secret.",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command.strip()}` (wall time {wall_s / 60:.1f} min)",
        f"- operator: {source(args.operator_source)}",
        *(f"- {key}: {value}" for key, value in facts.items()),
        "",
        "## Results",
        "",
        interpretation(results, rotation),
        "",
    ]
    for r in results:
        parts += [f"### N = {r.size}", "", table(r), ""]
    if rotation is not None:
        parts += [
            f"## Rotation and rolling restarts (N = {rotation.size})",
            "",
            f"On the machine above, on a stack of its own: {rotation.size} VaultSecrets over "
            f"{rotation.identities} tenants whose Vault policies let them rotate their own paths "
            "(`e2e.harness.stack.rotating_tenant_policy`), each rotating the `password` of its "
            "KV entry (built-in generator, 32 characters) and restarting a Deployment of its "
            "own (`rolloutRestartTargets`; 0 replicas — there is no kubelet, and "
            "kube-controller-manager makes a new ReplicaSet for every rollout). "
            f"`rotation.interval` is {NEVER}, so only the annotation rotates: one new value of "
            f"`{ROTATE_ANNOTATION}` set on all {rotation.size} at once is the trigger, a clean "
            "start for every clock. The bench fails (exit status 1) unless the figures marked "
            "*must* hold.",
            "",
            rotation_table(rotation),
            "",
        ]
    if sharding is not None:
        parts += sharding_section(sharding)
    if dynamic is not None:
        parts += dynamic_section(dynamic)
    parts += [
        "## What is measured",
        "",
        f"- *floor*: the N VaultSecrets are created (by {CREATORS} threads) with the operator "
        f"stopped; then {FLOOR_THREADS} bare Python threads do only what must be done, over "
        "plain HTTP against the same API server and OpenBao: one TokenRequest and Vault "
        "Kubernetes-auth login per identity (reused), and per object one KV v2 read, one "
        "Secret create (`floor-<name>`, not managed by vaultsync) and one status patch "
        "(Ready=True); timed from the first request until all are done. Its Secrets are then "
        "deleted and every status put back to a new object's (`observedGeneration: 0`).",
        "- *sync from start*: then the operator process is started on those objects; from its "
        "start until every destination Secret exists and every VaultSecret has Ready=True for "
        "its generation, as seen by watches of both begun before the start (each event timed "
        "as it arrives, then checked by one listing; `progress.py`). *x floor* is this time "
        "over the floor "
        "of the same run; the CPU, peak RSS (VmHWM) and requests are the new process's.",
        "- *API requests per object*: the kube-apiserver's `apiserver_request_total` before "
        "and after, by verb and resource (subresource after a slash), divided by N (by N x "
        "refresh intervals in the refresh window). The benchmark's own requests (its listings) "
        "are subtracted; WATCH and non-resource requests (discovery, `/metrics`) are left "
        f"out, and {', '.join(BACKGROUND)} (coordination: the control plane's own, and with "
        "`--shards` the replicas') are shown but not counted in the total. The other "
        "servers' clients (kube-controller-manager) would count too.",
        f"- *sync from the first create*: on a second fresh stack with the operator idle, N "
        f"VaultSecrets created through the API by {CREATORS} threads at "
        "once; from the first create until every destination Secret exists and every "
        "VaultSecret has Ready=True for its generation, seen by watches as in *sync from "
        "start* (per object: its create to the first event that shows it Ready). Skipped "
        "with `--no-from-create`.",
        "- *no-op refresh window*: 2 x refreshInterval + 2 s with nothing changing in Vault; "
        "deltas of the operator's Prometheus counters (Vault requests by operation: "
        f"`{VAULT_REQUESTS}`), of the API server's request counters, of resourceVersions of "
        "all VaultSecrets and Secrets, and of utime+stime from `/proc/<pid>/stat`.",
        "- *change latency*: KV entries rewritten one after another; each is timed from its own "
        "write to the moment its Secret holds the new value (polled every 0.25 s). Bounded "
        "by the refreshInterval, since a refresh is what picks a change up.",
        "- *memory*: VmRSS and VmHWM from `/proc/<pid>/status` of the operator process; "
        "*idle* is 5 s after start with the tenants' VaultAuths present and no VaultSecrets.",
        "- *Vault sealed*: `sys/seal`, wait for every VaultSecret to report Ready=False, "
        "unseal, wait for every one to be Ready=True again.",
        "- *rotation with restarts*: the Deployments are created first and wait for their "
        "ReplicaSet; the VaultSecrets are then created as in *initial sync* and must adopt "
        "their Deployment (Restarted=True) without a rollout. The annotation is set on all N by "
        f"{CREATORS} threads; each object is timed from its own annotation: to its new KV "
        "version (`created_time` in the KV metadata), to its Secret holding a new password and "
        f"to a new ReplicaSet of its Deployment (polled every {POLL} s). "
        f"{SETTLE:.0f} s after the last rollout, KV versions (KV metadata) and ReplicaSets are "
        "counted: exactly one new version per KV entry and exactly one new ReplicaSet per "
        "Deployment must hold, and every Secret must equal its KV entry's current version.",
        f"- *quiet window*: {QUIET_REFRESHES} x refreshInterval + 2 s of refreshes, then the "
        "operator is stopped (SIGTERM) and started again, waits until the new process has "
        "reconciled N times, and one more refreshInterval + 2 s. Over all of it, KV versions, "
        "ReplicaSets and the resourceVersions of the Secrets, VaultSecrets and Deployments must "
        "not change and the operator must count no rotation, rollout restart or Secret write "
        "(counters of both processes). The restart's CPU row is the new process's whole CPU "
        "time, its start included.",
        "",
    ]
    return "\n".join(parts)
