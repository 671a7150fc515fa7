"""Three sharded replicas against one, on one fresh stack (ShardingResult).

N VaultSecrets over NAMESPACES tenants are created with the operator stopped. One replica in
sharded mode (`vaultsync run --shards SHARDS`, identity r0) is timed from its start until
every Secret exists and every VaultSecret is Ready, then watched over a no-op refresh window
(Bench.start_sync and Bench.refresh_window, as in the sizes scenario). It is stopped, the
Secrets are deleted, every status is put back to a new object's and any finalizer taken
off (the objects as created); then three replicas (r0, r1, r2) start together on the same
objects and are timed the same way, each with its own CPU, peak RSS, syncs, the shards it
holds and the objects it reconciles; a refresh window gives the load split. Then the
replica holding the most shards is killed (SIGKILL) and the KV entries of its namespaces
are rewritten at once: timed until every shard Lease is held by a live replica and until
every one of its Secrets holds the new value; the same for a clean stop (SIGTERM) of another
replica. Who holds which Lease is polled all along (LeaseHolders).
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes import client

from e2e.harness.bench import apiserver
from e2e.harness.bench.floor import NEW_STATUS, Target, parallel
from e2e.harness.bench.measure import (
    CREATORS,
    MANAGED,
    REQUEST_TIMEOUT,
    Bench,
    Recorded,
    Sample,
    SizeResult,
    Usage,
    log_levels,
    say,
    timed,
)
from e2e.harness.bench.procstats import Memory, cpu_seconds, memory
from e2e.harness.conditions import ready_is
from e2e.harness.metrics import Metrics, by_label, parse, total
from e2e.harness.polling import Pending, TimedOut, eventually
from e2e.harness.stack import OPERATOR_NAMESPACE, Operator
from vaultsync import GROUP, VERSION
from vaultsync.runtime.sharding import LEADER, shard_names, shard_of

SHARDS = 16
DURATION = 15  # seconds: --lease-duration
NAMESPACES = 30  # so that the namespaces spread over the shards
REPLICAS = ("r0", "r1", "r2")
LEASE_GROUP = "vaultsync"  # `vaultsync run --lease-group` by default
HOLDERS_POLL = 0.2  # seconds between two listings of the Leases
SECRETS_POLL = 0.5  # seconds between two listings of the Secrets while waiting for new values
Key = tuple[str, str]  # (namespace, name) of a VaultSecret and its Secret
Holders = dict[str, str]  # who holds the leader and each shard ("" for nobody)


@dataclass(frozen=True)
class Share:
    """One replica at one moment: what it holds and reconciles."""

    shards: int  # shard Leases it holds (`vaultsync_shard_held`, the leader not counted)
    leader: bool
    objects: int  # VaultSecrets it reconciles (`vaultsync_objects`)
    expected: int  # VaultSecrets of the namespaces whose shard it holds, by the Leases


@dataclass(frozen=True)
class Load:
    """One replica over a span: its CPU, syncs, Secret writes and shard changes."""

    cpu_s: float
    syncs: float
    writes: float
    changes: dict[str, int]  # `vaultsync_shard_changes_total` by change


@dataclass(frozen=True)
class Moment:
    """The stack's sample (each replica's CPU under its name) and each live replica's
    metrics."""

    sample: Sample
    metrics: dict[str, Metrics]

    def load(self, before: Moment, name: str) -> Load:
        metrics, earlier = self.metrics.get(name, []), before.metrics.get(name, [])

        def delta(metric: str, **labels: str) -> float:
            return total(metrics, metric, **labels) - total(earlier, metric, **labels)

        changes = by_label(metrics, "vaultsync_shard_changes_total", "change")
        changes.subtract(by_label(earlier, "vaultsync_shard_changes_total", "change"))
        return Load(
            cpu_s=self.sample.cpu[name] - before.sample.cpu.get(name, 0.0),
            syncs=delta("vaultsync_syncs_total", kind="VaultSecret"),
            writes=delta("vaultsync_secret_writes_total"),
            changes={change: n for change, n in changes.items() if n},
        )


@dataclass(frozen=True)
class Move:
    """A replica gone (killed or stopped) and who took its work, timed from its end."""

    replica: str
    how: str  # "SIGKILL" or "SIGTERM"
    shards: int
    leader: bool
    namespaces: int
    objects: int  # its VaultSecrets, whose KV entries were rewritten right after its end
    rewrite_s: float  # writing those KV entries
    held_s: float  # → every shard Lease and the leader held by a live replica
    synced_s: float  # → every one of its Secrets holds the value written
    exit_s: float | None = None  # SIGTERM → the process exited
    shares: dict[str, Share] = field(default_factory=dict)  # the live replicas afterwards


@dataclass
class ShardingResult(Recorded):
    shards: int = SHARDS
    duration: float = DURATION
    namespaces_per_shard: Counter[int] = field(default_factory=Counter)  # {namespaces: shards}
    one: SizeResult | None = None  # one replica: Bench.start_sync and Bench.refresh_window
    one_syncs: float | None = None  # its syncs when every object was synced
    three_s: float | None = None  # the replicas' start → every Secret and Ready
    settled_s: float | None = None  # the replicas' start → every replica holds its share
    three_usage: Usage | None = None
    three_requests: apiserver.Requests = field(default_factory=Counter)
    three_load: dict[str, Load] = field(default_factory=dict)
    three_memory: dict[str, Memory] = field(default_factory=dict)
    three_shares: dict[str, Share] = field(default_factory=dict)
    window_s: float | None = None
    window_usage: Usage | None = None
    window_requests: apiserver.Requests = field(default_factory=Counter)
    window_load: dict[str, Load] = field(default_factory=dict)
    window_shares: dict[str, Share] = field(default_factory=dict)
    window_memory: dict[str, Memory] = field(default_factory=dict)
    takeover: Move | None = None
    handover: Move | None = None

    def strays(self) -> list[str]:
        """Where a replica reconciled other objects than those of the shards it held, once
        they had settled (at the end of the start, shards may still be moving)."""
        moments = {
            "after the refresh window": self.window_shares,
            **{f"after the {m.how} of {m.replica}": m.shares for m in self.moves()},
        }
        return [
            f"{when}: {name} reconciles {share.objects} VaultSecrets, its shards hold "
            f"{share.expected}"
            for when, shares in moments.items()
            for name, share in shares.items()
            if share.objects != share.expected
        ]

    def moves(self) -> list[Move]:
        return [m for m in (self.takeover, self.handover) if m is not None]


class LeaseHolders:
    """Who holds the leader and each shard Lease, polled every HOLDERS_POLL s from a thread
    of its own: each change with the moment it was first seen."""

    def __init__(self, api: client.ApiClient, own: apiserver.Requests) -> None:
        self.api = client.CoordinationV1Api(api)
        self.own = own  # the benchmark's own requests, where these are counted
        self.seen: list[tuple[float, Holders]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease holders", daemon=True)

    def now(self) -> Holders:
        self.own[apiserver.request_key("LIST", "leases")] += 1
        response: Any = self.api.list_namespaced_lease(
            OPERATOR_NAMESPACE, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        prefix = f"{LEASE_GROUP}-"
        found = {item: "" for item in (LEADER, *shard_names(SHARDS))}
        for lease in json.loads(response.data)["items"]:
            item = lease["metadata"]["name"].removeprefix(prefix)
            if item in found:
                found[item] = (lease.get("spec") or {}).get("holderIdentity") or ""
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                holders = self.now()
            except Exception as exc:  # a slow API server: the next poll will tell
                say(f"sharding: listing the Leases: {exc}")
            else:
                if not self.seen or self.seen[-1][1] != holders:
                    self.seen.append((time.monotonic(), holders))
            self._stop.wait(HOLDERS_POLL)

    def __enter__(self) -> LeaseHolders:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT)

    def first(self, since: float, holds: Callable[[Holders], bool]) -> float | None:
        """The first moment from since on when holds(holders) was true, None if not yet."""
        seen = list(self.seen)
        before = [i for i, (at, _) in enumerate(seen) if at <= since]
        start = before[-1] if before else 0
        for at, holders in seen[start:]:
            if holds(holders):
                return max(at, since)
        return None

    def wait(self, since: float, holds: Callable[[Holders], bool], what: str) -> float:
        """Seconds from since to the first moment holds(holders) was true (waiting for it)."""
        at = eventually(lambda: self.first(since, holds), 6 * DURATION, what, interval=0.2)
        return at - since


def held_by(alive: set[str]) -> Callable[[Holders], bool]:
    return lambda holders: all(holder in alive for holder in holders.values())


def balanced(alive: set[str]) -> Callable[[Holders], bool]:
    """Held by the live replicas, each with SHARDS // len(alive) shards or one more."""
    low = SHARDS // len(alive)

    def holds(holders: Holders) -> bool:
        split = Counter(h for item, h in holders.items() if item != LEADER)
        return held_by(alive)(holders) and all(low <= split[a] <= low + 1 for a in alive)

    return holds


