"""Rotation with rolling restarts of N VaultSecrets on one fresh stack (RotationResult).

Each VaultSecret rotates the `password` of its own KV entry and names a Deployment of its own
in `rolloutRestartTargets` (0 replicas: with no kubelet, a rollout shows as a new ReplicaSet).
Its `rotation.interval` is the longest there is, so only `vaultsync.io/rotate` rotates: one new
value set on all N at once is the trigger. Measured: the time until every KV entry has a new
version, every Secret holds it and every Deployment rolled out; Vault writes (from KV metadata)
and rollouts (from ReplicaSets); then a quiet window — refreshes, an operator restart, another
refresh — in which nothing may change. Figures that break a guarantee are `violations`: the
bench fails on them.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import hvac

from e2e.harness.bench.measure import (
    BENCH_LABEL,
    CREATORS,
    REQUEST_TIMEOUT,
    Bench,
    Recorded,
    SizeResult,
    Usage,
    percentile,
    say,
    timed,
    versions,
)
from e2e.harness.bench.procstats import memory
from e2e.harness.conditions import condition
from e2e.harness.manifests import deployment
from e2e.harness.metrics import by_label
from e2e.harness.polling import Pending
from vaultsync import GROUP, VERSION
from vaultsync.secrets.reconciler import ROTATE_ANNOTATION

NEVER = "87600h"  # the longest rotation interval: in the bench only the annotation rotates
QUIET_REFRESHES = 3  # refresh intervals watched before the operator restart (one more after)
POLL = 0.25  # seconds between two looks at the Secrets and ReplicaSets while they change
SETTLE = 5.0  # seconds after the last rollout before Vault versions and rollouts are counted
COUNTED = {  # what the operator counts that must stay 0 in the quiet window
    "rotations": "vaultsync_rotations_total",
    "rollout restarts": "vaultsync_rollout_restarts_total",
    "Secret writes": "vaultsync_secret_writes_total",
}

Key = tuple[str, str]  # (namespace, name) of a VaultSecret, its Secret and its Deployment


@dataclass(frozen=True)
class Spread:
    """Seconds per object: median, 95th percentile, worst."""

    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        if not values:
            return None
        return cls(percentile(values, 0.5), percentile(values, 0.95), max(values))


@dataclass(frozen=True)
class State:
    """What nothing but a change in Vault may change (a refresh that finds the same data writes
    nothing: not the Secret, not the status, not the workload)."""

    kv: dict[Key, int]  # current KV version
    replicasets: Counter[Key]  # per Deployment
    secrets: dict[Key, str]  # resourceVersions
    vaultsecrets: dict[Key, str]
    deployments: dict[Key, str]  # what vaultsync may have written (ours_in)

    def changes(self, later: State) -> dict[str, int]:
        def changed(a: dict[Key, str], b: dict[Key, str]) -> int:
            return sum(1 for key in a.keys() | b.keys() if a.get(key) != b.get(key))

        return {
            "KV versions written": sum(later.kv.values()) - sum(self.kv.values()),
            "rollouts (new ReplicaSets)": sum(later.replicasets.values())
            - sum(self.replicasets.values()),
            "Secret resourceVersion changes": changed(self.secrets, later.secrets),
            "VaultSecret resourceVersion changes": changed(self.vaultsecrets, later.vaultsecrets),
            "Deployment writes by vaultsync": changed(self.deployments, later.deployments),
        }


@dataclass
class RotationResult(Recorded):
    setup: SizeResult | None = None  # the initial sync of the N VaultSecrets
    adopted_s: float | None = None  # first create → every Deployment adopted
    adoption_rollouts: int | None = None
    trigger_s: float | None = None  # setting the annotation on all N
    total_s: float | None = None  # first annotation → all rotated, synced, rolled out
    to_vault: Spread | None = None  # per object, from its own annotation
    to_secret: Spread | None = None
    to_patch: Spread | None = None  # vaultsync's part of a rollout: the pod template patched
    to_rollout: Spread | None = None
    to_all: Spread | None = None
    usage: Usage | None = None
    rotations: dict[str, int] = field(default_factory=dict)  # by result
    rotation_mean_ms: float | None = None
    restarts_counted: float | None = None
    kv_writes: int | None = None
    kv_writes_per_path: Counter[int] = field(default_factory=Counter)  # new versions → paths
    rollouts: int | None = None
    rollouts_per_deployment: Counter[int] = field(default_factory=Counter)  # → Deployments
    secrets_equal_vault: int | None = None
    quiet_s: float | None = None
    quiet_syncs: float | None = None
    quiet_usage: Usage | None = None
    resync_s: float | None = None  # stop → every VaultSecret reconciled by the new process
    restart_s: float | None = None
    restart_syncs: float | None = None
    restart_usage: Usage | None = None
    quiet_changes: dict[str, int] = field(default_factory=dict)
    quiet_counted: dict[str, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def per_object(found: Counter[int], what: str) -> str:
    """A Counter {count per object: objects} as "98 x 1, 2 x 0 <what>"."""
    return ", ".join(f"{objects} x {count}" for count, objects in sorted(found.items())) + what


def violations(r: RotationResult) -> list[str]:
    """What broke a guarantee: rollouts per change != 1, KV writes != N, anything changing in
    the quiet window."""
    n = r.size
    found = []
    if r.adoption_rollouts:
        found.append(f"adopting the Deployments rolled out {r.adoption_rollouts} (must be 0)")
    if r.kv_writes is not None and r.kv_writes_per_path != Counter({1: n}):
        found.append(
            f"{r.kv_writes} KV versions written for {n} rotations (must be {n}, one per secret: "
            + per_object(r.kv_writes_per_path, " new versions)")
        )
    if r.rollouts is not None and r.rollouts_per_deployment != Counter({1: n}):
        found.append(
            f"{r.rollouts} rollouts for {n} changes (must be exactly 1 per Deployment: "
            + per_object(r.rollouts_per_deployment, " new ReplicaSets)")
        )
    if r.secrets_equal_vault is not None and r.secrets_equal_vault != n:
        found.append(f"{r.secrets_equal_vault}/{n} Secrets equal to Vault after the rotation")
    if r.restarts_counted is not None and r.rotations.get("rotated") != n:
        found.append(f"the operator counted rotations {r.rotations} (must be {n} rotated)")
    if r.restarts_counted is not None and r.restarts_counted != n:
        found.append(f"the operator counted {r.restarts_counted:.0f} rollout restarts (not {n})")
    found += [
        f"quiet window (refreshes and an operator restart): {count} {what} (must be 0)"
        for what, count in r.quiet_changes.items()
        if count
    ]
    found += [
        f"quiet window: the operator counted {count:.0f} {what} (must be 0)"
        for what, count in r.quiet_counted.items()
        if count
    ]
    return found


def ours_in(deployment: dict[str, Any]) -> str:
    """A Deployment's generation (its spec) and the fields vaultsync's field manager holds,
    with their times: these change when vaultsync writes the Deployment, and not when
    kube-controller-manager updates its status (a resourceVersion change), which it may still
    do long after a rollout on a loaded machine."""
    ours = [
        m for m in deployment["metadata"].get("managedFields") or [] if m["manager"] == "vaultsync"
    ]
    return json.dumps([deployment["metadata"].get("generation"), ours], sort_keys=True)


def kv_versions(vault: hvac.Client, path: str) -> dict[int, float]:
    """Creation time (epoch seconds) of each version of a KV entry, from its metadata."""
    meta = vault.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    return {
        int(number): datetime.fromisoformat(version["created_time"]).timestamp()
        for number, version in meta["versions"].items()
    }


class RotationBench(Bench):
    """N rotating VaultSecrets, each restarting a Deployment of its own."""

    rotating = True

    @property
    def paths(self) -> dict[Key, str]:
        return {(t.namespace, name): path for t in self.tenants for name, path in t.objects}

    def vaultsecret_objects(self) -> list[dict[str, Any]]:
        objects = super().vaultsecret_objects()
        for obj in objects:
            obj["spec"]["rotation"] = {
                "interval": NEVER,
                "keys": [{"name": "password", "generate": {"length": 32}}],
            }
            target = {"kind": "Deployment", "name": obj["metadata"]["name"]}
            obj["spec"]["rolloutRestartTargets"] = [target]
        return objects

    def replicasets(self) -> Counter[Key]:
        """ReplicaSets per Deployment: 1 after its creation, one more for each rollout."""
        found: Counter[Key] = Counter()
        for rs in self.listed("apps", "v1", "replicasets"):
            for ref in rs["metadata"].get("ownerReferences") or []:
                if ref["kind"] == "Deployment":
                    found[(rs["metadata"]["namespace"], ref["name"])] += 1
        return found

    def templates(self) -> dict[Key, dict[str, str]]:
        """The pod-template annotations of the Deployments (where vaultsync's triggers are)."""
        found: dict[Key, dict[str, str]] = {}
        for d in self.listed("apps", "v1", "deployments"):
            template = d["spec"]["template"].get("metadata") or {}
            found[(d["metadata"]["namespace"], d["metadata"]["name"])] = (
                template.get("annotations") or {}
            )
        return found

    def secret_data(self) -> dict[Key, dict[str, str]]:
        """The decoded data of the VaultSecrets' Secrets (not of every Secret we manage)."""
        found = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in self.secrets()}
        return {
            key: {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
            for key, s in found.items()
            if key in self.paths
        }

    def state(self, vault: hvac.Client) -> State:
        return State(
            kv={key: max(kv_versions(vault, path)) for key, path in self.paths.items()},
            replicasets=self.replicasets(),
            secrets=versions(self.secrets()),
            vaultsecrets=versions(self.vaultsecrets()),
            deployments={
                (d["metadata"]["namespace"], d["metadata"]["name"]): ours_in(d)
                for d in self.listed("apps", "v1", "deployments")
            },
        )

    def annotate(self, value: str, key: Key) -> tuple[Key, float]:
        namespace, name = key
        patch = {"metadata": {"annotations": {ROTATE_ANNOTATION: value}}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "vaultsecrets", name, patch, _request_timeout=REQUEST_TIMEOUT
        )
        return key, time.monotonic()

    # ----------------------------------------------------------------- phases

    def deploy(self, timeout: float) -> None:
        """A Deployment per VaultSecret, each with its first ReplicaSet."""
        labels = {BENCH_LABEL: "true"}
        self.kubectl_apply([deployment(ns, name, labels) for ns, name in self.paths])

        def check() -> bool | Pending:
            have = sum(1 for count in self.replicasets().values() if count == 1)
            return have == self.size or Pending(f"{have}/{self.size} with a ReplicaSet")

        timed(check, timeout, f"{self.size} Deployments with their ReplicaSet")

    def adopt(self, result: RotationResult, timeout: float) -> None:
        """Create the VaultSecrets (Bench.initial_sync) and wait until every target is recorded
        (Restarted=True, UpToDate): a Deployment seen for the first time is not restarted."""
        result.setup = SizeResult(self.size, len(self.tenants), self.refresh)
        self.initial_sync(result.setup, timeout)

        def check() -> bool | Pending:
            found = [condition(o, "Restarted") for o in self.vaultsecrets()]
            have = sum(1 for c in found if c and (c["status"], c["reason"]) == ("True", "UpToDate"))
            return have == self.size or Pending(f"{have}/{self.size} Restarted=True")

        assert result.setup.sync_s is not None
        result.adopted_s = result.setup.sync_s + timed(check, timeout, "targets adopted")
        time.sleep(SETTLE)
        result.adoption_rollouts = sum(self.replicasets().values()) - self.size

    def rotate(self, result: RotationResult, timeout: float) -> State:
        """Annotate all N at once (CREATORS parallel API clients); time until every KV entry has
        a new version, every Secret holds it and every Deployment has a new ReplicaSet."""
        vault = self.vault
        start = self.state(vault)
        old, templates = self.secret_data(), self.templates()
        before = self.sample()
        to_monotonic = time.monotonic() - time.time()
        with ThreadPoolExecutor(CREATORS) as pool:
            value = f"bench-{uuid.uuid4().hex[:8]}"
            triggered = dict(pool.map(partial(self.annotate, value), self.paths, timeout=timeout))
        result.trigger_s = time.monotonic() - before.at
        secret_at: dict[Key, float] = {}
        patched_at: dict[Key, float] = {}
        rolled_at: dict[Key, float] = {}

        def check() -> bool | Pending:
            now = time.monotonic()
            for key, data in self.secret_data().items():
                if key in old and data.get("password") != old[key].get("password"):
                    secret_at.setdefault(key, now)
            for key, template in self.templates().items():
                if key in templates and template != templates[key]:
                    patched_at.setdefault(key, now)
            for key, count in self.replicasets().items():
                if count > start.replicasets[key]:
                    rolled_at.setdefault(key, now)
            done = len(secret_at) == len(patched_at) == len(rolled_at) == self.size
            return done or Pending(
                f"{len(secret_at)}/{self.size} Secrets changed, {len(patched_at)} Deployments "
                f"patched, {len(rolled_at)} rolled out"
            )

        timed(check, timeout, f"{self.size} rotations with restarts", interval=POLL)
        result.usage = self.sample().since(before)
        time.sleep(SETTLE)  # a second rollout or Vault write for the same change would show now
        settled = self.sample()
        end = self.state(vault)
        vault_at = {
            key: created + to_monotonic
            for key, path in self.paths.items()
            for number, created in kv_versions(vault, path).items()
            if number == start.kv[key] + 1
        }
        stages = (vault_at, secret_at, rolled_at)
        done = {key: max(stage[key] for stage in stages) for key in triggered if key in vault_at}
        result.total_s = max(done.values()) - before.at
        result.to_vault = Spread.of([vault_at[k] - triggered[k] for k in vault_at])
        result.to_secret = Spread.of([secret_at[k] - triggered[k] for k in secret_at])
        result.to_patch = Spread.of([patched_at[k] - triggered[k] for k in patched_at])
        result.to_rollout = Spread.of([rolled_at[k] - triggered[k] for k in rolled_at])
        result.to_all = Spread.of([done[k] - triggered[k] for k in done])

        result.kv_writes_per_path = Counter(end.kv[k] - start.kv[k] for k in self.paths)
        result.kv_writes = sum(end.kv.values()) - sum(start.kv.values())
        result.rollouts_per_deployment = Counter(
            end.replicasets[k] - start.replicasets[k] for k in self.paths
        )
        result.rollouts = sum(end.replicasets.values()) - sum(start.replicasets.values())
        rotations = by_label(settled.metrics, "vaultsync_rotations_total", "result")
        rotations.subtract(by_label(before.metrics, "vaultsync_rotations_total", "result"))
        result.rotations = {r: n for r, n in rotations.items() if n}
        count = settled.delta(before, "vaultsync_rotation_duration_seconds_count")
        seconds = settled.delta(before, "vaultsync_rotation_duration_seconds_sum")
        result.rotation_mean_ms = 1000 * seconds / count if count else None
        result.restarts_counted = settled.delta(before, "vaultsync_rollout_restarts_total")
        secrets = self.secret_data()
        result.secrets_equal_vault = 0
        for key, path in self.paths.items():
            read = vault.secrets.kv.v2.read_secret_version(
                path, mount_point="secret", raise_on_deleted_version=True
            )["data"]
            if secrets.get(key) == {k: str(v) for k, v in read["data"].items()}:
                result.secrets_equal_vault += 1
        return end

    def quiet(self, result: RotationResult, start: State, timeout: float) -> None:
        """Refreshes, then an operator restart and one more refresh, with nothing changing in
        Vault: nothing may be written, rotated or rolled out."""
        before = self.sample()
        time.sleep(QUIET_REFRESHES * self.refresh + 2)
        refreshed = self.sample()
        result.quiet_usage = refreshed.since(before)
        result.quiet_s = result.quiet_usage[0]
        result.quiet_syncs = refreshed.delta(before, "vaultsync_syncs_total", kind="VaultSecret")
        counted = {what: refreshed.delta(before, name) for what, name in COUNTED.items()}
        result.memory["after the refreshes"] = memory(self.operator.pid)

        # the new process counts from 0 and its CPU is all its own
        stopped = replace(refreshed, metrics=[], cpu={**refreshed.cpu, "operator": 0.0})
        self.operator.stop()
        self.operator.start()

        def resynced() -> bool | Pending:
            syncs = self.metric("vaultsync_syncs_total", kind="VaultSecret")
            return syncs >= self.size or Pending(f"{syncs:.0f}/{self.size} reconciles")

        timed(resynced, timeout, "every VaultSecret reconciled after the restart", 0.5)
        result.resync_s = time.monotonic() - stopped.at
        time.sleep(self.refresh + 2)
        after = self.sample()
        result.restart_usage = after.since(stopped)
        result.restart_s = result.restart_usage[0]
        result.restart_syncs = after.delta(stopped, "vaultsync_syncs_total", kind="VaultSecret")
        result.quiet_counted = {
            what: counted[what] + after.delta(stopped, name) for what, name in COUNTED.items()
        }
        result.memory["after the operator restart"] = memory(self.operator.pid)
        result.quiet_changes = start.changes(self.state(self.vault))


def run_rotation(root: Path, args: argparse.Namespace) -> tuple[RotationResult, bool]:
    """(result, ok): ok unless a phase failed or a guarantee was broken."""
    bench = RotationBench(root, args.rotations, args.namespaces, args.refresh, args.operator_source)
    result = RotationResult(args.rotations, len(bench.tenants), args.refresh)

    def phases() -> None:
        bench.phase = "creating tenants (allowed to rotate) and KV data"
        bench.prepare()
        bench.phase = "creating the Deployments"
        bench.deploy(args.timeout)
        bench.start_operator(result)
        bench.phase = "initial sync and adoption of the Deployments"
        say(f"rotation: applying {result.size} VaultSecrets with restart targets")
        bench.adopt(result, args.timeout)
        bench.record(result, "initial sync", "before the rotation")
        bench.phase = "rotation"
        say(f"rotation: rotating {result.size} VaultSecrets at once")
        end = bench.rotate(result, args.timeout)
        bench.record(result, "rotation", "after the rotation")
        bench.phase = "quiet window"
        say(f"rotation: done in {result.total_s:.1f}s; quiet window and operator restart")
        bench.quiet(result, end, args.timeout)
        bench.record(result, "quiet window")

    bench.scenario(result, "rotation", phases)
    result.violations = violations(result)
    return result, result.error is None and not result.violations
