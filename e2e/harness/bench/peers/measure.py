"""One stack, the same N objects for everyone: the floor, vaultsync and ESO at each
--concurrent, measured with the bench's own methods (e2e.harness.bench.measure.Bench).

Order on the stack: tenants and KV data (Bench.prepare), the tenants' SecretStores; the N
VaultSecrets created with the operator stopped, the floor on them and undone
(Bench.precreated); vaultsync started and timed (Bench.start_sync), its steady-state window
(Bench.refresh_window) and stopped. Then for each ESO setting: the tenants' SecretStores and
the N ExternalSecrets created with ESO stopped, ESO started and timed the same way (from its
process start until every target Secret exists and every ExternalSecret is Ready=True), a
steady-state window of the same length, ESO stopped, its SecretStores, ExternalSecrets and
Secrets deleted and their absence awaited, so that every setting starts from the same state
(SecretStores that no ESO has validated yet, as the VaultAuths are when vaultsync starts).

Vault requests at steady state are counted by OpenBao itself for vaultsync and ESO alike: a
file audit device is enabled for the window only (requests under `sys/` left out).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from e2e.harness import HarnessError
from e2e.harness.bench import apiserver
from e2e.harness.bench.measure import (
    BENCH_LABEL,
    CREATORS,
    REQUEST_TIMEOUT,
    START_POLL,
    Bench,
    Sample,
    SizeResult,
    Usage,
    say,
    versions,
)
from e2e.harness.bench.peers.eso import (
    API_VERSION,
    MANAGED_LABEL,
    TARGET_PREFIX,
    Eso,
    crd_files,
    external_secret,
    secret_store,
)
from e2e.harness.bench.procstats import Memory, cpu_seconds, memory
from e2e.harness.conditions import condition
from e2e.harness.openbao import audit_entries
from e2e.harness.polling import Pending, TimedOut, eventually

ESO_GROUP, ESO_VERSION_NAME = API_VERSION.split("/")
SETTLE = 3  # seconds between a sync and its steady-state window, as Bench's phases wait
AUDIT_DEVICE = "bench-peers"
QUIET = 3.0  # seconds without a request of anyone else: the API server has settled
QUIET_TIMEOUT = 240.0
KV_READ = "read secret/data/*"


def vault_requests(entries: list[dict[str, Any]]) -> Counter[str]:
    """Requests in a file audit device's log by "operation path" (KV paths as
    `secret/data/*`), the audit device's own `sys/` requests left out."""
    found: Counter[str] = Counter()
    for entry in entries:
        if entry.get("type") != "request":
            continue
        request = entry.get("request") or {}
        path = str(request.get("path", ""))
        if path.startswith("sys/"):
            continue
        if path.startswith("secret/data/"):
            path = "secret/data/*"
        found[f"{request.get('operation', '?')} {path}"] += 1
    return found


@dataclass
class Settled:
    """What the API server served while the benchmark waited for it to settle before a
    measured start (nothing of it is in any measurement). No operator runs then and the
    benchmark's own requests are taken out: these are the control plane's own clients'
    (kube-controller-manager runs with the same admin kubeconfig, so the API server's metrics
    cannot tell them apart by user)."""

    seconds: float
    quiet: bool
    requests: apiserver.Requests


@dataclass
class PeerRun:
    """One ESO setting on the stack: sync from its start, then its steady-state window."""

    concurrent: int
    error: str | None = None
    start_s: float | None = None
    usage: Usage | None = None
    memory: Memory | None = None
    requests: apiserver.Requests = field(default_factory=Counter)
    window_s: float | None = None
    window_usage: Usage | None = None
    window_requests: apiserver.Requests = field(default_factory=Counter)
    window_vault: Counter[str] = field(default_factory=Counter)
    window_es_rv_changes: int | None = None
    window_secret_rv_changes: int | None = None
    log_errors: Counter[str] = field(default_factory=Counter)
    settled: Settled | None = None

    @property
    def label(self) -> str:
        return f"ESO `--concurrent={self.concurrent}`"


@dataclass
class PeersResult:
    """base: the floor and vaultsync (Bench's SizeResult); eso: one run per setting."""

    base: SizeResult
    vaultsync_vault: Counter[str] = field(default_factory=Counter)
    eso: list[PeerRun] = field(default_factory=list)
    vaultsync_settled: Settled | None = None


