"""Rolling restarts exactly when a Secret's data changes, on the real control plane.

kube-controller-manager makes a new ReplicaSet for every real Deployment rollout and a new
ControllerRevision for every StatefulSet/DaemonSet pod-template change, so rollouts are counted
without a kubelet. Argo Rollouts are a custom resource here (a minimal CRD, no controller):
their restart is `spec.restartAt`. Expected values are computed from the operator's HMAC key
(the Secret vaultsync-hmac-key) and the Secret's data, as the operator does.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from e2e.harness.chart import ChartRelease, e2e_values
from e2e.harness.manifests import vault_secret
from e2e.harness.metrics import parse
from e2e.harness.polling import eventually
from e2e.harness.stack import OPERATOR_NAMESPACE, Operator, Stack, rotating_tenant_policy
from vaultsync.kube.api import Kube
from vaultsync.kube.core import CoreV1
from vaultsync.kube.hmackey import SECRET_NAME
from vaultsync.kube.workloads import (
    DAEMON_SET,
    DEPLOYMENT,
    FIELD_MANAGER,
    OPT_IN_ANNOTATION,
    PENDING_PREFIX,
    TRIGGER_PREFIX,
    Conflict,
    Ours,
    Workloads,
    ours,
)
from vaultsync.secrets.digest import keyed_digest

pytestmark = pytest.mark.e2e

CONDITION = "Restarted"
ROLLOUT_CRD = "rollouts.argoproj.io"


# --- helpers ----------------------------------------------------------------------------------


def apps(stack: Stack) -> client.AppsV1Api:
    return client.AppsV1Api(stack.core.api_client)


def pod_template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }


def workload(kind: str, namespace: str, name: str, **annotations: str) -> dict[str, Any]:
    """A Deployment, StatefulSet, DaemonSet or (argoproj.io) Rollout."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": pod_template(name),
    }
    if kind in ("Deployment", "StatefulSet", "Rollout"):
        spec["replicas"] = 1
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": spec,
    }


def get(stack: Stack, kind: str, namespace: str, name: str) -> dict[str, Any]:
    group, version, plural = {
        "Deployment": ("apps", "v1", "deployments"),
        "StatefulSet": ("apps", "v1", "statefulsets"),
        "DaemonSet": ("apps", "v1", "daemonsets"),
        "Rollout": ("argoproj.io", "v1alpha1", "rollouts"),
    }[kind]
    obj: Any = stack.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    found: dict[str, Any] = obj
    return found


def triggers(obj: dict[str, Any]) -> dict[str, str]:
    template = obj["spec"]["template"].get("metadata") or {}
    return {k: v for k, v in (template.get("annotations") or {}).items() if "vaultsync" in k}


def rollouts(stack: Stack, kind: str, namespace: str, name: str) -> int:
    """ReplicaSets of a Deployment, ControllerRevisions of a StatefulSet or DaemonSet."""
    uid = get(stack, kind, namespace, name)["metadata"]["uid"]
    if kind == "Deployment":
        items: list[Any] = apps(stack).list_namespaced_replica_set(namespace).items
    else:
        items = apps(stack).list_namespaced_controller_revision(namespace).items
    return sum(
        1 for item in items if any(ref.uid == uid for ref in item.metadata.owner_references or [])
    )


def hmac_key(stack: Stack) -> bytes:
    secret = stack.core.read_namespaced_secret(SECRET_NAME, OPERATOR_NAMESPACE)
    return base64.b64decode(secret.data["key"])


def expected(stack: Stack, namespace: str, secret: str) -> str:
    """The HMAC of the Secret's data under the operator's key: the trigger value."""
    data = stack.core.read_namespaced_secret(secret, namespace).data or {}
    return keyed_digest(hmac_key(stack), {k: base64.b64decode(v) for k, v in data.items()})


def condition(stack: Stack, namespace: str, name: str) -> dict[str, Any] | None:
    conditions = stack.vaultsecret(namespace, name).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == CONDITION), None)


def condition_is(
    stack: Stack, namespace: str, name: str, status: str, reason: str | None = None
) -> dict[str, Any] | None:
    found = condition(stack, namespace, name)
    if found is None or found["status"] != status:
        return None
    return found if reason is None or found["reason"] == reason else None


