"""`make bench`: speed and memory of the operator against the real local stack.

For each size N a fresh stack (control plane + OpenBao + the operator as a process, not
verbose) is started in a temporary directory; N VaultSecrets spread over a few tenant
namespaces (each its own VaultAuth, Vault role and policy: one Vault identity each) are
applied at once, and the run measures the initial sync, Vault logins, a window of no-op
refreshes (writes, syncs, CPU), the latency of KV changes, the operator's memory and,
unless --no-outage, recovery from a sealed Vault. The results go to a Markdown file.

    python -m e2e.bench [--sizes 100,500] [--out docs/benchmarks.md]

Benchmarks measure; tests assert. Every wait here is bounded, and the stack is torn down
whatever happens (its files stay in the temp dir when a size fails, for the logs).
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hvac
from kubernetes import client, config

from e2e.localcluster import (
    ETCD_VERSION,
    K8S_VERSION,
    ControlPlane,
    OpenBao,
    build,
    configure_kubernetes_auth,
)
from e2e.stack import OPERATOR_NAMESPACE, ROOT, Operator, grant_tenant, install_crds

GROUP, VERSION = "vaultsync.io", "v1alpha1"
MANAGED = "app.kubernetes.io/managed-by=vaultsync"
BENCH_LABEL = "vaultsync.io/bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT = 60
CREATORS = 8  # parallel API clients creating the VaultSecrets


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle/iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    hwm_mib: float

    def __str__(self) -> str:
        return f"{self.rss_mib:.0f} MiB (peak {self.hwm_mib:.0f} MiB)"


def memory(pid: int | None) -> Memory:
    if pid is None:
        return Memory(float("nan"), float("nan"))
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return Memory(values["VmRSS"], values["VmHWM"])


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.MULTILINE)
    bao = subprocess.run(
        [str(Path(sys.executable).parent / "bao"), "version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout.split()
    return {
        "CPU": model.group(1) if model else platform.processor() or "unknown",
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "memory": f"{int(total.group(1)) / 1024 / 1024:.1f} GiB" if total else "unknown",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "kopf": importlib.metadata.version("kopf"),
        "kubernetes (Python client)": importlib.metadata.version("kubernetes"),
        "hvac": importlib.metadata.version("hvac"),
        "OpenBao": bao[1] if len(bao) > 1 else "unknown",
        "Kubernetes (kube-apiserver)": f"v{K8S_VERSION}",
        "etcd": f"v{ETCD_VERSION}",
    }


# --------------------------------------------------------------------------- helpers


Metrics = dict[str, float]  # 'name{labels}' -> value, from one scrape


def parse_metrics(text: str) -> Metrics:
    samples: Metrics = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def total(samples: Metrics, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include labels."""
    return sum(
        value
        for series, value in samples.items()
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items())
    )