class ShardingBench(Bench):
    """One replica, then three, on the same N pre-created VaultSecrets."""

    def __init__(self, root: Path, size: int, refresh: int, source: Path | None = None) -> None:
        super().__init__(root, size, NAMESPACES, refresh, source)
        self.operator = self.replica(root / "one", "r0")
        self.replicas = {name: self.replica(root / name, name) for name in REPLICAS}
        self.alive: set[str] = set()
        self.holders: LeaseHolders

    def replica(self, workdir: Path, identity: str) -> Operator:
        args = (f"--shards={SHARDS}", f"--identity={identity}", f"--lease-duration={DURATION}")
        return Operator(workdir, self.cp.kubeconfig, source=self.source, args=args)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Bench.running, the Leases polled meanwhile and the replicas stopped first."""
        with super().running():
            try:
                with LeaseHolders(client.ApiClient(self.configuration), self.own) as self.holders:
                    yield
            finally:
                for operator in self.replicas.values():
                    operator.stop()

    # ----------------------------------------------------------------- reading

    def keys_of(self, namespaces: set[str]) -> list[tuple[str, str, str]]:
        """(namespace, name, KV path) of the VaultSecrets in these namespaces."""
        return [
            (t.namespace, name, path)
            for t in self.tenants
            if t.namespace in namespaces
            for name, path in t.objects
        ]

    def namespaces_of(self, replica: str, holders: Holders) -> set[str]:
        return {
            t.namespace
            for t in self.tenants
            if holders.get(shard_of(t.namespace, SHARDS)) == replica
        }

    def moment(self) -> Moment:
        """Bench.sample with each replica's CPU under its name, and each live one's metrics."""
        base = self.sample()  # its "operator" is the single replica, stopped by now
        cpu = {name: v for name, v in base.cpu.items() if name != "operator"}
        cpu.update({name: cpu_seconds(op.pid) for name, op in self.replicas.items()})
        metrics = {
            name: parse(op.metrics()) for name, op in self.replicas.items() if name in self.alive
        }
        return Moment(replace(base, cpu=cpu), metrics)

    def shares(self, at: Moment) -> dict[str, Share]:
        holders = self.holders.now()
        found = {}
        for name in sorted(self.alive):
            held = by_label(at.metrics[name], "vaultsync_shard_held", "shard")
            found[name] = Share(
                shards=sum(n for item, n in held.items() if item != LEADER),
                leader=held.get(LEADER, 0) == 1,
                objects=int(total(at.metrics[name], "vaultsync_objects", kind="VaultSecret")),
                expected=len(self.keys_of(self.namespaces_of(name, holders))),
            )
        return found

    def unsynced(self) -> str:
        """Which namespaces have VaultSecrets not Ready, their shard and its holder."""
        holders = self.holders.now()
        found = Counter(
            o["metadata"]["namespace"] for o in self.vaultsecrets() if not ready_is(o, "True")
        )
        return "not Ready: " + ", ".join(
            f"{n} in {ns} ({shard_of(ns, SHARDS)}, held by {holders[shard_of(ns, SHARDS)]!r})"
            for ns, n in sorted(found.items())
        )

    # ----------------------------------------------------------------- phases

    def reset(self) -> None:
        """With every replica stopped: delete the tenants' Secrets, give every VaultSecret a
        new object's status again (as the floor's reset does) and take any finalizer off,
        so that the objects are as they were created; wait until all of it shows."""
        for tenant in self.tenants:
            self.core.delete_collection_namespaced_secret(
                tenant.namespace, label_selector=MANAGED, _request_timeout=REQUEST_TIMEOUT
            )
        status = [{"op": "replace", "path": "/status", "value": NEW_STATUS}]
        unfinalized = {"metadata": {"finalizers": None}}

        def patch(target: Target) -> None:
            where = (GROUP, VERSION, target.namespace, "vaultsecrets", target.name)
            self.custom.patch_namespaced_custom_object_status(
                *where,
                status,
                _content_type="application/json-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
            self.custom.patch_namespaced_custom_object(
                *where,
                unfinalized,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )

        parallel(patch, self.targets())
        namespaces = {tenant.namespace for tenant in self.tenants}

        def undone() -> bool | Pending:  # the operator's own Secret (its HMAC key) stays
            left = sum(1 for s in self.secrets() if s["metadata"]["namespace"] in namespaces)
            changed = sum(
                1
                for o in self.vaultsecrets()
                if o.get("status") != NEW_STATUS or o["metadata"].get("finalizers")
            )
            return (left == 0 and changed == 0) or Pending(
                f"{left} Secrets left, {changed} VaultSecrets not new"
            )

        timed(undone, REQUEST_TIMEOUT, "the Secrets gone and the VaultSecrets new")
        marks = {
            key
            for o in self.vaultsecrets()
            for key in o["metadata"].get("annotations") or {}
            if key.startswith(GROUP)
        }
        if marks:
            say(f"sharding: annotations left on the VaultSecrets after the reset: {marks}")

    def one(self, result: ShardingResult, timeout: float) -> None:
        """One replica from its start, then a refresh window; stopped and undone after."""
        one = result.one = SizeResult(self.size, len(self.tenants), self.refresh)
        self.start_sync(one, timeout)
        result.one_syncs = self.metric("vaultsync_syncs_total", kind="VaultSecret")
        say(f"sharding: one replica synced {one.start_s:.1f}s after its start")
        self.phase = "one replica: refresh window"
        time.sleep(3)
        self.refresh_window(one)
        self.record(one, "refresh window", "after refresh window")
        result.log_warnings.update({f"one replica, {k}": v for k, v in one.log_warnings.items()})
        self.phase = "one replica: stop and reset"
        self.operator.stop()
        self.reset()

    def three(self, result: ShardingResult, timeout: float) -> None:
        """Three replicas started together on the reset objects: time until synced, each
        one's load and share; then until each holds its share of the shards."""
        self.phase = "three replicas from their start"
        expected = {(t.namespace, t.name) for t in self.targets()}
        with self.progress(expected) as progress:
            api_before, before = self.api_requests(), self.moment()
            say("sharding: starting three replicas")
            for operator in self.replicas.values():
                operator.start(wait=False)
            self.alive = set(REPLICAS)
            try:
                done_at = progress.wait(timeout)
            except TimedOut as exc:
                raise TimedOut(f"{exc}; {self.unsynced()}") from None
            for operator in self.replicas.values():  # up long since; this catches a crash
                eventually(operator.metrics, 60, "the replica's metrics", retry_on=(OSError,))
            after = self.moment()
        self.until_synced(expected, timeout)
        result.three_s = done_at - before.sample.at
        result.three_usage = after.sample.since(before.sample)
        result.three_requests = self.api_requests().since(api_before)
        result.three_load = {name: after.load(before, name) for name in REPLICAS}
        result.three_memory = {name: memory(op.pid) for name, op in self.replicas.items()}
        result.three_shares = self.shares(after)
        say(f"sharding: three replicas synced {result.three_s:.1f}s after their start")
        self.phase = "three replicas: shards settling"
        result.settled_s = self.holders.wait(
            before.sample.at, balanced(self.alive), "each replica holding its share"
        )

    def window(self, result: ShardingResult) -> None:
        """A no-op refresh window (as in the sizes scenario): each replica's load."""
        self.phase = "three replicas: refresh window"
        time.sleep(3)
        api_before, before = self.api_requests(), self.moment()
        time.sleep(2 * self.refresh + 2)
        after = self.moment()
        result.window_usage = after.sample.since(before.sample)
        result.window_s = result.window_usage[0]
        result.window_requests = self.api_requests().since(api_before)
        result.window_load = {name: after.load(before, name) for name in REPLICAS}
        result.window_shares = self.shares(after)
        result.window_memory = {name: memory(op.pid) for name, op in self.replicas.items()}

    def rewrite(self, keys: list[tuple[str, str, str]]) -> dict[Key, str]:
        """A new password in each KV entry (CREATORS threads, a Vault client each)."""
        values = {(ns, name): uuid.uuid4().hex for ns, name, _ in keys}
        chunks = [keys[i::CREATORS] for i in range(CREATORS)]

        def write(chunk: list[tuple[str, str, str]]) -> None:
            vault = self.vault
            for namespace, name, path in chunk:
                vault.secrets.kv.v2.create_or_update_secret(
                    path,
                    {"username": "bench", "password": values[(namespace, name)]},
                    mount_point="secret",
                )

        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(write, chunks, timeout=REQUEST_TIMEOUT))
        return values

    def until_values(self, values: dict[Key, str], since: float, timeout: float) -> float:
        """Seconds from since until every Secret in values holds its password."""

        def check() -> bool | Pending:
            have = 0
            for secret in self.secrets():
                key = (secret["metadata"]["namespace"], secret["metadata"]["name"])
                password = (secret.get("data") or {}).get("password", "")
                if key in values and base64.b64decode(password).decode() == values[key]:
                    have += 1
            return have == len(values) or Pending(f"{have}/{len(values)} Secrets updated")

        timed(check, timeout, "the Secrets of the replica gone", interval=SECRETS_POLL)
        return time.monotonic() - since

    @staticmethod
    def ended(stop: Callable[[], None]) -> float:
        """When stop() returned: the process is gone."""
        stop()
        return time.monotonic()

    def end(self, how: str, timeout: float) -> Move:
        """Kill (SIGKILL) the live replica holding the most shards, or stop (SIGTERM) the first
        live one; rewrite the KV entries of its namespaces at once; time until the Leases
        and its Secrets have moved to the others."""
        holders = self.holders.now()
        split = Counter(h for item, h in holders.items() if item != LEADER)
        if how == "SIGKILL":
            name = max(sorted(self.alive), key=lambda n: split[n])
        else:
            name = sorted(self.alive)[0]
        namespaces = self.namespaces_of(name, holders)
        keys = self.keys_of(namespaces)
        operator = self.replicas[name]
        say(f"sharding: {how} to {name} ({split[name]} shards, {len(keys)} VaultSecrets)")
        with ThreadPoolExecutor(1) as pool:
            ended = time.monotonic()
            exited = pool.submit(self.ended, operator.kill if how == "SIGKILL" else operator.stop)
            self.alive.discard(name)
            values = self.rewrite(keys)
            rewrite_s = time.monotonic() - ended
            synced_s = self.until_values(values, ended, timeout)
            exit_s = exited.result() - ended
        held_s = self.holders.wait(ended, held_by(self.alive), f"{name}'s shards held by others")
        return Move(
            replica=name,
            how=how,
            shards=split[name],
            leader=holders[LEADER] == name,
            namespaces=len(namespaces),
            objects=len(keys),
            rewrite_s=rewrite_s,
            held_s=held_s,
            synced_s=synced_s,
            exit_s=exit_s if how == "SIGTERM" else None,
            shares=self.shares(self.moment()),
        )

    def logs(self, result: ShardingResult) -> None:
        for name, operator in self.replicas.items():
            result.log_warnings[name] = log_levels(operator.log_text())


def run_sharding(root: Path, args: argparse.Namespace) -> tuple[ShardingResult, bool]:
    """(result, ok): ok unless a phase failed."""
    bench = ShardingBench(root, args.sharding_size, args.refresh, args.operator_source)
    result = ShardingResult(args.sharding_size, len(bench.tenants), args.refresh)
    result.namespaces_per_shard = Counter(
        Counter(shard_of(t.namespace, SHARDS) for t in bench.tenants).get(item, 0)
        for item in shard_names(SHARDS)
    )

    def phases() -> None:
        bench.phase = "creating tenants and KV data"
        bench.prepare()
        bench.phase = "creating VaultSecrets, operator stopped"
        say(f"sharding: creating {bench.size} VaultSecrets in {len(bench.tenants)} namespaces")
        bench.create_all(args.timeout)
        bench.one(result, args.timeout)
        bench.three(result, args.timeout)
        bench.window(result)
        bench.phase = "takeover after SIGKILL"
        result.takeover = bench.end("SIGKILL", args.timeout)
        bench.phase = "handover after SIGTERM"
        result.handover = bench.end("SIGTERM", args.timeout)

    try:
        bench.scenario(result, "sharding", phases)
    finally:
        bench.logs(result)
    return result, result.error is None
