"""Replicas that share the work (`sharding.replicas` in the chart, `vaultsync run --shards`):
every namespace is reconciled by the one replica that holds its shard's Lease, through a
crash, a clean stop and a new replica.

The proof is the API server's audit log (e2e/harness/controlplane.py), which records every
completed Secret write with the User-Agent of the replica that sent it, and every Lease
write with the Lease sent: a Secret write by a replica that did not hold the shard at that
instant, by the API server's own clock, is a double reconcile.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from e2e.harness import log
from e2e.harness.chart import OPERATOR_NAMESPACE, ChartRelease, e2e_values
from e2e.harness.controlplane import ControlPlane
from e2e.harness.manifests import vault_secret
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.stack import Operator, add_tenant, apply, secret_data, start_stack
from vaultsync import GROUP, VERSION
from vaultsync.runtime.sharding import LEADER, shard_of

pytestmark = pytest.mark.e2e
SHARDS = 6
DURATION = 6  # seconds: the Lease duration
TENANTS = 12
PER_TENANT = 4


@dataclass
class Cluster:
    cp: ControlPlane
    bao: OpenBao
    release: ChartRelease
    root: Path
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    coordination: client.CoordinationV1Api
    replicas: dict[str, Operator] = field(default_factory=dict)

    def replica(self, name: str) -> Operator:
        if name not in self.replicas:
            self.replicas[name] = Operator(self.root / name, self.release)
        return self.replicas[name]

    @property
    def group(self) -> str:
        args, _ = self.replica("r0").command()
        return next(a.split("=", 1)[1] for a in args if a.startswith("--lease-group="))

    def holders(self) -> dict[str, str]:
        """Who holds the leader and each shard now ("" for nobody)."""
        leases = self.coordination.list_namespaced_lease(OPERATOR_NAMESPACE).items
        prefix = f"{self.group}-"
        return {
            lease.metadata.name[len(prefix) :]: lease.spec.holder_identity or ""
            for lease in leases
            if lease.metadata.name.startswith(prefix) and "-member-" not in lease.metadata.name
        }

    def held_by(self, who: str) -> list[str]:
        return sorted(item for item, holder in self.holders().items() if holder == who)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Its own control plane and OpenBao: the chart with sharding.replicas=3; the test starts
    and stops the replicas (as the chart's pods run them, each under its own pod name)."""
    root = Path(tmp_path_factory.mktemp("shards"))
    cp, bao = ControlPlane(root / "cluster"), OpenBao(root / "openbao")
    values = {
        **e2e_values(),
        "sharding": {"replicas": 3, "shards": SHARDS, "leaseDuration": DURATION},
    }
    release = ChartRelease(cp, root / "chart", values, release="vaultsync-shards")
    replicas: dict[str, Operator] = {}
    try:
        start_stack(cp, bao)
        release.install()
        api = config.new_client_from_config(str(cp.kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        coordination = client.CoordinationV1Api(api)
        yield Cluster(cp, bao, release, root, core, custom, coordination, replicas)
    finally:
        for operator in replicas.values():
            operator.stop()
        bao.stop()
        cp.stop()


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Audit:
    """The audit log read back: shard holders over time, and who wrote which Secret when."""

    holders: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    writes: list[tuple[float, str, str, str, str]] = field(default_factory=list)  # t, verb..

    @classmethod
    def read(cls, path: Path, group: str) -> Audit:
        audit = cls()
        for line in path.read_text().splitlines():
            event = json.loads(line)
            ref, status = event.get("objectRef") or {}, event.get("responseStatus") or {}
            if event.get("stage") != "ResponseComplete" or status.get("code", 500) >= 300:
                continue
            when = _time(event["stageTimestamp"])
            if ref.get("resource") == "leases" and ref.get("name", "").startswith(f"{group}-"):
                item = ref["name"][len(group) + 1 :]
                if item.startswith("member-"):
                    continue
                spec = (event.get("requestObject") or {}).get("spec") or {}
                holder = "" if event["verb"] == "delete" else spec.get("holderIdentity") or ""
                audit.holders.setdefault(item, []).append((when, holder))
            elif ref.get("resource") == "secrets" and ref.get("namespace") != OPERATOR_NAMESPACE:
                agent = event.get("userAgent", "")
                if not agent.startswith("vaultsync/"):
                    continue
                replica = agent[agent.index("(") + 1 : agent.index(")")]
                audit.writes.append(
                    (when, event["verb"], ref.get("namespace", ""), ref.get("name", ""), replica)
                )
        return audit

    def holder(self, item: str, when: float) -> str:
        current = ""
        for at, holder in self.holders.get(item, []):
            if at > when:
                break
            current = holder
        return current

    def strays(self) -> list[str]:
        """Secret writes by a replica that did not hold the Secret's shard at that instant."""
        return [
            f"{verb} {namespace}/{name} by {replica} at {when:.3f} (holder "
            f"{self.holder(shard_of(namespace, SHARDS), when)!r})"
            for when, verb, namespace, name, replica in self.writes
            if self.holder(shard_of(namespace, SHARDS), when) != replica
        ]


class Churn:
    """Changes every VaultSecret's KV data once a second, from a thread, until stopped."""

    def __init__(self, cluster: Cluster, paths: list[str]) -> None:
        self.vault = cluster.bao.client()
        self.paths = paths
        self.round = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.round += 1
            for path in self.paths:
                self.vault.secrets.kv.v2.create_or_update_secret(
                    path, {"k": f"round-{self.round}"}, mount_point="secret"
                )
            self._stop.wait(1.0)

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _value(cluster: Cluster, namespace: str, name: str) -> str | None:
    data = secret_data(cluster.core, namespace, name)
    return None if data is None else data.get("k", "")


def _all_hold(cluster: Cluster, alive: set[str]) -> dict[str, str] | None:
    """The holders once the leader and every shard are held by a live replica."""
    holders = cluster.holders()
    items = {LEADER, *(f"shard-{i}" for i in range(SHARDS))}
    if set(holders) >= items and all(holders[i] in alive for i in items):
        return holders
    return None


def test_every_secret_is_written_by_its_shards_holder_only(cluster: Cluster) -> None:
    namespaces = [f"sh{i}-{uuid.uuid4().hex[:5]}" for i in range(TENANTS)]
    objects, paths = [], []
    vault = cluster.bao.client()
    for namespace in namespaces:
        add_tenant(cluster.cp, cluster.bao, namespace)
        for j in range(PER_TENANT):
            path = f"{namespace}/app{j}"
            vault.secrets.kv.v2.create_or_update_secret(
                path, {"k": "round-0"}, mount_point="secret"
            )
            objects.append(vault_secret(namespace, f"app{j}", path))
            paths.append(path)
    apply(cluster.cp, objects)
    for name in ("r0", "r1", "r2"):
        cluster.replica(name).start()
    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects]
    eventually(
        lambda: all(_value(cluster, ns, n) == "round-0" for ns, n in keys), 120, "first sync"
    )
    holders = eventually(lambda: _all_hold(cluster, {"r0", "r1", "r2"}), 60, "shards held")
    split = Counter(holders.values())
    assert set(split) == {"r0", "r1", "r2"}, f"every replica holds a share: {holders}"

    with Churn(cluster, paths) as churn:
        time.sleep(4)
        killed = cluster.holders()[f"shard-{0}"]  # a replica that holds a shard
        cluster.replicas[killed].kill()
        crashed = time.monotonic()
        alive = {"r0", "r1", "r2"} - {killed}
        eventually(lambda: _all_hold(cluster, alive), 60, f"{killed}'s shards taken over")
        takeover = time.monotonic() - crashed

        cluster.replica("r3").start()
        alive.add("r3")
        eventually(lambda: cluster.held_by("r3"), 60, "the new replica r3 takes a share")

        leaving = sorted(alive)[0]
        stopped = time.monotonic()
        cluster.replicas[leaving].stop()
        alive.discard(leaving)
        eventually(lambda: _all_hold(cluster, alive), 60, f"{leaving}'s shards handed over")
        handover = time.monotonic() - stopped
        time.sleep(4)
        last = churn.round
    log(f"sharding: takeover after kill {takeover:.1f}s, handover after stop {handover:.1f}s")
    assert takeover <= 2 * DURATION + 2, f"takeover took {takeover:.1f}s"
    assert handover < DURATION, f"a clean stop hands over at once, not after {handover:.1f}s"

    final = f"round-{last}"
    eventually(
        lambda: all(_value(cluster, ns, n) == final for ns, n in keys), 60, "the last change"
    )
    for namespace, name in keys:
        cluster.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "vaultsecrets", name
        )

    def gone() -> bool:
        listed: Any = cluster.custom.list_cluster_custom_object(GROUP, VERSION, "vaultsecrets")
        return not listed["items"]

    eventually(gone, 60, "every deletion finished")

    audit = Audit.read(cluster.cp.audit_log, cluster.group)
    writers = Counter(replica for *_, replica in audit.writes)
    log(f"sharding: Secret writes per replica {dict(writers)}, {len(audit.writes)} in all")
    strays = audit.strays()
    assert strays == [], f"double reconciles: {len(strays)}: {strays[:20]}"
    assert writers[killed] > 0 and writers["r3"] > 0


def test_cluster_scoped_kinds_are_reconciled_by_the_leader_only(cluster: Cluster) -> None:
    """The VaultConnection `default` shows in one replica's metrics: the leader's."""
    running = {n: op for n, op in cluster.replicas.items() if op.running}
    leader = eventually(lambda: cluster.holders().get(LEADER) or None, 30, "a leader")
    assert leader in running

    def counted() -> dict[str, float] | None:
        found = {
            name: op.metric("vaultsync_objects", kind="VaultConnection")
            for name, op in running.items()
        }
        return found if found[leader] > 0 else None

    found = eventually(counted, 30, "the leader reports the VaultConnection")
    assert [n for n, v in found.items() if v > 0] == [leader], found
    for name, op in running.items():
        held = op.metric("vaultsync_shard_held")
        assert held == len(cluster.held_by(name)), (name, held)
        status, body = op.probe("readyz")
        assert status == 200 and json.loads(body)["checks"]["leases"] == "ok", body