def synced(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    """Ready=True and Restarted=True (UpToDate) for the current generation."""
    return eventually(
        lambda: (
            stack.ready_is(namespace, name, "True")
            and condition_is(stack, namespace, name, "True", "UpToDate")
        ),
        60,
        f"VaultSecret {namespace}/{name} synced with its targets up to date",
    )


def restarts_metric(stack: Stack, kind: str, namespace: str, name: str) -> float:
    """vaultsync_rollout_restarts_total of one workload (its label `name` clashes with the
    harness helpers' own parameter, so the samples are filtered here)."""
    labels = {"kind": kind, "namespace": namespace, "name": name}
    return sum(
        s.value
        for s in parse(stack.operator.metrics())
        if s.name == "vaultsync_rollout_restarts_total" and labels.items() <= s.labels.items()
    )


def events(stack: Stack, namespace: str, kind: str, name: str) -> list[Any]:
    found = stack.core.list_namespaced_event(namespace).items
    return [e for e in found if e.involved_object.kind == kind and e.involved_object.name == name]


def steady(check: Any, seconds: float) -> None:
    """check() keeps holding for that long (refreshes every 2 s happen meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        time.sleep(1)


def setup(
    stack: Stack, tenant: str, kind: str = "Deployment", name: str = "api", **spec: Any
) -> None:
    """KV data, a workload and a VaultSecret `db` (Secret `db`) restarting it."""
    stack.put(f"{tenant}/db", {"password": f"first-{uuid.uuid4().hex[:8]}"})
    stack.apply(workload(kind, tenant, name))
    spec.setdefault("rolloutRestartTargets", [{"kind": kind, "name": name}])
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db", **spec))
    synced(stack, tenant, "db")


# --- Deployments ------------------------------------------------------------------------------


def test_deployment_restarts_once_per_change_and_never_on_refresh(
    stack: Stack, tenant: str
) -> None:
    setup(stack, tenant)
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 1, 30, "first ReplicaSet")
    adopted = get(stack, "Deployment", tenant, "api")
    assert triggers(adopted) == {}  # adopting a workload restarts nothing
    record = adopted["metadata"]["annotations"][TRIGGER_PREFIX + "db"]
    assert record == expected(stack, tenant, "db")
    steady(lambda: rollouts(stack, "Deployment", tenant, "api") == 1, 6)

    for change in range(1, 3):
        stack.put(f"{tenant}/db", {"password": f"changed-{change}-{uuid.uuid4().hex[:8]}"})
        eventually(
            lambda: (
                triggers(get(stack, "Deployment", tenant, "api"))
                == {TRIGGER_PREFIX + "db": expected(stack, tenant, "db")}
            ),
            30,
            "the trigger annotation holding the new data's HMAC",
        )
        eventually(
            lambda change=change: rollouts(stack, "Deployment", tenant, "api") == 1 + change,
            30,
            "one new ReplicaSet",
        )
        # refreshes every 2 s with the same data: no rollout, no write
        steady(lambda change=change: rollouts(stack, "Deployment", tenant, "api") == 1 + change, 8)

    secret = stack.core.read_namespaced_secret("db", tenant)
    value = triggers(get(stack, "Deployment", tenant, "api"))[TRIGGER_PREFIX + "db"]
    assert secret.metadata.annotations["vaultsync.io/data-hash"] == value  # the same keyed HMAC
    assert restarts_metric(stack, "Deployment", tenant, "api") == 2
    on_secret = eventually(
        lambda: (
            len(
                found := [
                    e
                    for e in events(stack, tenant, "VaultSecret", "db")
                    if e.reason == "RolloutRestarted"
                ]
            )
            == 2
            and found
        ),
        30,
        "two RolloutRestarted Events on the VaultSecret",
    )
    assert "Secret 'db'" in on_secret[0].message and "Deployment 'api'" in on_secret[0].message
    on_deployment = eventually(
        lambda: (
            len(
                found := [
                    e
                    for e in events(stack, tenant, "Deployment", "api")
                    if e.source.component == "vaultsync"
                ]
            )
            >= 2
            and found
        ),
        30,
        "the Events on the Deployment",
    )
    assert [e.reason for e in on_deployment] == ["RolloutRestarted"] * 2
    assert "Secret 'db'" in on_deployment[0].message
    assert stack.ready_is(tenant, "db", "True")


def test_operator_restart_restarts_nothing(stack: Stack, tenant: str) -> None:
    setup(stack, tenant)
    stack.put(f"{tenant}/db", {"password": f"changed-{uuid.uuid4().hex[:8]}"})
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 2, 30, "the restart")

    def ours_written() -> str:
        obj = get(stack, "Deployment", tenant, "api")
        return json.dumps(
            [m for m in obj["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER]
        )

    before = ours_written()
    stack.operator.stop()
    stack.operator.start()
    eventually(lambda: stack.operator.metric("vaultsync_syncs_total", kind="VaultSecret") > 5, 60)
    steady(lambda: rollouts(stack, "Deployment", tenant, "api") == 2, 6)
    assert ours_written() == before  # not even a no-op apply
    assert condition_is(stack, tenant, "db", "True", "UpToDate")


def test_two_secrets_of_one_deployment_changed_at_once(stack: Stack, tenant: str) -> None:
    stack.apply(workload("Deployment", tenant, "api"))
    for name in ("db", "token"):
        stack.put(f"{tenant}/{name}", {"value": f"{name}-1-{uuid.uuid4().hex[:8]}"})
        stack.apply(
            vault_secret(
                tenant,
                name,
                f"{tenant}/{name}",
                rolloutRestartTargets=[{"kind": "Deployment", "name": "api"}],
            )
        )
    synced(stack, tenant, "db")
    synced(stack, tenant, "token")
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 1, 30, "first ReplicaSet")
    for name in ("db", "token"):  # in the same second
        stack.put(f"{tenant}/{name}", {"value": f"{name}-2-{uuid.uuid4().hex[:8]}"})

    def both() -> bool:
        return triggers(get(stack, "Deployment", tenant, "api")) == {
            TRIGGER_PREFIX + "db": expected(stack, tenant, "db"),
            TRIGGER_PREFIX + "token": expected(stack, tenant, "token"),
        }

    eventually(both, 30, "both trigger annotations holding the new HMACs")
    steady(both, 6)
    assert 2 <= rollouts(stack, "Deployment", tenant, "api") <= 3  # one or two, none lost


def test_min_interval_coalesces_changes_into_one_restart_at_the_window_end(
    stack: Stack, tenant: str
) -> None:
    setup(stack, tenant, restart={"minInterval": "20s"})
    stack.put(f"{tenant}/db", {"password": f"change-1-{uuid.uuid4().hex[:8]}"})
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 2, 30, "first restart")
    first = time.monotonic()
    for change in (2, 3):  # inside the window
        time.sleep(2)
        stack.put(f"{tenant}/db", {"password": f"change-{change}-{uuid.uuid4().hex[:8]}"})
    eventually(lambda: condition_is(stack, tenant, "db", "False", "RestartPending"), 20, "pending")
    assert stack.ready_is(tenant, "db", "True")  # the sync itself is not held back
    pending = get(stack, "Deployment", tenant, "api")["metadata"]["annotations"]
    assert pending[PENDING_PREFIX + "db"] == expected(stack, tenant, "db")
    while time.monotonic() - first < 15:
        assert rollouts(stack, "Deployment", tenant, "api") == 2
        time.sleep(1)
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 3, 30, "the window's end")
    assert time.monotonic() - first >= 17  # 20 s window, seconds resolution
    final = get(stack, "Deployment", tenant, "api")
    assert triggers(final) == {TRIGGER_PREFIX + "db": expected(stack, tenant, "db")}
    assert PENDING_PREFIX + "db" not in final["metadata"]["annotations"]
    synced(stack, tenant, "db")
    steady(lambda: rollouts(stack, "Deployment", tenant, "api") == 3, 6)


def test_a_workload_can_opt_in_with_an_annotation(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/db", {"password": f"first-{uuid.uuid4().hex[:8]}"})
    stack.apply(workload("Deployment", tenant, "web", **{OPT_IN_ANNOTATION: "other, db"}))
    stack.apply(workload("Deployment", tenant, "unrelated", **{OPT_IN_ANNOTATION: "other"}))
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db"))
    synced(stack, tenant, "db")
    for name in ("web", "unrelated"):
        eventually(lambda name=name: rollouts(stack, "Deployment", tenant, name) == 1, 30)
    stack.put(f"{tenant}/db", {"password": f"changed-{uuid.uuid4().hex[:8]}"})
    eventually(lambda: rollouts(stack, "Deployment", tenant, "web") == 2, 30, "web restarted")
    assert triggers(get(stack, "Deployment", tenant, "web")) == {
        TRIGGER_PREFIX + "db": expected(stack, tenant, "db")
    }
    steady(lambda: rollouts(stack, "Deployment", tenant, "unrelated") == 1, 4)
    assert triggers(get(stack, "Deployment", tenant, "unrelated")) == {}
    assert "Deployment 'web'" in condition(stack, tenant, "db")["message"]  # type: ignore[index]


def test_a_missing_target_is_a_condition_not_a_failed_sync(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/db", {"password": f"first-{uuid.uuid4().hex[:8]}"})
    target = [{"kind": "Deployment", "name": "ghost"}]
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db", rolloutRestartTargets=target))
    found = eventually(
        lambda: condition_is(stack, tenant, "db", "False", "TargetNotFound"), 60, "TargetNotFound"
    )
    assert "Deployment 'ghost'" in found["message"]
    assert stack.ready_is(tenant, "db", "True")
    assert stack.secret_data(tenant, "db")

    def warnings() -> list[str]:
        return [e.reason for e in events(stack, tenant, "VaultSecret", "db") if e.type == "Warning"]

    eventually(warnings, 30, "the Warning Event")
    assert warnings() == ["TargetNotFound"]  # once, not per refresh
    stack.apply(workload("Deployment", tenant, "ghost"))
    synced(stack, tenant, "db")  # found and adopted, not restarted
    assert triggers(get(stack, "Deployment", tenant, "ghost")) == {}


def test_server_side_apply_of_the_workloads_own_manifest_keeps_our_trigger(
    stack: Stack, tenant: str
) -> None:
    setup(stack, tenant)
    stack.put(f"{tenant}/db", {"password": f"changed-{uuid.uuid4().hex[:8]}"})
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 2, 30, "the restart")
    ours_before = triggers(get(stack, "Deployment", tenant, "api"))
    manifest = workload("Deployment", tenant, "api")
    for replicas in (1, 3):  # the same manifest, then a changed one, as a GitOps tool applies
        manifest["spec"]["replicas"] = replicas
        applied = stack.cp.kubectl(
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            "-",
            input=json.dumps(manifest),
            check=False,
        )
        assert applied.returncode == 0, applied.stderr  # no conflict with our fields
        obj = get(stack, "Deployment", tenant, "api")
        assert triggers(obj) == ours_before
        assert obj["spec"]["replicas"] == replicas
    steady(lambda: rollouts(stack, "Deployment", tenant, "api") == 2, 6)
    managers = {
        m["manager"] for m in get(stack, "Deployment", tenant, "api")["metadata"]["managedFields"]
    }
    assert {"gitops", FIELD_MANAGER} <= managers


def test_upgrade_from_the_unkeyed_hash_is_a_metadata_update_only(stack: Stack, tenant: str) -> None:
    """A Secret written by an older vaultsync (unkeyed sha256 in data-hash) gets the keyed HMAC
    once, with its data as it was, and nothing restarts."""
    setup(stack, tenant)
    secret = stack.core.read_namespaced_secret("db", tenant)
    data = dict(secret.data)
    keyed = secret.metadata.annotations["vaultsync.io/data-hash"]
    unkeyed = "0123456789abcdef0123456789abcdef"
    stack.core.patch_namespaced_secret(
        "db", tenant, {"metadata": {"annotations": {"vaultsync.io/data-hash": unkeyed}}}
    )
    eventually(
        lambda: (
            stack.core.read_namespaced_secret("db", tenant).metadata.annotations[
                "vaultsync.io/data-hash"
            ]
            == keyed
        ),
        30,
        "the keyed HMAC written back",
    )
    assert stack.core.read_namespaced_secret("db", tenant).data == data
    steady(lambda: rollouts(stack, "Deployment", tenant, "api") == 1, 4)


def test_each_rotation_restarts_exactly_once(stack: Stack, tenant: str) -> None:
    """Rotation writes new values to Vault; the sync that follows changes the Secret, and that
    change restarts the targets through the same HMAC path: one ReplicaSet per version."""
    stack.vault.sys.create_or_update_policy(f"{tenant}-read", rotating_tenant_policy(tenant))
    stack.put(f"{tenant}/db", {"username": "app-user", "password": "initial-password"})
    stack.apply(workload("Deployment", tenant, "api"))
    keys = [{"name": "password", "generate": {"length": 24}}]
    targets = [{"kind": "Deployment", "name": "api"}]
    rotating = vault_secret(
        tenant,
        "db",
        f"{tenant}/db",
        rotation={"interval": "5s", "keys": keys},
        rolloutRestartTargets=targets,
    )
    stack.apply(rotating)
    adopted = eventually(lambda: adopted_version(stack, tenant), 30, "the Deployment adopted")
    eventually(lambda: kv_version(stack, tenant) >= adopted + 3, 60, "three rotations")
    rotating["spec"]["rotation"]["interval"] = "87600h"  # no more rotations
    stack.apply(rotating)
    time.sleep(3)  # a rotation already under way when the spec changed is synced too
    version = kv_version(stack, tenant)
    eventually(
        lambda: (
            triggers(get(stack, "Deployment", tenant, "api"))
            == {TRIGGER_PREFIX + "db": expected(stack, tenant, "db")}
            and stack.secret_data(tenant, "db")
            == {k: str(v) for k, v in current_data(stack, tenant).items()}
        ),
        30,
        "the last rotated version synced and restarted",
    )
    # the first ReplicaSet is the Deployment's creation; adopting it restarted nothing; then
    # one rollout for each version that rotation wrote after that
    want = 1 + version - adopted
    assert want >= 4
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == want, 30)
    steady(lambda: rollouts(stack, "Deployment", tenant, "api") == want, 6)
    assert kv_version(stack, tenant) == version
    for number in range(1, version + 1):  # the leak scan looks for rotated values too
        data = kv_read(stack, tenant, number)["data"]
        stack.values.update(str(v) for v in data.values() if len(str(v)) >= 6)


def kv_read(stack: Stack, tenant: str, version: int | None = None) -> dict[str, Any]:
    read: dict[str, Any] = stack.vault.secrets.kv.v2.read_secret_version(
        f"{tenant}/db", version=version, mount_point="secret", raise_on_deleted_version=True
    )["data"]
    return read


def kv_version(stack: Stack, tenant: str) -> int:
    return int(kv_read(stack, tenant)["metadata"]["version"])


def current_data(stack: Stack, tenant: str) -> dict[str, Any]:
    data: dict[str, Any] = kv_read(stack, tenant)["data"]
    return data


def adopted_version(stack: Stack, tenant: str) -> int | None:
    """The KV version whose HMAC the Deployment was first recorded with (before any restart)."""
    obj = get(stack, "Deployment", tenant, "api")
    record = (obj["metadata"].get("annotations") or {}).get(TRIGGER_PREFIX + "db")
    if record is None or triggers(obj):
        return None
    key = hmac_key(stack)
    for number in range(kv_version(stack, tenant), 0, -1):
        data = kv_read(stack, tenant, number)["data"]
        if keyed_digest(key, {k: str(v).encode() for k, v in data.items()}) == record:
            return number
    raise AssertionError("the recorded HMAC matches no KV version")


# --- StatefulSets, DaemonSets -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_statefulsets_and_daemonsets_get_one_new_revision_per_change(
    stack: Stack, tenant: str, kind: str
) -> None:
    setup(stack, tenant, kind=kind)
    eventually(lambda: rollouts(stack, kind, tenant, "api") == 1, 30, "first revision")
    assert triggers(get(stack, kind, tenant, "api")) == {}
    stack.put(f"{tenant}/db", {"password": f"changed-{uuid.uuid4().hex[:8]}"})
    eventually(lambda: rollouts(stack, kind, tenant, "api") == 2, 30, "a new revision")
    assert triggers(get(stack, kind, tenant, "api")) == {
        TRIGGER_PREFIX + "db": expected(stack, tenant, "db")
    }
    steady(lambda: rollouts(stack, kind, tenant, "api") == 2, 6)
    assert restarts_metric(stack, kind, tenant, "api") == 1


# --- Argo Rollouts ----------------------------------------------------------------------------

MINIMAL_ROLLOUT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": ROLLOUT_CRD},
    "spec": {
        "group": "argoproj.io",
        "names": {"kind": "Rollout", "plural": "rollouts", "singular": "rollout"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {
                                    "restartAt": {"type": "string", "format": "date-time"}
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _served(stack: Stack) -> bool:
    try:
        stack.custom.get_api_resources("argoproj.io", "v1alpha1")
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_rollout_target_without_its_crd_is_a_condition(stack: Stack, tenant: str) -> None:
    stack.cp.kubectl("delete", "crd", ROLLOUT_CRD, "--ignore-not-found", "--wait=true")
    eventually(lambda: not _served(stack), 60, "argoproj.io/v1alpha1 gone")
    stack.put(f"{tenant}/db", {"password": f"first-{uuid.uuid4().hex[:8]}"})
    target = [{"kind": "Rollout", "name": "web"}]
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db", rolloutRestartTargets=target))
    found = eventually(
        lambda: condition_is(stack, tenant, "db", "False", "RolloutCRDMissing"), 60, "no CRD"
    )
    assert "Argo Rollouts CRD" in found["message"]
    assert stack.ready_is(tenant, "db", "True")


@pytest.fixture
def rollout_crd(stack: Stack) -> Iterator[None]:
    stack.apply(MINIMAL_ROLLOUT_CRD)
    stack.cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{ROLLOUT_CRD}")
    eventually(lambda: _served(stack), 60, "argoproj.io/v1alpha1 served")
    yield
    stack.cp.kubectl("delete", "crd", ROLLOUT_CRD, "--ignore-not-found", "--wait=false")


def test_a_rollout_restarts_through_restart_at(
    stack: Stack, tenant: str, rollout_crd: None
) -> None:
    setup(stack, tenant, kind="Rollout", name="web")
    adopted = get(stack, "Rollout", tenant, "web")
    assert "restartAt" not in adopted["spec"]
    generation = adopted["metadata"]["generation"]
    stack.put(f"{tenant}/db", {"password": f"changed-{uuid.uuid4().hex[:8]}"})
    changed = eventually(
        lambda: (obj := get(stack, "Rollout", tenant, "web"))["spec"].get("restartAt") and obj,
        30,
        "spec.restartAt",
    )
    restart_at = datetime.fromisoformat(changed["spec"]["restartAt"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - restart_at).total_seconds()) < 30
    assert changed["metadata"]["annotations"][TRIGGER_PREFIX + "db"] == expected(
        stack, tenant, "db"
    )
    assert changed["metadata"]["generation"] == generation + 1
    assert "template" not in changed["spec"] or not triggers(changed)  # restartAt, not template
    steady(
        lambda: (
            get(stack, "Rollout", tenant, "web")["spec"]["restartAt"]
            == changed["spec"]["restartAt"]
        ),
        6,
    )
    assert get(stack, "Rollout", tenant, "web")["metadata"]["generation"] == generation + 1
    assert restarts_metric(stack, "Rollout", tenant, "web") == 1


# --- RBAC denied: the operator as the chart's ServiceAccount, Rollouts not granted ------------


@pytest.fixture
def chart_operator(stack: Stack, tmp_path: Path, rollout_crd: None) -> Iterator[Operator]:
    """The operator as the chart runs it with rbac.argoRollouts=false (the default), instead
    of the session's operator (which runs with it true), for one test."""
    release = ChartRelease(
        stack.cp, tmp_path / "chart", e2e_values(argo_rollouts=False), release="vs-no-rollouts"
    )
    release.install()
    restricted = Operator(tmp_path / "operator", release, verbose=True)
    stack.operator.stop()
    try:
        restricted.start()
        yield restricted
    finally:
        restricted.stop()
        stack.operator.start()
        release.uninstall()


def test_a_denied_restart_is_a_condition_and_the_rest_restarts(
    stack: Stack, tenant: str, chart_operator: Operator
) -> None:
    stack.put(f"{tenant}/db", {"password": f"first-{uuid.uuid4().hex[:8]}"})
    stack.apply(workload("Deployment", tenant, "api"))
    stack.apply(workload("Rollout", tenant, "web"))
    targets = [{"kind": "Deployment", "name": "api"}, {"kind": "Rollout", "name": "web"}]
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db", rolloutRestartTargets=targets))
    denied = eventually(
        lambda: condition_is(stack, tenant, "db", "False", "RestartDenied"), 60, "RestartDenied"
    )
    assert "Rollout 'web'" in denied["message"] and "403" in denied["message"]
    assert stack.ready_is(tenant, "db", "True")  # the Secret sync does not wait for restarts
    eventually(lambda: rollouts(stack, "Deployment", tenant, "api") == 1, 30)
    stack.put(f"{tenant}/db", {"password": f"changed-{uuid.uuid4().hex[:8]}"})
    eventually(
        lambda: rollouts(stack, "Deployment", tenant, "api") == 2, 30, "the Deployment restarted"
    )
    assert stack.ready_is(tenant, "db", "True")
    assert condition_is(stack, tenant, "db", "False", "RestartDenied")
    assert "restartAt" not in get(stack, "Rollout", tenant, "web")["spec"]


# --- kube/workloads.py against the real API server ---------------------------------------------


@pytest.fixture
def kube(stack: Stack) -> Kube:
    api = config.new_client_from_config(str(stack.cp.kubeconfig))
    return Kube(CoreV1(api), client.CustomObjectsApi(api))


def test_server_side_apply_owns_only_our_annotations(stack: Stack, kube: Kube) -> None:
    namespace = f"w-{uuid.uuid4().hex[:8]}"
    stack.cp.kubectl("create", "namespace", namespace)
    try:
        stack.cp.kubectl(
            "apply", "-f", "-", input=json.dumps(workload("Deployment", namespace, "api"))
        )
        workloads = Workloads(kube)
        obj = workloads.read(DEPLOYMENT, namespace, "api")
        assert obj is not None
        want = Ours({"db": "h1", "token": "t1"}, {}, {"db": "h1", "token": "t1"}, None, "k")
        applied = eventually(lambda: _apply(workloads, namespace, want), 30, "an apply")
        assert ours(DEPLOYMENT, applied) == want
        mine = next(
            m for m in applied["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER
        )
        assert mine["operation"] == "Apply"
        owned = json.dumps(mine["fieldsV1"])
        assert "f:replicas" not in owned and "f:containers" not in owned and "f:labels" not in owned
        # omitting a field we applied before removes it; the others stay
        fewer = Ours({"db": "h2"}, {}, {"db": "h2"}, None, "k")
        after = eventually(lambda: _apply(workloads, namespace, fewer), 30, "an apply")
        assert ours(DEPLOYMENT, after) == fewer
        assert after["spec"]["template"]["metadata"]["labels"] == {"app": "api"}
        # a stale resourceVersion is a conflict, never a blind overwrite
        with pytest.raises(Conflict):
            workloads.apply(DEPLOYMENT, applied, want)
        assert workloads.read(DEPLOYMENT, namespace, "nope") is None
    finally:
        stack.cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _apply(workloads: Workloads, namespace: str, want: Ours) -> dict[str, Any] | None:
    obj = workloads.read(DEPLOYMENT, namespace, "api")
    assert obj is not None
    try:
        return workloads.apply(DEPLOYMENT, obj, want)
    except Conflict:
        return None  # the deployment controller wrote status meanwhile: read again


def test_opted_in_workloads_are_listed_from_metadata_only(stack: Stack, kube: Kube) -> None:
    namespace = f"w-{uuid.uuid4().hex[:8]}"
    stack.cp.kubectl("create", "namespace", namespace)
    try:
        objects = [
            workload("Deployment", namespace, "in", **{OPT_IN_ANNOTATION: "db"}),
            workload("Deployment", namespace, "out"),
            workload("DaemonSet", namespace, "ds", **{OPT_IN_ANNOTATION: "db,x"}),
        ]
        stack.apply(
            *objects, workload("Deployment", namespace, "in-2", **{OPT_IN_ANNOTATION: "db"})
        )
        workloads = Workloads(kube, listing_ttl=0, page=1)  # one object per page
        assert set(workloads.opted_in(DEPLOYMENT, namespace)) == {"in", "in-2"}
        listed = workloads.opted_in(DAEMON_SET, namespace)
        assert listed["ds"][OPT_IN_ANNOTATION] == "db,x"
    finally:
        stack.cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
