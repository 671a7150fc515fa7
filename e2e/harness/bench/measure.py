"""One benchmark size on one fresh stack: the phases and what each measures (SizeResult).

Benchmarks measure; tests assert. Every wait here is bounded, and the stack is torn down
whatever happens (its files stay in the temp dir when a size fails, for the logs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
from kubernetes import client, config

from e2e.harness.bench.procstats import (
    Memory,
    cpu_seconds,
    load_average,
    machine_busy_seconds,
    memory,
)
from e2e.harness.conditions import ready_is
from e2e.harness.controlplane import ControlPlane
from e2e.harness.manifests import connection, namespace_object, vault_auth, vault_secret
from e2e.harness.metrics import Metrics, by_label, parse, total
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import Pending, eventually
from e2e.harness.stack import Operator, grant_tenant, start_stack
from vaultsync import GROUP, VERSION

MANAGED = "app.kubernetes.io/managed-by=vaultsync"
BENCH_LABEL = f"{GROUP}/bench"
REQUEST_TIMEOUT = 60
CREATORS = 8  # parallel API clients creating the VaultSecrets


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def timed(
    check: Callable[[], bool | Pending], timeout: float, what: str, interval: float = 1.0
) -> float:
    """Seconds until check holds (e2e.harness.polling.eventually, polling once a second)."""
    started = time.monotonic()
    eventually(check, timeout, what, interval=interval)
    return time.monotonic() - started


@dataclass(frozen=True)
class Sample:
    """The operator's counters and every process's CPU at one moment."""

    at: float
    metrics: Metrics
    cpu: dict[str, float]
    busy: float

    def since(self, before: Sample) -> tuple[float, dict[str, float], float]:
        """(seconds, CPU seconds per process, CPU seconds of everything else)."""
        cpu = {name: self.cpu[name] - before.cpu.get(name, 0.0) for name in self.cpu}
        other = max(0.0, self.busy - before.busy - sum(cpu.values()))
        return self.at - before.at, cpu, other

    def delta(self, before: Sample, name: str, **labels: str) -> float:
        return total(self.metrics, name, **labels) - total(before.metrics, name, **labels)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def log_levels(text: str) -> Counter[str]:
    """WARNING/ERROR lines of the operator log (format: date time LEVEL logger: message)."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            message = re.sub(r"\d+", "N", parts[3])
            found[f"{parts[2]} {message[:160]}"] += 1
    return found


