"""Two replicas meeting in Leases (`--peering`): one works, the other stands by and takes over."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from e2e.harness.chart import ChartRelease, e2e_values
from e2e.harness.controlplane import ControlPlane
from e2e.harness.manifests import vault_secret
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.stack import Operator, add_tenant, apply, rotating_tenant_policy, start_stack

pytestmark = pytest.mark.e2e
PEERING = "vaultsync-ha"
TOOK, HANDED = "leases: took leader", "leases: handed over leader"


@dataclass
class Pair:
    cp: ControlPlane
    bao: OpenBao
    active: Operator
    standby: Operator
    core: client.CoreV1Api

    def synced(self, namespace: str, name: str) -> bool:
        try:
            self.core.read_namespaced_secret(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two replicas as the chart runs them with replicas=2: its ServiceAccount and RBAC (a Role
    for the Leases), its --peering args; the test picks their priorities."""
    root = Path(tmp_path_factory.mktemp("ha"))
    cp, bao = ControlPlane(root / "cluster"), OpenBao(root / "openbao")
    values = {**e2e_values(peeringLifetime=10), "replicas": 2}
    release = ChartRelease(cp, root / "chart", values, release=PEERING)
    active = Operator(root / "active", release, priority=200)
    standby = Operator(root / "standby", release, priority=100)
    try:
        start_stack(cp, bao)
        release.install()
        assert f"--peering={PEERING}" in release.container().args
        active.start()
        standby.start()
        api = config.new_client_from_config(str(cp.kubeconfig))
        yield Pair(cp, bao, active, standby, client.CoreV1Api(api))
    finally:
        standby.stop()
        active.stop()
        bao.stop()
        cp.stop()


def tenant(pair: Pair) -> str:
    namespace = f"ha-{uuid.uuid4().hex[:6]}"
    add_tenant(pair.cp, pair.bao, namespace)
    pair.bao.client().secrets.kv.v2.create_or_update_secret(
        f"{namespace}/app", {"k": "ha-value-1"}, mount_point="secret"
    )
    return namespace


def ready(operator: Operator) -> dict[str, Any] | None:
    """The readiness report if /readyz answers 200."""
    status, body = operator.probe("readyz")
    if status != 200:
        return None
    found: dict[str, Any] = json.loads(body)
    return found


def syncs(operator: Operator) -> float:
    return operator.metric("vaultsync_syncs_total", kind="VaultSecret")


def test_only_the_active_replica_works_and_the_standby_takes_over(pair: Pair) -> None:
    first = tenant(pair)
    apply(pair.cp, [vault_secret(first, "app", f"{first}/app")])
    eventually(lambda: pair.synced(first, "app"), 60, "the Secret, synced by the active one")
    eventually(lambda: syncs(pair.active) >= 3, 30, "refreshes by the active replica")
    assert syncs(pair.standby) == 0, "the standby must not reconcile while the active one lives"
    assert TOOK not in pair.standby.log_text()  # it stands by
    for operator in (pair.active, pair.standby):  # both Ready: the standby can take over
        body = eventually(lambda op=operator: ready(op), 30, f"{operator.workdir.name} Ready")
        assert body["checks"]["leases"] == "ok"
        assert operator.probe("healthz")[0] == 200

    pair.active.stop()  # a clean shutdown hands over at once
    second = tenant(pair)
    apply(pair.cp, [vault_secret(second, "app", f"{second}/app")])
    eventually(lambda: pair.synced(second, "app"), 90, "the Secret, synced by the standby")
    assert syncs(pair.standby) > 0
    assert TOOK in pair.standby.log_text()


def test_a_crashed_active_replica_is_replaced_after_the_peering_lifetime(pair: Pair) -> None:
    pair.active.start()  # the higher priority comes back and takes over again
    eventually(lambda: HANDED in pair.standby.log_text(), 30, "the standby stands by again")
    before = syncs(pair.standby)
    pair.active.kill()  # no clean exit: its Lease stays until it expires
    namespace = tenant(pair)
    apply(pair.cp, [vault_secret(namespace, "app", f"{namespace}/app")])
    eventually(lambda: pair.synced(namespace, "app"), 90, "the Secret, synced by the standby")
    assert syncs(pair.standby) > before


def test_rotation_is_never_doubled_by_two_replicas_or_a_takeover(pair: Pair) -> None:
    """Both replicas run the same schedule from Vault's record: while one is active and across
    a crash and takeover, every slot gives at most one new version."""
    pair.active.start()
    namespace = tenant(pair)
    vault = pair.bao.client()
    vault.sys.create_or_update_policy(f"{namespace}-read", rotating_tenant_policy(namespace))
    rotating = vault_secret(namespace, "app", f"{namespace}/app")
    rotating["spec"]["rotation"] = {
        "interval": "3s",
        "keys": [{"name": "k", "generate": {"length": 16}}],
    }
    apply(pair.cp, [rotating])

    def version() -> int:
        read = vault.secrets.kv.v2.read_secret_version(
            f"{namespace}/app", mount_point="secret", raise_on_deleted_version=True
        )
        return int(read["data"]["metadata"]["version"])

    eventually(lambda: version() >= 3, 60, "rotations by the active replica")
    pair.active.kill()
    before = version()
    eventually(lambda: version() >= before + 2, 90, "rotations after the takeover")
    meta = vault.secrets.kv.v2.read_secret_metadata(f"{namespace}/app", mount_point="secret")
    created = sorted(
        datetime.fromisoformat(v["created_time"]) for v in meta["data"]["versions"].values()
    )
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(created[1:])]
    assert all(gap >= 2.5 for gap in gaps), f"two rotations for one slot: {gaps}"
