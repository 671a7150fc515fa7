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
from functools import partial
from pathlib import Path
from typing import Any

import hvac
from kubernetes import client, config

from e2e.harness.bench import apiserver
from e2e.harness.bench.floor import Floor, FloorResult, Target
from e2e.harness.bench.procstats import (
    Memory,
    cpu_seconds,
    load_average,
    machine_busy_seconds,
    memory,
)
from e2e.harness.bench.progress import Progress
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
START_POLL = 0.5  # seconds between polls of the peers' objects (peers/measure.py)
CREATORS = 8  # parallel API clients creating the VaultSecrets
VAULT_REQUESTS = "vaultsync_vault_request_duration_seconds_count"  # by operation
Usage = tuple[float, dict[str, float], float]  # Sample.since: (seconds, CPU by process, other)


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

    def since(self, before: Sample) -> Usage:
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


def failures(metrics: Metrics) -> dict[str, int]:
    """Reconciles that did not end Synced, by reason."""
    reasons = by_label(metrics, "vaultsync_syncs_total", "reason")
    return {reason: count for reason, count in reasons.items() if reason != "Synced"}


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

    def __init__(
        self, root: Path, size: int, namespaces: int, refresh: int, source: Path | None = None
    ) -> None:
        """source: the `operator/` directory to run (another checkout's), this one's if None."""
        self.size = size
        self.refresh = refresh
        self.cp = ControlPlane(root / "cluster")
        self.bao = OpenBao(root / "openbao")
        self.operator = Operator(root / "operator", self.cp.kubeconfig, source=source)
        self.source = source
        self.tenants = [Tenant(f"bench-{i:02d}") for i in range(min(namespaces, size))]
        for i in range(size):
            tenant = self.tenants[i % len(self.tenants)]
            tenant.objects.append((f"s{i:04d}", f"{tenant.namespace}/s{i:04d}"))
        self.configuration: client.Configuration
        self.core: client.CoreV1Api
        self.custom: client.CustomObjectsApi
        self.log_offset = 0
        self.own: apiserver.Requests = Counter()  # the benchmark's own API requests

    # ----------------------------------------------------------------- stack

    @contextmanager
    def running(self) -> Iterator[None]:
        try:
            start_stack(self.cp, self.bao)
            if self.source is not None:  # the CRDs that operator was written against
                crds = self.source.parent / "crds"
                self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
            configuration = client.Configuration()
            config.load_kube_config(str(self.cp.kubeconfig), client_configuration=configuration)
            configuration.connection_pool_maxsize = CREATORS
            self.configuration = configuration
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

    def listed(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        """The benchmark's objects (labelled BENCH_LABEL) of a kind, counted as our own."""
        self.own[apiserver.request_key("LIST", plural)] += 1
        listed: Any = self.custom.list_cluster_custom_object(
            group,
            version,
            plural,
            label_selector=f"{BENCH_LABEL}=true",
            _request_timeout=REQUEST_TIMEOUT,
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def vaultsecrets(self) -> list[dict[str, Any]]:
        return self.listed(GROUP, VERSION, "vaultsecrets")

    def secrets(self, selector: str = MANAGED) -> list[dict[str, Any]]:
        """The Secrets with a label selector: by default those vaultsync manages."""
        self.own[apiserver.request_key("LIST", "secrets")] += 1
        response: Any = self.core.list_secret_for_all_namespaces(
            label_selector=selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def secret_password(self, namespace: str, name: str) -> str | None:
        self.own[apiserver.request_key("GET", "secrets")] += 1
        response: Any = self.core.read_namespaced_secret(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        data = json.loads(response.data).get("data") or {}
        return base64.b64decode(data["password"]).decode() if "password" in data else None

    def metric(self, name: str, **labels: str) -> float:
        return self.operator.metric(name, **labels)

    def api_requests(self) -> apiserver.Snapshot:
        return apiserver.Snapshot(apiserver.served(self.cp), self.own.copy())

    def sample(self) -> Sample:
        """Every process's CPU now, and the operator's metrics (none if it is not running)."""
        pids = {
            "operator": self.operator.pid,
            **self.cp.pids,
            "OpenBao": self.bao.pid,
            "bench": os.getpid(),
        }
        return Sample(
            at=time.monotonic(),
            metrics=[] if self.operator.pid is None else parse(self.operator.metrics()),
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

    def create_all(self, timeout: float) -> dict[tuple[str, str], float]:
        """Create the N VaultSecrets at once (CREATORS parallel API clients): when each was."""
        with ThreadPoolExecutor(CREATORS) as pool:
            return dict(pool.map(self.create, self.vaultsecret_objects(), timeout=timeout))

    def until_synced(
        self,
        expected: set[tuple[str, str]],
        timeout: float,
        interval: float = 1.0,
        first_ready: dict[tuple[str, str], float] | None = None,
    ) -> None:
        """Wait until every expected VaultSecret is Ready=True and every Secret exists,
        noting in first_ready when each was first seen Ready (and Ready since). The Secrets
        are listed only once every VaultSecret is Ready (the operator writes them first)."""
        ready = {} if first_ready is None else first_ready

        def check() -> bool | Pending:
            now = time.monotonic()
            for obj in self.vaultsecrets():
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if ready_is(obj, "True"):
                    ready.setdefault(key, now)
                else:
                    ready.pop(key, None)  # must be Ready at the end, not once
            if not expected <= ready.keys():
                return Pending(f"{len(expected & ready.keys())}/{len(expected)} Ready")
            present = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in self.secrets()}
            have = len(expected & present)
            return have == len(expected) or Pending(f"all Ready, {have}/{len(expected)} Secrets")

        timed(check, timeout, f"{self.size} Secrets and VaultSecrets Ready", interval=interval)

    def progress(self, expected: set[tuple[str, str]]) -> Progress:
        """A watch of the expected VaultSecrets and their Secrets (progress.py), its requests
        counted as the benchmark's own."""

        def counted(request: str) -> None:
            verb, resource = request.split(" ")
            self.own[apiserver.request_key(verb, resource)] += 1

        vaultsecrets = partial(
            self.custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            "vaultsecrets",
            label_selector=f"{BENCH_LABEL}=true",
            _request_timeout=REQUEST_TIMEOUT,
        )
        secrets = partial(
            self.core.list_secret_for_all_namespaces,
            label_selector=MANAGED,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return Progress(vaultsecrets, secrets, expected, counted)

    def initial_sync(self, result: SizeResult, timeout: float) -> None:
        """Create N VaultSecrets at once (CREATORS parallel API clients) with the operator
        running; time until synced (seen by a watch), then check it by listing."""
        expected = {
            (o["metadata"]["namespace"], o["metadata"]["name"]) for o in self.vaultsecret_objects()
        }
        with self.progress(expected) as progress:
            before = self.sample()
            started = before.at
            created = self.create_all(timeout)
            result.create_s = time.monotonic() - started
            done_at = progress.wait(timeout)
            after = self.sample()
        self.until_synced(expected, timeout)
        result.sync_s = done_at - started
        result.sync_cpu = after.since(before)
        first_ready = progress.first_ready
        latencies = [first_ready[key] - created[key] for key in expected]
        result.ready_p50_s = percentile(latencies, 0.5)
        result.ready_p95_s = percentile(latencies, 0.95)
        result.ready_max_s = max(latencies)
        result.logins_after_sync = total(after.metrics, "vaultsync_vault_logins_total")
        result.sync_failures = failures(after.metrics)

    def targets(self) -> list[Target]:
        """The VaultSecrets as they are now, for the floor."""
        return [
            Target(
                o["metadata"]["namespace"],
                o["metadata"]["name"],
                o["spec"]["path"],
                o["metadata"]["generation"],
            )
            for o in self.vaultsecrets()
        ]

    def precreated(self, result: SizeResult, timeout: float) -> None:
        """With the operator stopped: create the N VaultSecrets, measure the floor on them,
        then undo the floor."""
        self.phase = "creating VaultSecrets, operator stopped"
        started = time.monotonic()
        self.create_all(timeout)
        result.precreate_s = time.monotonic() - started
        targets = self.targets()
        self.phase = "floor"
        floor = Floor(self.configuration, self.bao)
        api_before, before = self.api_requests(), self.sample()
        result.floor = floor.run(targets)
        say(f"N={self.size}: floor {result.floor.seconds:.1f}s; undoing it")
        result.floor_usage = self.sample().since(before)
        result.floor_requests = self.api_requests().since(api_before)
        self.phase = "resetting after the floor"
        floor.reset(targets)

    def start_sync(self, result: SizeResult, timeout: float) -> None:
        """Start the operator on the N pre-created VaultSecrets; time from its process start
        until every Secret exists and every VaultSecret is Ready=True (seen by a watch), then
        check it by listing."""
        self.phase = "sync from the operator's start"
        expected = {(t.namespace, t.name) for t in self.targets()}
        with self.progress(expected) as progress:
            api_before, before = self.api_requests(), self.sample()
            say(f"N={self.size}: starting the operator")
            self.operator.start()
            done_at = progress.wait(timeout)
            after = self.sample()
        self.until_synced(expected, timeout)
        result.start_s = done_at - before.at
        result.start_usage = after.since(before)
        result.start_memory = memory(self.operator.pid)
        result.start_requests = self.api_requests().since(api_before)
        result.start_logins = total(after.metrics, "vaultsync_vault_logins_total")
        result.start_failures = failures(after.metrics)
        self.record(result, "sync from start")

    def refresh_window(self, result: SizeResult) -> None:
        """Two refresh cycles of nothing changing: what does the operator do?"""
        vs_before, secrets_before = versions(self.vaultsecrets()), versions(self.secrets())
        api_before, before = self.api_requests(), self.sample()
        time.sleep(2 * self.refresh + 2)
        after = self.sample()
        result.window_requests = self.api_requests().since(api_before)
        vault = by_label(after.metrics, VAULT_REQUESTS, "operation")
        vault.subtract(by_label(before.metrics, VAULT_REQUESTS, "operation"))
        result.window_vault_requests = {op: n for op, n in vault.items() if n}
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
    """(a) from_create: timed from the first create, operator running (a stack of its own);
    (b) start: objects pre-created, floor measured on them, timed from the operator's start."""

    precreate_s: float | None = None
    floor: FloorResult | None = None
    floor_usage: Usage | None = None
    floor_requests: apiserver.Requests = field(default_factory=Counter)
    start_s: float | None = None
    start_usage: Usage | None = None
    start_memory: Memory | None = None
    start_requests: apiserver.Requests = field(default_factory=Counter)
    start_logins: float | None = None
    start_failures: dict[str, int] = field(default_factory=dict)
    create_s: float | None = None
    sync_s: float | None = None
    sync_cpu: Usage | None = None
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
    window_usage: Usage | None = None
    window_requests: apiserver.Requests = field(default_factory=Counter)
    window_vault_requests: dict[str, int] = field(default_factory=dict)
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
    """(b) and the phases after it on one stack, then, with args.from_create, (a) on another."""
    bench = Bench(root / "start", size, args.namespaces, args.refresh, args.operator_source)
    result = SizeResult(size, len(bench.tenants), args.refresh)

    def phases() -> None:
        bench.phase = "creating tenants and KV data"
        bench.prepare()
        say(f"N={size}: creating {size} VaultSecrets with the operator stopped, then the floor")
        bench.precreated(result, args.timeout)
        bench.start_sync(result, args.timeout)
        say(f"N={size}: synced {result.start_s:.1f}s after the operator's start")
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
    if args.from_create and result.error is None:
        run_from_create(root / "from-create", result, args)
    return result, result.error is None


def run_from_create(root: Path, result: SizeResult, args: argparse.Namespace) -> None:
    """(a) on a fresh stack: the operator idle with the tenants, then the N VaultSecrets
    created at once; timed from the first create."""
    bench = Bench(root, result.size, args.namespaces, args.refresh, args.operator_source)

    def phases() -> None:
        bench.phase = "creating tenants and KV data"
        bench.prepare()
        bench.start_operator(result)
        bench.phase = "initial sync from the first create"
        say(f"N={result.size}: creating {result.size} VaultSecrets with the operator running")
        bench.initial_sync(result, args.timeout)
        bench.record(result, "sync from the first create", "after sync from the first create")
        say(f"N={result.size}: synced {result.sync_s:.1f}s after the first create")

    bench.scenario(result, f"N={result.size} from the first create", phases)