def versions(items: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """resourceVersion by (namespace, name)."""
    return {
        (i["metadata"]["namespace"], i["metadata"]["name"]): i["metadata"]["resourceVersion"]
        for i in items
    }


@dataclass
class Recorded:
    """What every scenario's result keeps: its N, tenants and refreshInterval, the load before
    it, why it did not complete, and the operator's memory and log warnings after each phase."""

    size: int
    identities: int
    refresh: int
    load_before: str = ""
    error: str | None = None
    memory: dict[str, Memory] = field(default_factory=dict)
    log_warnings: dict[str, Counter[str]] = field(default_factory=dict)


@dataclass
class Tenant:
    namespace: str
    objects: list[tuple[str, str]] = field(default_factory=list)  # (VaultSecret, KV path)


class Bench:
    """One size on one fresh stack."""

    rotating = False  # the tenants' Vault policies let them rotate their own paths
    phase = "starting the stack"  # named in result.error if it fails

    def __init__(self, root: Path, size: int, namespaces: int, refresh: int) -> None:
        self.size = size
        self.refresh = refresh
        self.cp = ControlPlane(root / "cluster")
        self.bao = OpenBao(root / "openbao")
        self.operator = Operator(root / "operator", self.cp.kubeconfig)
        self.tenants = [Tenant(f"bench-{i:02d}") for i in range(min(namespaces, size))]
        for i in range(size):
            tenant = self.tenants[i % len(self.tenants)]
            tenant.objects.append((f"s{i:04d}", f"{tenant.namespace}/s{i:04d}"))
        self.core: client.CoreV1Api
        self.custom: client.CustomObjectsApi
        self.log_offset = 0

    # ----------------------------------------------------------------- stack

    @contextmanager
    def running(self) -> Iterator[None]:
        try:
            start_stack(self.cp, self.bao)
            configuration = client.Configuration()
            config.load_kube_config(str(self.cp.kubeconfig), client_configuration=configuration)
            configuration.connection_pool_maxsize = CREATORS
            api = client.ApiClient(configuration)
            self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            yield
        finally:
            for stop in (self.operator.stop, self.bao.stop, self.cp.stop):
                try:
                    stop()
                except Exception as exc:  # keep tearing down the rest
                    say(f"teardown: {exc}")

    def scenario(self, result: Recorded, name: str, phases: Callable[[], None]) -> None:
        """Run one scenario's phases on the running stack; the phase that failed, if one did
        (starting the stack included), goes into result.error (the traceback and the operator
        log's place to stderr), not further."""
        result.load_before = load_average()
        try:
            with self.running():
                phases()
        except Exception as exc:
            result.error = f"{self.phase}: {exc}"
            say(f"{name} failed during {self.phase}:\n{traceback.format_exc()}")
            say(f"operator log kept at {self.operator.log}")

    def record(self, result: Recorded, phase: str, memory_label: str | None = None) -> None:
        """What a phase left: the operator's new log warnings, and its memory if labelled."""
        if memory_label is not None:
            result.memory[memory_label] = memory(self.operator.pid)
        result.log_warnings[phase] = self.new_log_warnings()

    def start_operator(self, result: Recorded) -> None:
        self.phase = "starting the operator"
        self.operator.start()
        time.sleep(5)  # let its watches settle: idle means "started, nothing to do"
        self.record(result, "startup", "idle")

    @property
    def vault(self) -> hvac.Client:
        return self.bao.client()

    def kubectl_apply(self, objects: list[dict[str, Any]]) -> None:
        manifest = {"apiVersion": "v1", "kind": "List", "items": objects}
        self.cp.kubectl(
            f"--request-timeout={REQUEST_TIMEOUT}s",
            "apply",
            "--server-side",
            "-f",
            "-",
            input=json.dumps(manifest),
        )

    def vaultsecrets(self) -> list[dict[str, Any]]:
        listed: Any = self.custom.list_cluster_custom_object(
            GROUP,
            VERSION,
            "vaultsecrets",
            label_selector=f"{BENCH_LABEL}=true",
            _request_timeout=REQUEST_TIMEOUT,
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def secrets(self) -> list[dict[str, Any]]:
        response: Any = self.core.list_secret_for_all_namespaces(
            label_selector=MANAGED, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def secret_password(self, namespace: str, name: str) -> str | None:
        response: Any = self.core.read_namespaced_secret(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        data = json.loads(response.data).get("data") or {}
        return base64.b64decode(data["password"]).decode() if "password" in data else None

    def metric(self, name: str, **labels: str) -> float:
        return self.operator.metric(name, **labels)

    def sample(self) -> Sample:
        pids = {
            "operator": self.operator.pid,
            **self.cp.pids,
            "OpenBao": self.bao.pid,
            "bench": os.getpid(),
        }
        return Sample(
            at=time.monotonic(),
            metrics=parse(self.operator.metrics()),
            cpu={name: cpu_seconds(pid) for name, pid in pids.items()},
            busy=machine_busy_seconds(),
        )

    def new_log_warnings(self) -> Counter[str]:
        text = self.operator.log_text()
        found = log_levels(text[self.log_offset :])
        self.log_offset = len(text)
        return found

    # ----------------------------------------------------------------- phases

    def prepare(self) -> None:
        """Tenants (namespace + VaultAuth + Vault role/policy) and N KV entries."""
        objects = [connection(self.bao.address)]
        vault = self.vault
        for tenant in self.tenants:
            objects += [namespace_object(tenant.namespace), vault_auth(tenant.namespace)]
            grant_tenant(vault, tenant.namespace, rotating=self.rotating)
            for _name, path in tenant.objects:
                vault.secrets.kv.v2.create_or_update_secret(
                    path,
                    {"username": "bench", "password": uuid.uuid4().hex},
                    mount_point="secret",
                )
        self.kubectl_apply(objects)
        namespaces = [tenant.namespace for tenant in self.tenants]

        def service_accounts() -> bool | Pending:  # the ServiceAccounts tenants log in as
            found = self.core.list_service_account_for_all_namespaces(
                field_selector="metadata.name=default", _request_timeout=REQUEST_TIMEOUT
            ).items
            missing = set(namespaces) - {sa.metadata.namespace for sa in found if sa.metadata}
            return not missing or Pending(f"missing in {sorted(missing)}")

        timed(service_accounts, 60, "the tenants' default ServiceAccounts")

    def vaultsecret_objects(self) -> list[dict[str, Any]]:
        objects = [
            vault_secret(tenant.namespace, name, path, refreshInterval=f"{self.refresh}s")
            for tenant in self.tenants
            for name, path in tenant.objects
        ]
        for obj in objects:
            obj["metadata"]["labels"] = {BENCH_LABEL: "true"}
        return objects

    def create(self, obj: dict[str, Any]) -> tuple[tuple[str, str], float]:
        meta = obj["metadata"]
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], "vaultsecrets", obj, _request_timeout=REQUEST_TIMEOUT
        )
        return (meta["namespace"], meta["name"]), time.monotonic()

    def initial_sync(self, result: SizeResult, timeout: float) -> None:
        """Create N VaultSecrets at once (CREATORS parallel API clients); time until synced."""
        objects = self.vaultsecret_objects()
        expected = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects}
        first_ready: dict[tuple[str, str], float] = {}
        before = self.sample()
        started = before.at
        with ThreadPoolExecutor(CREATORS) as pool:
            created = dict(pool.map(self.create, objects, timeout=timeout))
        result.create_s = time.monotonic() - started

        def check() -> bool | Pending:
            now = time.monotonic()
            for obj in self.vaultsecrets():
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if ready_is(obj, "True"):
                    first_ready.setdefault(key, now)
                else:
                    first_ready.pop(key, None)  # must be Ready at the end, not once
            present = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in self.secrets()}
            have = len(expected & present)
            done = have == len(expected) and expected <= first_ready.keys()
            return done or Pending(f"{have}/{len(expected)} Secrets, {len(first_ready)} Ready")

        timed(check, timeout, f"{self.size} Secrets and VaultSecrets Ready")
        after = self.sample()
        result.sync_s = after.at - started
        result.sync_cpu = after.since(before)
        latencies = [first_ready[key] - created[key] for key in expected]
        result.ready_p50_s = percentile(latencies, 0.5)
        result.ready_p95_s = percentile(latencies, 0.95)
        result.ready_max_s = max(latencies)
        result.logins_after_sync = total(after.metrics, "vaultsync_vault_logins_total")
        result.sync_failures = {
            reason: count
            for reason, count in by_label(after.metrics, "vaultsync_syncs_total", "reason").items()
            if reason != "Synced"
        }

    def refresh_window(self, result: SizeResult) -> None:
        """Two refresh cycles of nothing changing: what does the operator do?"""
        vs_before, secrets_before = versions(self.vaultsecrets()), versions(self.secrets())
        before = self.sample()
        time.sleep(2 * self.refresh + 2)
        after = self.sample()
        vs_after, secrets_after = versions(self.vaultsecrets()), versions(self.secrets())
        result.window_usage = after.since(before)
        result.window_s = result.window_usage[0]
        result.window_writes = after.delta(before, "vaultsync_secret_writes_total")
        result.window_syncs = after.delta(before, "vaultsync_syncs_total", kind="VaultSecret")
        reasons = by_label(after.metrics, "vaultsync_syncs_total", "reason")
        reasons.subtract(by_label(before.metrics, "vaultsync_syncs_total", "reason"))
        result.window_failures = {r: n for r, n in reasons.items() if n and r != "Synced"}
        count = after.delta(before, "vaultsync_sync_duration_seconds_count")
        seconds = after.delta(before, "vaultsync_sync_duration_seconds_sum")
        result.window_sync_mean_ms = 1000 * seconds / count if count else float("nan")
        result.window_logins = after.delta(before, "vaultsync_vault_logins_total")
        result.window_vs_rv_changes = sum(1 for k, v in vs_after.items() if vs_before.get(k) != v)
        result.window_secret_rv_changes = sum(
            1 for k, v in secrets_after.items() if secrets_before.get(k) != v
        )

    def change_latency(self, result: SizeResult, count: int) -> None:
        """Change `count` KV entries spread over the tenants; time until each Secret has it."""
        everything = [(t.namespace, n, p) for t in self.tenants for n, p in t.objects]
        step = max(1, len(everything) // count)
        chosen = everything[::step][:count]
        written: dict[tuple[str, str], tuple[float, str]] = {}
        vault = self.vault
        for namespace, name, path in chosen:
            value = uuid.uuid4().hex
            vault.secrets.kv.v2.create_or_update_secret(
                path, {"username": "bench", "password": value}, mount_point="secret"
            )
            written[(namespace, name)] = (time.monotonic(), value)
        latencies: dict[tuple[str, str], float] = {}

        def check() -> bool | Pending:
            for (namespace, name), (at, value) in written.items():
                if (namespace, name) not in latencies and (
                    self.secret_password(namespace, name) == value
                ):
                    latencies[(namespace, name)] = time.monotonic() - at
            done = len(latencies) == len(written)
            return done or Pending(f"{len(latencies)}/{len(written)} updated")

        timed(check, 3 * self.refresh + 60, "changed Secrets", interval=0.25)
        result.change_count = len(latencies)
        result.change_p50_s = statistics.median(latencies.values())
        result.change_max_s = max(latencies.values())

    def outage(self, result: SizeResult, timeout: float) -> None:
        """Seal Vault until every VaultSecret says Ready=False, then unseal: time to Ready."""
        before = versions(self.secrets())
        logins = self.metric("vaultsync_vault_logins_total")

        def all_ready(status: str) -> Callable[[], bool | Pending]:
            def check() -> bool | Pending:
                items = self.vaultsecrets()
                have = sum(1 for o in items if ready_is(o, status))
                return have == self.size or Pending(f"{have}/{self.size} Ready={status}")

            return check

        self.bao.seal()
        try:
            result.outage_to_false_s = timed(
                all_ready("False"), self.refresh + timeout, "all Ready=False with Vault sealed"
            )
            result.outage_secrets_untouched = versions(self.secrets()) == before
        finally:
            self.bao.unseal()
        result.outage_recovery_s = timed(all_ready("True"), timeout, "all Ready=True after unseal")
        result.outage_logins = self.metric("vaultsync_vault_logins_total") - logins


@dataclass
class SizeResult(Recorded):
    create_s: float | None = None
    sync_s: float | None = None
    sync_cpu: tuple[float, dict[str, float], float] | None = None
    sync_failures: dict[str, int] = field(default_factory=dict)
    ready_p50_s: float | None = None
    ready_p95_s: float | None = None
    ready_max_s: float | None = None
    logins_after_sync: float | None = None
    window_s: float | None = None
    window_writes: float | None = None
    window_syncs: float | None = None
    window_failures: dict[str, int] = field(default_factory=dict)
    window_sync_mean_ms: float | None = None
    window_logins: float | None = None
    window_vs_rv_changes: int | None = None
    window_secret_rv_changes: int | None = None
    window_usage: tuple[float, dict[str, float], float] | None = None
    change_count: int | None = None
    change_p50_s: float | None = None
    change_max_s: float | None = None
    outage_to_false_s: float | None = None
    outage_secrets_untouched: bool | None = None
    outage_recovery_s: float | None = None
    outage_logins: float | None = None


def run_size(
    root: Path, size: int, args: argparse.Namespace
) -> tuple[SizeResult, bool]:  # (result, ok)
    bench = Bench(root, size, args.namespaces, args.refresh)
    result = SizeResult(size, len(bench.tenants), args.refresh)

    def phases() -> None:
        bench.phase = "creating tenants and KV data"
        bench.prepare()
        bench.start_operator(result)
        bench.phase = "initial sync"
        say(f"N={size}: applying {size} VaultSecrets")
        bench.initial_sync(result, args.timeout)
        bench.record(result, "initial sync", "after sync")
        say(f"N={size}: synced in {result.sync_s:.1f}s; watching two refresh cycles")
        bench.phase = "no-op refresh window"
        time.sleep(3)
        bench.refresh_window(result)
        bench.record(result, "refresh window", "after refresh window")
        bench.phase = "change latency"
        bench.change_latency(result, args.changes)
        bench.record(result, "changes")
        if args.outage:
            bench.phase = "Vault outage"
            say(f"N={size}: sealing Vault")
            bench.outage(result, args.timeout)
            bench.record(result, "outage", "after outage")

    bench.scenario(result, f"N={size}", phases)
    return result, result.error is None