def error_lines(text: str) -> Counter[str]:
    """ESO's error-level log lines (JSON, one per line) by message."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if '"level":"error"' in line:
            start = line.find('"msg":"')
            message = line[start + 7 :].split('"', 1)[0] if start >= 0 else line
            found[message[:160]] += 1
    return found


class PeerBench(Bench):
    """Bench's stack with ESO's CRDs, and ESO as a second operator to measure."""

    def __init__(self, root: Path, size: int, namespaces: int, refresh: int) -> None:
        super().__init__(root, size, namespaces, refresh)
        self.root = root
        self.eso: Eso | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        with super().running():
            try:
                self.phase = "installing ESO's CRDs"
                files = crd_files()
                self.cp.kubectl("apply", "--server-side", *(f"--filename={f}" for f in files))
                self.cp.kubectl(
                    "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"
                )
                yield
            finally:
                if self.eso is not None:
                    try:
                        self.eso.stop()
                    except Exception as exc:  # the rest is torn down by Bench
                        say(f"teardown: {exc}")

    def sample(self) -> Sample:
        """Bench's sample; while ESO runs, "operator" is the ESO process."""
        taken = super().sample()
        if self.eso is None or self.eso.pid is None:
            return taken
        return replace(taken, cpu={**taken.cpu, "operator": cpu_seconds(self.eso.pid)})

    def settle(self) -> Settled:
        """Wait until the API server has served no request of anyone but the benchmark for
        QUIET seconds (bounded by QUIET_TIMEOUT: then go on, saying so), so that what other
        clients still do about earlier phases (the garbage collector checking owners, say)
        does not land in the next measurement."""
        started = time.monotonic()
        first = last = self.api_requests()
        quiet_since = started

        def quiet() -> bool | Pending:
            nonlocal last, quiet_since
            now = self.api_requests()
            served = apiserver.counted(now.since(last))
            last = now
            if served:
                quiet_since = time.monotonic()
            waited = time.monotonic() - quiet_since
            return waited >= QUIET or Pending(f"{served} requests in the last poll")

        try:
            eventually(quiet, QUIET_TIMEOUT, "the API server to settle", interval=1.0)
            settled = True
        except TimedOut:
            say(f"the API server did not settle in {QUIET_TIMEOUT:.0f}s; measuring anyway")
            settled = False
        return Settled(time.monotonic() - started, settled, last.since(first))

    # ----------------------------------------------------------------- Vault audit

    @contextmanager
    def audited(self, label: str, into: Counter[str]) -> Iterator[None]:
        """A file audit device for the span; its requests by operation and path into `into`."""
        log = self.bao.workdir / f"audit-{label}.log"
        vault = self.vault
        vault.sys.enable_audit_device("file", path=AUDIT_DEVICE, options={"file_path": str(log)})
        try:
            yield
        finally:
            vault.sys.disable_audit_device(AUDIT_DEVICE)
            into.update(vault_requests(audit_entries(log)))

    # ----------------------------------------------------------------- ESO objects

    def prepare_stores(self) -> None:
        stores = [secret_store(t.namespace, self.bao.address) for t in self.tenants]
        for store in stores:
            store["metadata"]["labels"] = {BENCH_LABEL: "true"}
        self.kubectl_apply(stores)

    def stores(self) -> list[dict[str, Any]]:
        return self.listed(ESO_GROUP, ESO_VERSION_NAME, "secretstores")

    def externalsecrets(self) -> list[dict[str, Any]]:
        return self.listed(ESO_GROUP, ESO_VERSION_NAME, "externalsecrets")

    def eso_secrets(self) -> list[dict[str, Any]]:
        return self.secrets(MANAGED_LABEL)

    def create_externalsecret(self, obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj["metadata"]
        self.custom.create_namespaced_custom_object(
            ESO_GROUP,
            ESO_VERSION_NAME,
            meta["namespace"],
            "externalsecrets",
            obj,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return meta["namespace"], meta["name"]

    def create_externalsecrets(self, timeout: float) -> set[tuple[str, str]]:
        """The N ExternalSecrets (the VaultSecrets' names and paths), CREATORS at a time."""
        objects = [
            external_secret(t.namespace, name, path, self.refresh, {BENCH_LABEL: "true"})
            for t in self.tenants
            for name, path in t.objects
        ]
        with ThreadPoolExecutor(CREATORS) as pool:
            return set(pool.map(self.create_externalsecret, objects, timeout=timeout))

    def until_eso_synced(self, expected: set[tuple[str, str]], timeout: float, eso: Eso) -> None:
        """Every expected ExternalSecret Ready=True and every target Secret present (listed
        once all are Ready); ESO exiting ends the wait at once."""

        def check() -> bool | Pending:
            ready = {
                (o["metadata"]["namespace"], o["metadata"]["name"])
                for o in self.externalsecrets()
                if (condition(o, "Ready") or {}).get("status") == "True"
            }
            if not expected <= ready:
                return Pending(f"{len(expected & ready)}/{len(expected)} Ready")
            present = {
                (s["metadata"]["namespace"], s["metadata"]["name"].removeprefix(TARGET_PREFIX))
                for s in self.eso_secrets()
            }
            have = len(expected & present)
            return have == len(expected) or Pending(f"all Ready, {have}/{len(expected)} Secrets")

        eventually(
            check,
            timeout,
            f"{self.size} ESO Secrets and ExternalSecrets Ready",
            interval=START_POLL,
            watch=eso.process,
        )

    def remove_eso_objects(self) -> None:
        """With ESO stopped: delete the ExternalSecrets, ESO's Secrets and the SecretStores
        (a deletecollection per namespace and kind); wait until gone."""
        for tenant in self.tenants:
            for plural in ("externalsecrets", "secretstores"):
                self.custom.delete_collection_namespaced_custom_object(
                    ESO_GROUP,
                    ESO_VERSION_NAME,
                    tenant.namespace,
                    plural,
                    label_selector=f"{BENCH_LABEL}=true",
                    _request_timeout=REQUEST_TIMEOUT,
                )
            self.core.delete_collection_namespaced_secret(
                tenant.namespace, label_selector=MANAGED_LABEL, _request_timeout=REQUEST_TIMEOUT
            )

        def gone() -> bool | Pending:
            left = len(self.externalsecrets()), len(self.eso_secrets()), len(self.stores())
            return left == (0, 0, 0) or Pending(
                "left: {} ExternalSecrets, {} Secrets, {} SecretStores".format(*left)
            )

        eventually(gone, 300, "ESO's objects deleted", interval=1.0)

    # ----------------------------------------------------------------- phases

    def vaultsync(self, result: PeersResult, timeout: float) -> None:
        """The floor and vaultsync's sync from start (Bench), its window audited, stopped."""
        self.precreated(result.base, timeout)
        self.phase = "letting the API server settle"
        result.vaultsync_settled = self.settle()
        self.start_sync(result.base, timeout)
        say(f"N={self.size}: vaultsync synced {result.base.start_s:.1f}s after its start")
        self.phase = "vaultsync steady state"
        time.sleep(SETTLE)
        with self.audited("vaultsync", result.vaultsync_vault):
            self.refresh_window(result.base)
        self.record(result.base, "refresh window", "after refresh window")
        self.phase = "stopping vaultsync"
        self.operator.stop()

    def run_eso(self, run: PeerRun, timeout: float) -> None:
        """One ESO setting: create, start, time, steady-state window, stop, clean up."""
        self.phase = f"{run.label}: creating the SecretStores and ExternalSecrets, ESO stopped"
        self.prepare_stores()
        expected = self.create_externalsecrets(timeout)
        self.phase = f"{run.label}: letting the API server settle"
        run.settled = self.settle()
        eso = Eso(self.root / f"eso-{run.concurrent}", self.cp.kubeconfig, run.concurrent)
        self.eso = eso
        try:
            self.phase = f"{run.label}: sync from its start"
            api_before, before = self.api_requests(), self.sample()
            say(f"N={self.size}: starting {run.label}")
            eso.start()
            self.until_eso_synced(expected, timeout, eso)
            after = self.sample()
            run.start_s = after.at - before.at
            run.usage = after.since(before)
            run.memory = memory(eso.pid)
            run.requests = self.api_requests().since(api_before)
            say(f"N={self.size}: {run.label} synced {run.start_s:.1f}s after its start")
            self.phase = f"{run.label}: steady state"
            time.sleep(SETTLE)
            es_before, secrets_before = (
                versions(self.externalsecrets()),
                versions(self.eso_secrets()),
            )
            api_before, before = self.api_requests(), self.sample()
            with self.audited(f"eso-{run.concurrent}", run.window_vault):
                time.sleep(2 * self.refresh + 2)
                after = self.sample()
                run.window_requests = self.api_requests().since(api_before)
            run.window_usage = after.since(before)
            run.window_s = run.window_usage[0]
            es_after, secrets_after = versions(self.externalsecrets()), versions(self.eso_secrets())
            run.window_es_rv_changes = sum(1 for k, v in es_after.items() if es_before.get(k) != v)
            run.window_secret_rv_changes = sum(
                1 for k, v in secrets_after.items() if secrets_before.get(k) != v
            )
            # read before the stop: requests queued in its client's rate limiter end in errors
            run.log_errors = error_lines(eso.log_text())
        finally:
            with suppress(HarnessError):
                eso.stop()
            if run.window_s is None:
                run.log_errors = error_lines(eso.log_text())
            self.eso = None
        self.phase = f"{run.label}: deleting its objects"
        self.remove_eso_objects()


def run_peers(
    root: Path, size: int, namespaces: int, refresh: int, concurrency: list[int], timeout: float
) -> PeersResult:
    """All of it on one stack; a failed phase ends the run (named in base.error), the ESO
    settings not reached are listed with that error."""
    bench = PeerBench(root, size, namespaces, refresh)
    runs = [PeerRun(n) for n in concurrency]
    result = PeersResult(SizeResult(size, len(bench.tenants), refresh), eso=runs)

    def phases() -> None:
        bench.phase = "creating tenants and KV data"
        bench.prepare()
        say(f"N={size}: creating {size} VaultSecrets with the operator stopped, then the floor")
        bench.vaultsync(result, timeout)
        for run in runs:
            bench.run_eso(run, timeout)

    bench.scenario(result.base, f"N={size} with peers", phases)
    for run in runs:
        if run.start_s is None or run.window_s is None:
            run.error = run.error or result.base.error or "not reached"
    if result.base.error is not None:
        say(f"logs kept under {root}")
    return result
