"""docs/benchmarks-peers.md: the floor, vaultsync and ESO side by side from one run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

from e2e.harness.bench.apiserver import BACKGROUND, Requests, counted, resource_of
from e2e.harness.bench.floor import FLOOR_THREADS
from e2e.harness.bench.measure import CREATORS, START_POLL, Usage
from e2e.harness.bench.peers.eso import ESO_VERSION, UNUSED_RECONCILERS
from e2e.harness.bench.peers.measure import KV_READ, QUIET, PeersResult, Settled
from e2e.harness.bench.procstats import Memory, machine
from e2e.harness.bench.report import _cpu, _requests, _s, source

LOGIN = "update auth/kubernetes/login"
DASH = "—"


def _per(count: float, objects: float) -> str:
    return DASH if not objects else f"{count / objects:.2f}"


def _times(seconds: float | None, floor: float | None) -> str:
    return DASH if seconds is None or not floor else f"{seconds / floor:.1f}"


def _cpu_s(usage: Usage | None, process: str = "operator") -> str:
    return DASH if usage is None else f"{usage[1][process]:.1f} s"


def _peak(found: Memory | None) -> str:
    return DASH if found is None else f"{found.hwm_mib:.0f} MiB"


def _intervals(size: int, window_s: float | None, refresh: int) -> float:
    """Objects x refresh intervals in a steady-state window."""
    return 0.0 if window_s is None else size * window_s / refresh


def _vault(found: Counter[str], intervals: float) -> str:
    """KV reads per object per interval, and all Vault requests if there were others."""
    if not intervals:
        return DASH
    text = _per(found[KV_READ], intervals)
    everything = sum(found.values())
    if everything == found[KV_READ]:
        return text
    logins = _per(found[LOGIN], intervals)
    return f"{text} (all requests {_per(everything, intervals)}, logins {logins})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(result: PeersResult) -> str:
    r = result.base
    floor = None if r.floor is None else r.floor.seconds
    n = r.size
    vs_intervals = _intervals(n, r.window_s, r.refresh)
    head = [
        f"N = {n}",
        "time to all Secrets + Ready",
        "\N{MULTIPLICATION SIGN} floor",
        "CPU",
        "peak RSS",
        "API requests per object",
        "steady state: K8s requests per object per interval",
        "steady state: Vault KV reads per object per interval",
    ]
    rows = [
        _row(head),
        _row(["---"] * len(head)),
        _row(
            [
                f"floor ({FLOOR_THREADS} threads)",
                _s(floor),
                DASH if floor is None else "1.0",
                f"{_cpu_s(r.floor_usage, 'bench')} (the bench process)",
                DASH,
                _per(counted(r.floor_requests), n),
                DASH,
                DASH,
            ]
        ),
        _row(
            [
                "vaultsync",
                _s(r.start_s),
                _times(r.start_s, floor),
                _cpu_s(r.start_usage),
                _peak(r.start_memory),
                _per(counted(r.start_requests), n) if r.start_s is not None else DASH,
                _per(counted(r.window_requests), vs_intervals),
                _vault(result.vaultsync_vault, vs_intervals),
            ]
        ),
    ]
    for run in result.eso:
        intervals = _intervals(n, run.window_s, r.refresh)
        rows.append(
            _row(
                [
                    run.label,
                    _s(run.start_s) if run.error is None else f"did not complete ({DASH})",
                    _times(run.start_s, floor),
                    _cpu_s(run.usage),
                    _peak(run.memory),
                    _per(counted(run.requests), n) if run.start_s is not None else DASH,
                    _per(counted(run.window_requests), intervals),
                    _vault(run.window_vault, intervals),
                ]
            )
        )
    return "\n".join(rows)


def _vault_detail(found: Counter[str], intervals: float) -> str:
    if not intervals:
        return DASH
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"`{key}` {n / intervals:.2f}" for key, n in ranked) or "0"


def _settled(found: Settled | None, size: int) -> tuple[str, str]:
    """The wait for a quiet API server before a start, and what was served meanwhile."""
    label = "  before its start, waited for the API server to settle (not measured)"
    if found is None:
        return label, DASH
    return (
        label,
        f"{_s(found.seconds)}{'' if found.quiet else ' (did not settle: bound reached)'}; "
        f"served meanwhile, per object: {_requests(found.requests, size)}",
    )


def _detail_rows(
    label: str,
    usage: Usage | None,
    requests: Requests,
    size: int,
    window_usage: Usage | None,
    window_requests: Requests,
    window_vault: Counter[str],
    intervals: float,
    changes: str,
    settled: Settled | None,
) -> list[tuple[str, str]]:
    return [
        _settled(settled, size),
        (f"**{label}**: sync from its process start", DASH if usage is None else _s(usage[0])),
        *_cpu(usage),
        ("  API requests per object", _requests(requests, size)),
        (
            "  steady state: window",
            DASH if window_usage is None else _s(window_usage[0]),
        ),
        (
            "  Kubernetes API requests per object per interval",
            _requests(window_requests, intervals),
        ),
        (
            "  Vault requests per object per interval (audit log)",
            _vault_detail(window_vault, intervals),
        ),
        ("  resourceVersion changes in the window (objects / Secrets)", changes),
        *_cpu(window_usage),
    ]


def details(result: PeersResult) -> str:
    r = result.base
    n = r.size
    vs_intervals = _intervals(n, r.window_s, r.refresh)
    rows: list[tuple[str, str]] = [
        ("objects / namespaces = Vault identities", f"{n} / {r.identities}"),
        ("create the N VaultSecrets, operator stopped", _s(r.precreate_s)),
        (
            f"**floor**: {FLOOR_THREADS} threads",
            DASH if r.floor is None else f"{_s(r.floor.seconds)} ({r.floor.per_second:.0f}/s)",
        ),
        *_cpu(r.floor_usage, operator=False),
        ("  API requests per object", _requests(r.floor_requests, n)),
        *_detail_rows(
            "vaultsync",
            r.start_usage,
            r.start_requests,
            n,
            r.window_usage,
            r.window_requests,
            result.vaultsync_vault,
            vs_intervals,
            f"{r.window_vs_rv_changes if r.window_vs_rv_changes is not None else DASH} / "
            f"{r.window_secret_rv_changes if r.window_secret_rv_changes is not None else DASH}",
            result.vaultsync_settled,
        ),
    ]
    for run in result.eso:
        rows += _detail_rows(
            run.label,
            run.usage,
            run.requests,
            n,
            run.window_usage,
            run.window_requests,
            run.window_vault,
            _intervals(n, run.window_s, r.refresh),
            f"{DASH if run.window_es_rv_changes is None else run.window_es_rv_changes} / "
            f"{DASH if run.window_secret_rv_changes is None else run.window_secret_rv_changes}",
            run.settled,
        )
        rows.append(
            (
                "  ESO error log lines, its start to the end of its window",
                str(sum(run.log_errors.values())) if run.usage else DASH,
            )
        )
    rows.append(("load average (1/5/15 min) before the stack started", r.load_before))
    lines = ["| measurement | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    if r.error:
        lines.append(f"\n**Did not complete** — {r.error}")
    for run in result.eso:
        if run.log_errors:
            lines.append(f"\n{run.label} error log lines (most frequent):\n")
            lines += [f"- {c}x `{m}`" for m, c in run.log_errors.most_common(5)]
    return "\n".join(lines)


def go_version() -> str:
    found = subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, check=False, timeout=30
    )
    return found.stdout.strip() or "unknown"


def summary(result: PeersResult) -> str:
    """Plain statements of what was measured, nothing extrapolated."""
    r = result.base
    if r.floor is None:
        return "The run did not get as far as the floor."
    parts = [f"The floor synced the {r.size} pre-created objects in {r.floor.seconds:.1f} s"]
    if r.start_s is not None:
        parts.append(f"vaultsync in {r.start_s:.1f} s ({r.start_s / r.floor.seconds:.1f}x)")
    parts += [
        f"{run.label} in {run.start_s:.1f} s ({run.start_s / r.floor.seconds:.1f}x)"
        for run in result.eso
        if run.start_s is not None
    ]
    text = ", ".join(parts) + ", each timed from its process start."
    steady = [
        ("vaultsync", r.window_s, r.window_requests, result.vaultsync_vault),
        *((run.label, run.window_s, run.window_requests, run.window_vault) for run in result.eso),
    ]
    refreshes = []
    for label, window_s, requests, vault in steady:
        intervals = _intervals(r.size, window_s, r.refresh)
        reads = vault[KV_READ]
        if not intervals or not reads:
            continue
        refreshes.append(
            f"{label} {reads / intervals:.2f} with {counted(requests) / reads:.1f} Kubernetes "
            f"and {sum(vault.values()) / reads:.1f} Vault requests per KV read"
        )
    if refreshes:
        text += (
            f" At steady state (refreshInterval {r.refresh} s), KV reads per object per "
            "interval (1.00: every object refreshed once an interval): "
            + "; ".join(refreshes)
            + "."
        )
    idle = [
        (run.label, run.settled)
        for run in result.eso
        if run.settled and counted(run.settled.requests)
    ]
    if idle:
        text += (
            " With no operator running (waiting for the API server to settle before each ESO "
            "start), the control plane's own clients still made "
            + "; ".join(
                ", ".join(
                    f"{key} {n / r.size:.2f}"
                    for key, n in found.requests.most_common()
                    if resource_of(key) not in BACKGROUND
                )
                + f" per object before {label}"
                for label, found in idle
            )
            + ": requests of those kinds in a measured row are not necessarily the operator's."
        )
    loads = [
        u[2] / u[0]
        for u in [r.floor_usage, r.start_usage, *(run.usage for run in result.eso)]
        if u is not None and u[0]
    ]
    if loads and max(loads) >= 0.25:
        text += (
            f" Other processes used {min(loads):.1f}-{max(loads):.1f} of the "
            f"{len(os.sched_getaffinity(0))} cores on average meanwhile: absolute times are "
            "from a shared, busy machine."
        )
    return text


def report(result: PeersResult, args: argparse.Namespace, wall_s: float) -> str:
    command = "python -m e2e.harness.bench.peers " + " ".join(sys.argv[1:])
    settings = ", ".join(f"`--concurrent={run.concurrent}`" for run in result.eso)
    facts = {**machine(), "External Secrets Operator": ESO_VERSION, "Go": go_version()}
    return "\n".join(
        [
            "# Benchmarks: vaultsync beside External Secrets Operator",
            "",
            "Generated by `make bench-peers` (`e2e/harness/bench/peers/`); do not edit by hand. "
            "One local stack — etcd + kube-apiserver + kube-controller-manager and one OpenBao "
            "(raft storage), as `make bench` uses — holds the same "
            f"{result.base.size} two-key KV v2 entries over {result.base.identities} tenant "
            "namespaces (one Vault identity each) for everyone: the floor, vaultsync, and "
            f"External Secrets Operator {ESO_VERSION} with {settings}, one after another on the "
            "same stack. The operators run as processes out of cluster, with the control "
            "plane's admin kubeconfig, and the benchmark shares the machine below with them.",
            "",
            f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- command: `{command.strip()}` (wall time {wall_s / 60:.1f} min)",
            f"- operator: {source(None)}",
            *(f"- {key}: {value}" for key, value in facts.items()),
            "",
            "## Results",
            "",
            summary(result),
            "",
            table(result),
            "",
            "### Details",
            "",
            details(result),
            "",
            "## What is measured",
            "",
            "- *floor* and *vaultsync*: exactly as in `make bench` (`docs/benchmarks.md`): the "
            f"N VaultSecrets are created ({CREATORS} threads) with the operator stopped, "
            f"{FLOOR_THREADS} bare threads do only what each object needs (a login per "
            "identity, then a KV read, a Secret create and a status patch per object) and are "
            "undone, then vaultsync's process is started and timed until every Secret exists "
            "and every VaultSecret is Ready=True for its generation. The floor's CPU is the "
            "benchmark process's.",
            "- *ESO*: afterwards, with vaultsync stopped, per setting: N ExternalSecrets (same "
            f"names and KV paths, `refreshInterval` {result.base.refresh}s, `dataFrom.extract` "
            "of the entry into a Secret `eso-<name>`, `creationPolicy: Owner`) are created with "
            "ESO stopped; ESO's controller (`main.go` of its module; "
            + ", ".join(f"`--enable-{name}-reconciler=false`" for name in UNUSED_RECONCILERS)
            + " as this bench uses none of those kinds, leader election off, everything else "
            "default: client QPS 50 / burst 100, no Vault token cache) is started and timed "
            "from its process start until every ExternalSecret has Ready=True and every "
            f"target Secret exists (polled every {START_POLL} s). Each tenant has a "
            "SecretStore: KV v2 at `secret`, Vault Kubernetes auth with the role named after "
            "the namespace as the namespace's `default` ServiceAccount (`serviceAccountRef`, "
            "a TokenRequest), what the tenant's VaultAuth tells vaultsync. ESO is then "
            "stopped, its ExternalSecrets and Secrets are deleted, and the next setting starts "
            "on the same stack from the same state.",
            "- Before each start (vaultsync's and each ESO setting's), the benchmark waits "
            f"until the API server has served nobody else for {QUIET:.0f} s, so that what other "
            "clients still do about an earlier phase is not counted in the next. No operator "
            "runs then and the benchmark's own requests are taken out, so what was served "
            "meanwhile (in the details) is the control plane's own clients' work: "
            "kube-controller-manager, whose garbage collector checks the owners of new owned "
            "Secrets and the dependents of deleted owners. It uses the same admin kubeconfig, "
            "so the API server's metrics cannot tell its requests from an operator's by user: "
            "the same kinds in a measured row may be partly its.",
            "- *CPU* (utime+stime of the process) and *peak RSS* (VmHWM) are the operator "
            "process's over its sync from start.",
            "- *API requests per object*: the kube-apiserver's `apiserver_request_total` "
            "before and after, by verb and resource, divided by N, the benchmark's own polls "
            f"subtracted; WATCH, non-resource requests and {', '.join(BACKGROUND)} (the control "
            "plane's own) are not counted.",
            "- *steady state*: after the sync and 3 s, a window of 2 x refreshInterval + 2 s "
            "with nothing changing; Kubernetes requests as above and Vault requests, per object "
            "per refresh interval (N x window / refreshInterval). Vault requests are counted by "
            "OpenBao: a file audit device is enabled for the window only (for vaultsync and "
            "ESO alike; its cost is in OpenBao's CPU there) and its request entries are counted "
            "by operation and path, OpenBao's `sys/` requests left out. The floor does no "
            "refreshes, so it has no steady state.",
            "",
        ]
    )