def by_label(samples: Metrics, name: str, label: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for series, value in samples.items():
        match = re.search(rf'{label}="([^"]*)"', series)
        if series.split("{")[0] == name and match:
            found[match.group(1)] += int(value)
    return found


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


class BenchTimeout(RuntimeError):
    pass


def wait_until(
    check: Callable[[], tuple[bool, str]], timeout: float, what: str, interval: float = 1.0
) -> float:
    """Poll check (returns done, progress) until done; the seconds it took."""
    started = time.monotonic()
    progress = ""
    while time.monotonic() - started < timeout:
        done, progress = check()
        if done:
            return time.monotonic() - started
        time.sleep(interval)
    raise BenchTimeout(f"timed out after {timeout:.0f}s waiting for {what} ({progress})")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ready_status(obj: dict[str, Any]) -> str | None:
    """ "True"/"False" of the Ready condition if it is about the current generation."""
    generation = obj["metadata"].get("generation")
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready" and condition.get("observedGeneration") == generation:
            return str(condition["status"])
    return None


def log_levels(text: str) -> Counter[str]:
    """WARNING/ERROR lines of the operator log (format: date time LEVEL logger: message)."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            message = re.sub(r"\d+", "N", parts[3])
            found[f"{parts[2]} {message[:160]}"] += 1
    return found


@dataclass
class Tenant:
    namespace: str
    objects: list[tuple[str, str]] = field(default_factory=list)  # (VaultSecret, KV path)


class Bench:
    """One size on one fresh stack."""

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
            self.cp.start()
            self.bao.start()
            configure_kubernetes_auth(self.bao, self.cp)
            install_crds(self.cp)
            self.cp.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
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
                    _say(f"teardown: {exc}")

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
            metrics=parse_metrics(self.operator.metrics()),
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
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "VaultConnection",
                "metadata": {"name": "default"},
                "spec": {"address": self.bao.address},
            }
        ]
        vault = self.vault
        for tenant in self.tenants:
            objects.append(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.namespace}}
            )
            objects.append(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "VaultAuth",
                    "metadata": {"name": "default", "namespace": tenant.namespace},
                    "spec": {"kubernetes": {"role": tenant.namespace, "serviceAccount": "default"}},
                }
            )
            grant_tenant(vault, tenant.namespace)
            for _name, path in tenant.objects:
                vault.secrets.kv.v2.create_or_update_secret(
                    path,
                    {"username": "bench", "password": uuid.uuid4().hex},
                    mount_point="secret",
                )
        self.kubectl_apply(objects)
        namespaces = [tenant.namespace for tenant in self.tenants]

        def service_accounts() -> tuple[bool, str]:  # the ServiceAccounts tenants log in as
            found = self.core.list_service_account_for_all_namespaces(
                field_selector="metadata.name=default", _request_timeout=REQUEST_TIMEOUT
            ).items
            missing = set(namespaces) - {sa.metadata.namespace for sa in found if sa.metadata}
            return not missing, f"missing in {sorted(missing)}"

        wait_until(service_accounts, 60, "the tenants' default ServiceAccounts")

    def vaultsecret_objects(self) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "VaultSecret",
                "metadata": {
                    "name": name,
                    "namespace": tenant.namespace,
                    "labels": {BENCH_LABEL: "true"},
                },
                "spec": {
                    "path": path,
                    "refreshInterval": f"{self.refresh}s",
                    "destination": {"name": name},
                },
            }
            for tenant in self.tenants
            for name, path in tenant.objects
        ]

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

        def check() -> tuple[bool, str]:
            now = time.monotonic()
            for obj in self.vaultsecrets():
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if ready_status(obj) == "True":
                    first_ready.setdefault(key, now)
                else:
                    first_ready.pop(key, None)  # must be Ready at the end, not once
            present = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in self.secrets()}
            have = len(expected & present)
            done = have == len(expected) and expected <= first_ready.keys()
            return done, f"{have}/{len(expected)} Secrets, {len(first_ready)} Ready"

        wait_until(check, timeout, f"{self.size} Secrets and VaultSecrets Ready")
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

        def versions(items: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
            return {
                (i["metadata"]["namespace"], i["metadata"]["name"]): i["metadata"][
                    "resourceVersion"
                ]
                for i in items
            }

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

        def check() -> tuple[bool, str]:
            for (namespace, name), (at, value) in written.items():
                if (namespace, name) not in latencies and (
                    self.secret_password(namespace, name) == value
                ):
                    latencies[(namespace, name)] = time.monotonic() - at
            return len(latencies) == len(written), f"{len(latencies)}/{len(written)} updated"

        wait_until(check, 3 * self.refresh + 60, "changed Secrets", interval=0.25)
        result.change_count = len(latencies)
        result.change_p50_s = statistics.median(latencies.values())
        result.change_max_s = max(latencies.values())

    def outage(self, result: SizeResult, timeout: float) -> None:
        """Seal Vault until every VaultSecret says Ready=False, then unseal: time to Ready."""
        before = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s["metadata"]["resourceVersion"]
            for s in self.secrets()
        }
        logins = self.metric("vaultsync_vault_logins_total")

        def all_ready(status: str) -> Callable[[], tuple[bool, str]]:
            def check() -> tuple[bool, str]:
                items = self.vaultsecrets()
                have = sum(1 for o in items if ready_status(o) == status)
                return have == self.size, f"{have}/{self.size} Ready={status}"

            return check

        self.bao.seal()
        try:
            result.outage_to_false_s = wait_until(
                all_ready("False"), self.refresh + timeout, "all Ready=False with Vault sealed"
            )
            after = {
                (s["metadata"]["namespace"], s["metadata"]["name"]): s["metadata"][
                    "resourceVersion"
                ]
                for s in self.secrets()
            }
            result.outage_secrets_untouched = after == before
        finally:
            self.bao.unseal()
        result.outage_recovery_s = wait_until(
            all_ready("True"), timeout, "all Ready=True after unseal"
        )
        result.outage_logins = self.metric("vaultsync_vault_logins_total") - logins


@dataclass
class SizeResult:
    size: int
    identities: int
    refresh: int
    load_before: str = ""
    error: str | None = None
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
    memory: dict[str, Memory] = field(default_factory=dict)
    outage_to_false_s: float | None = None
    outage_secrets_untouched: bool | None = None
    outage_recovery_s: float | None = None
    outage_logins: float | None = None
    log_warnings: dict[str, Counter[str]] = field(default_factory=dict)


def run_size(
    root: Path, size: int, args: argparse.Namespace
) -> tuple[SizeResult, bool]:  # (result, ok)
    bench = Bench(root, size, args.namespaces, args.refresh)
    result = SizeResult(size, len(bench.tenants), args.refresh)
    result.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    phase = "starting the stack"
    try:
        with bench.running():
            phase = "creating tenants and KV data"
            bench.prepare()
            phase = "starting the operator"
            bench.operator.start()
            time.sleep(5)  # let its watches settle: idle means "started, nothing to do"
            result.memory["idle"] = memory(bench.operator.pid)
            result.log_warnings["startup"] = bench.new_log_warnings()
            phase = "initial sync"
            _say(f"N={size}: applying {size} VaultSecrets")
            bench.initial_sync(result, args.timeout)
            result.memory["after sync"] = memory(bench.operator.pid)
            result.log_warnings["initial sync"] = bench.new_log_warnings()
            _say(f"N={size}: synced in {result.sync_s:.1f}s; watching two refresh cycles")
            phase = "no-op refresh window"
            time.sleep(3)
            bench.refresh_window(result)
            result.memory["after refresh window"] = memory(bench.operator.pid)
            result.log_warnings["refresh window"] = bench.new_log_warnings()
            phase = "change latency"
            bench.change_latency(result, args.changes)
            result.log_warnings["changes"] = bench.new_log_warnings()
            if args.outage:
                phase = "Vault outage"
                _say(f"N={size}: sealing Vault")
                bench.outage(result, args.timeout)
                result.memory["after outage"] = memory(bench.operator.pid)
                result.log_warnings["outage"] = bench.new_log_warnings()
    except Exception as exc:
        result.error = f"{phase}: {exc}"
        _say(f"N={size} failed during {phase}:\n{traceback.format_exc()}")
        _say(f"operator log kept at {bench.operator.log}")
        return result, False
    return result, True


# --------------------------------------------------------------------------- report


def _s(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def _n(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _reasons(found: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(found.items())) or "0"


def _cpu(usage: tuple[float, dict[str, float], float] | None) -> list[tuple[str, str]]:
    if usage is None:
        return []
    seconds, cpu, other = usage
    return [
        (
            "  operator CPU (utime+stime)",
            f"{cpu['operator']:.1f} s = {100 * cpu['operator'] / seconds:.0f}% of a core",
        ),
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


def table(r: SizeResult) -> str:
    rows: list[tuple[str, str]] = [
        ("VaultSecrets / namespaces = Vault identities", f"{r.size} / {r.identities}"),
        (
            f"create the N VaultSecrets ({CREATORS} parallel API clients)",
            _s(r.create_s),
        ),
        (
            "**initial sync**: first create → every Secret exists and every VaultSecret Ready=True",
            _s(r.sync_s),
        ),
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
    for phase, found in r.log_warnings.items():
        rows.append((f"operator log WARNING/ERROR lines ({phase})", str(sum(found.values()))))
    rows.append(("load average (1/5/15 min) before the stack started", r.load_before))
    lines = ["| measurement | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    if r.error:
        lines.append(f"\n**Did not complete** — {r.error}")
    notable = Counter[str]()
    for found in r.log_warnings.values():
        notable.update(found)
    if notable:
        lines.append("\nOperator log warnings/errors (digits replaced by N):\n")
        lines += [f"- {count}x `{message}`" for message, count in notable.most_common(8)]
    return "\n".join(lines)


def interpretation(results: list[SizeResult]) -> str:
    """Plain statements of what was measured; nothing extrapolated."""
    done = [r for r in results if r.sync_s is not None]
    sentences: list[str] = []
    if done:
        sentences.append(
            "Initial sync: "
            + ", ".join(
                f"{r.size} objects in {r.sync_s:.0f} s ({r.size / r.sync_s:.1f}/s)"
                for r in done
                if r.sync_s
            )
            + "."
        )
        logins = [r for r in done if r.logins_after_sync is not None]
        if logins and all(r.logins_after_sync == r.identities for r in logins):
            sentences.append(
                "Vault logins equalled the number of identities at every size: one login per "
                "identity, reused."
            )
        elif logins:
            sentences.append(
                "Vault logins after the sync: "
                + ", ".join(
                    f"{r.logins_after_sync:.0f} for {r.identities} identities" for r in logins
                )
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
            f"{100 * cpu['operator'] / seconds:.0f}% of a core"
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
    loads = [
        usage[2] / usage[0]
        for r in results
        for usage in (r.sync_cpu, r.window_usage)
        if usage is not None and usage[0]
    ]
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


def report(results: list[SizeResult], args: argparse.Namespace, wall_s: float) -> str:
    facts = machine()
    command = "python -m e2e.bench " + " ".join(
        a if " " not in a else repr(a) for a in sys.argv[1:]
    )
    parts = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`e2e/bench.py`); do not edit by hand. Each size runs on a "
        "fresh local stack — etcd + kube-apiserver + kube-controller-manager, one OpenBao "
        "(raft storage, not dev mode), and the operator as one process (`vaultsync run`, not "
        "verbose, default `VAULTSYNC_WORKERS`; backoff 1-5 s as set by `e2e.stack.Operator`). "
        "All of it, and the benchmark itself, share the machine below. VaultSecrets are "
        f"spread over {args.namespaces} namespaces, each with its own VaultAuth, Vault role "
        "and policy (one Vault identity each); each copies a two-key KV v2 entry into an "
        "Opaque Secret.",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command.strip()}` (wall time {wall_s / 60:.1f} min)",
        *(f"- {key}: {value}" for key, value in facts.items()),
        "",
        "## Results",
        "",
        interpretation(results),
        "",
    ]
    for r in results:
        parts += [f"### N = {r.size}", "", table(r), ""]
    parts += [
        "## What is measured",
        "",
        f"- *initial sync*: N VaultSecrets created through the API by {CREATORS} threads at "
        "once; from the first create until every destination Secret exists and every "
        "VaultSecret has Ready=True for its generation (polled once a second, so per-object "
        "times are +-1 s).",
        "- *no-op refresh window*: 2 x refreshInterval + 2 s with nothing changing in Vault; "
        "deltas of the operator's Prometheus counters, of resourceVersions of all VaultSecrets "
        "and Secrets, and of utime+stime from `/proc/<pid>/stat`.",
        "- *change latency*: KV entries rewritten one after another; each is timed from its own "
        "write to the moment its Secret holds the new value (polled every 0.25 s). Bounded "
        "by the refreshInterval, since a refresh is what picks a change up.",
        "- *memory*: VmRSS and VmHWM from `/proc/<pid>/status` of the operator process; "
        "*idle* is 5 s after start with the tenants' VaultAuths present and no VaultSecrets.",
        "- *Vault sealed*: `sys/seal`, wait for every VaultSecret to report Ready=False, "
        "unseal, wait for every one to be Ready=True again.",
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,500", help="comma-separated VaultSecret counts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--namespaces", type=int, default=10, help="tenants = Vault identities")
    parser.add_argument("--refresh", type=int, default=15, help="refreshInterval, seconds")
    parser.add_argument("--changes", type=int, default=10, help="KV entries changed")
    parser.add_argument(
        "--timeout", type=float, default=900, help="bound of each wait for all objects (s)"
    )
    parser.add_argument("--no-outage", dest="outage", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, through every teardown below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    build()
    tmp = Path(tempfile.mkdtemp(prefix="vaultsync-bench-"))
    results: list[SizeResult] = []
    ok = True
    try:
        for size in sizes:
            result, size_ok = run_size(tmp / f"n{size}", size, args)
            results.append(result)
            ok = ok and size_ok
            if size_ok and not args.keep:
                shutil.rmtree(tmp / f"n{size}", ignore_errors=True)
            print(f"\n### N = {size}\n\n{table(result)}\n", flush=True)
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _say(f"stack files (logs) kept in {tmp}")
    text = report(results, args, time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    _say(f"wrote {args.out} in {(time.monotonic() - started) / 60:.1f} min")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
