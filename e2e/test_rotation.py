"""Rotation on the real stack: new values written back to Vault with check-and-set, on an
interval or on demand, by the tenant's own identity, exactly once per slot or request, also
across operator downtime, kill -9 and a lost status."""

from __future__ import annotations

import itertools
import random
import string
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import hvac
import pytest

from e2e.harness.conditions import condition
from e2e.harness.manifests import vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack, rotating_tenant_policy

pytestmark = pytest.mark.e2e

PASSWORD_POLICY = "e2e-lowercase-20"
LATE = 2.5  # seconds a rotation's write may trail its slot on a loaded 2-core machine
PASSWORD_POLICY_HCL = """
length = 20
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 20
}
"""


@pytest.fixture
def rotator(stack: Stack, tenant: str) -> Iterator[str]:
    """The tenant, allowed to rotate its own paths."""
    policy = rotating_tenant_policy(tenant, PASSWORD_POLICY)
    stack.vault.sys.create_or_update_policy(f"{tenant}-read", policy)
    stack.vault.write(f"sys/policies/password/{PASSWORD_POLICY}", policy=PASSWORD_POLICY_HCL)
    yield tenant
    for version in _versions(stack.vault, f"{tenant}/db").values():
        stack.values.update(v for v in version.values() if isinstance(v, str) and len(v) >= 6)


def _versions(vault: hvac.Client, path: str) -> dict[int, dict[str, Any]]:
    """Every live version's data (the leak scan at the end looks for rotated values too)."""
    try:
        meta = vault.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    except hvac.exceptions.InvalidPath:
        return {}
    found = {}
    for number in meta["versions"]:
        data = vault.secrets.kv.v2.read_secret_version(
            path, version=int(number), mount_point="secret", raise_on_deleted_version=False
        )["data"]["data"]
        found[int(number)] = data or {}
    return found


def _created(vault: hvac.Client, path: str) -> list[datetime]:
    meta = vault.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    return sorted(datetime.fromisoformat(v["created_time"]) for v in meta["versions"].values())


def _current(vault: hvac.Client, path: str) -> tuple[int, dict[str, Any]]:
    read = vault.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True
    )["data"]
    return int(read["metadata"]["version"]), read["data"]


def _rotating(namespace: str, rotation: dict[str, Any], **spec: Any) -> dict[str, Any]:
    keys = rotation.pop("keys", [{"name": "password", "generate": {"length": 24, "symbols": True}}])
    return vault_secret(
        namespace, "db", f"{namespace}/db", rotation={**rotation, "keys": keys}, **spec
    )


def _in_sync(stack: Stack, namespace: str) -> tuple[int, dict[str, Any]] | None:
    version, data = _current(stack.vault, f"{namespace}/db")
    secret = stack.secret_data(namespace, "db")
    return (version, data) if secret == {k: str(v) for k, v in data.items()} else None


def test_interval_rotation_writes_new_versions_and_keeps_other_keys(
    stack: Stack, rotator: str
) -> None:
    stack.put(f"{rotator}/db", {"username": "app-user", "password": "initial-password"})
    stack.apply(_rotating(rotator, {"interval": "4s"}))
    eventually(lambda: _current(stack.vault, f"{rotator}/db")[0] >= 3, 60, "two rotations")
    _, data = eventually(lambda: _in_sync(stack, rotator), 30, "Secret equals Vault")
    assert data["username"] == "app-user"
    password = data["password"]
    assert len(password) == 24 and password != "initial-password"
    for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#%&*+-=?@^_"):
        assert any(c in cls for c in password), cls
    status = eventually(
        lambda: (
            (s := stack.vaultsecret(rotator, "db").get("status") or {}).get("rotatedVersion") and s
        ),
        30,
        "rotation status",
    )
    assert status["lastRotationTime"] and status["nextRotationTime"]
    created = _created(stack.vault, f"{rotator}/db")
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(created[1:])]
    assert all(gap >= 3 for gap in gaps), f"rotations closer than the interval: {gaps}"
    rotated = eventually(
        lambda: [
            e for e in stack.core.list_namespaced_event(rotator).items if e.reason == "Rotated"
        ],
        30,
        "a Rotated Event",
    )
    assert all(password not in (e.message or "") for e in rotated)


def test_each_rotate_annotation_value_rotates_exactly_once(stack: Stack, rotator: str) -> None:
    stack.put(f"{rotator}/db", {"password": "initial-password"})
    stack.apply(_rotating(rotator, {"interval": "87600h"}))
    eventually(lambda: stack.ready_is(rotator, "db", "True"), 60, "Ready")
    start = _current(stack.vault, f"{rotator}/db")[0]
    # "first" again after "second": a GitOps tool reverting a kubectl annotate; not a request
    for value, expected in (("first", 1), ("first", 1), ("second", 2), ("first", 2)):
        for annotation in (f"rotate={value}", f"refresh={random.random()}"):
            stack.cp.kubectl(
                "annotate",
                "vaultsecret",
                "db",
                "-n",
                rotator,
                f"vaultsync.io/{annotation}",
                "--overwrite",
            )
        eventually(
            lambda expected=expected: _current(stack.vault, f"{rotator}/db")[0] == start + expected,
            30,
            f"version {start + expected}",
        )
        time.sleep(3)  # refreshes meanwhile must not rotate again
        assert _current(stack.vault, f"{rotator}/db")[0] == start + expected
    eventually(lambda: _in_sync(stack, rotator), 30, "Secret equals Vault")


def _warnings(stack: Stack, namespace: str, reason: str) -> list[Any]:
    events = stack.core.list_namespaced_event(namespace).items
    return [e for e in events if e.reason == reason and e.type == "Warning"]


def test_a_rotate_annotation_without_spec_rotation_is_reported_once_per_value(
    stack: Stack, tenant: str
) -> None:
    """The request cannot be honoured: a condition and one Warning Event per annotation value
    say so, refreshes repeat nothing, and the sync goes on (Ready stays True)."""
    stack.put(f"{tenant}/db", {"password": "initial-password"})
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db"))
    eventually(lambda: stack.ready_is(tenant, "db", "True"), 60, "Ready")

    def ignored(value: str) -> dict[str, Any] | None:
        found = condition(stack.vaultsecret(tenant, "db"), "RotationRequest")
        return found if found and repr(value) in found["message"] else None

    def annotate(annotation: str) -> None:
        stack.cp.kubectl(
            "annotate",
            "vaultsecret",
            "db",
            "-n",
            tenant,
            f"vaultsync.io/{annotation}",
            "--overwrite",
        )

    annotate("rotate=first")
    found = eventually(lambda: ignored("first"), 30, "the request reported as ignored")
    assert (found["status"], found["reason"]) == ("False", "RotationNotConfigured")
    assert "spec.rotation" in found["message"]
    warned = eventually(lambda: _warnings(stack, tenant, "RotationNotConfigured"), 30, "Event")
    assert "'first'" in warned[0].message and "spec.rotation" in warned[0].message
    # the sync goes on: new data in Vault reaches the Secret, Ready stays True, and neither
    # these syncs nor refreshes repeat the Event
    stack.put(f"{tenant}/db", {"password": "changed-password"})
    annotate(f"refresh={random.random()}")
    eventually(
        lambda: stack.secret_data(tenant, "db") == {"password": "changed-password"}, 30, "synced"
    )
    time.sleep(3)  # a refresh or more
    assert stack.ready_is(tenant, "db", "True")
    assert len(_warnings(stack, tenant, "RotationNotConfigured")) == 1
    assert _current(stack.vault, f"{tenant}/db")[0] == 2  # nothing rotated

    annotate("rotate=second")
    eventually(lambda: ignored("second"), 30, "the second request reported as ignored")
    eventually(lambda: len(_warnings(stack, tenant, "RotationNotConfigured")) == 2, 30, "Event")
    time.sleep(3)
    assert len(_warnings(stack, tenant, "RotationNotConfigured")) == 2
    assert stack.ready_is(tenant, "db", "True")

    stack.cp.kubectl("annotate", "vaultsecret", "db", "-n", tenant, "vaultsync.io/rotate-")
    eventually(
        lambda: condition(stack.vaultsecret(tenant, "db"), "RotationRequest") is None,
        30,
        "the condition gone with the annotation",
    )


def test_a_denied_write_changes_nothing_and_names_the_capability(stack: Stack, tenant: str) -> None:
    stack.put(f"{tenant}/db", {"password": "initial-password"})
    stack.apply(_rotating(tenant, {"interval": "1s"}))
    condition = eventually(
        lambda: (
            (c := stack.ready_is(tenant, "db", "False")) and c["reason"] == "RotationDenied" and c
        ),
        60,
        "RotationDenied",
    )
    assert "needs 'update' on secret/metadata/" in condition["message"]
    assert _current(stack.vault, f"{tenant}/db") == (1, {"password": "initial-password"})
    # the first sync may have come before the first slot: the Secret keeps that data
    assert stack.secret_data(tenant, "db") in (None, {"password": "initial-password"})


def test_password_policy_generator(stack: Stack, rotator: str) -> None:
    stack.put(f"{rotator}/db", {"password": "initial-password"})
    keys = [{"name": "password", "passwordPolicy": PASSWORD_POLICY}]
    stack.apply(_rotating(rotator, {"interval": "87600h", "keys": keys}))
    stack.cp.kubectl("annotate", "vaultsecret", "db", "-n", rotator, "vaultsync.io/rotate=now")
    eventually(lambda: _current(stack.vault, f"{rotator}/db")[0] == 2, 60, "rotated")
    _, data = eventually(lambda: _in_sync(stack, rotator), 30, "Secret equals Vault")
    assert len(data["password"]) == 20 and set(data["password"]) <= set(string.ascii_lowercase)


def test_an_external_writer_racing_rotation_never_loses_a_write(stack: Stack, rotator: str) -> None:
    """An external writer bumps `ext` while rotation runs every second: with check-and-set no
    rotation can write a version based on stale data, so `ext` never goes back."""
    stack.put(f"{rotator}/db", {"password": "initial-password", "ext": 0})
    stack.apply(_rotating(rotator, {"interval": "1s"}))
    # the first rotation records a slot; from then on the schedule runs on its own grid
    eventually(lambda: _current(stack.vault, f"{rotator}/db")[0] >= 2, 60, "a first rotation")
    stop = threading.Event()
    seen: list[tuple[int, dict[str, Any]]] = []  # every version the writer read, in order

    def writer() -> None:
        vault = stack.vault
        n = 0
        while not stop.is_set():
            n += 1
            version, data = _current(vault, f"{rotator}/db")
            seen.append((version, data))
            try:
                vault.secrets.kv.v2.create_or_update_secret(
                    f"{rotator}/db", {**data, "ext": n}, cas=version, mount_point="secret"
                )
            except hvac.exceptions.InvalidRequest:
                n -= 1  # lost to a rotation: try again on the new version
            time.sleep(random.uniform(0.05, 0.5))

    def rotated_during_the_race() -> bool:
        return len({data["password"] for _, data in seen}) > 2

    lost = stack.operator.metric("vaultsync_rotations_total", result="lost-race")
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(8)
        eventually(rotated_during_the_race, 60, "rotations between the external writes")
    finally:
        stop.set()
        thread.join()
    # KV keeps only the last versions, so the writer's own reads are the history: a version
    # based on stale data would carry an `ext` below one already written
    ext = [int(data.get("ext", 0)) for _, data in seen]
    assert ext == sorted(ext), "a rotation wrote a version based on stale data"
    assert [v for v, _ in seen] == sorted(v for v, _ in seen)
    print(
        "rotations that lost the race:",
        stack.operator.metric("vaultsync_rotations_total", result="lost-race") - lost,
    )
    eventually(lambda: _in_sync(stack, rotator), 30, "Secret equals Vault")


def test_downtime_across_slots_rotates_once_and_kill_9_never_rotates_twice(
    stack: Stack, rotator: str
) -> None:
    stack.put(f"{rotator}/db", {"password": "initial-password"})
    stack.apply(_rotating(rotator, {"interval": "5s"}))
    eventually(lambda: _current(stack.vault, f"{rotator}/db")[0] >= 2, 60, "a rotation")
    stack.operator.stop()
    stopped_at = _current(stack.vault, f"{rotator}/db")[0]
    time.sleep(16)  # three slots pass
    assert _current(stack.vault, f"{rotator}/db")[0] == stopped_at
    stack.operator.start()
    eventually(lambda: _current(stack.vault, f"{rotator}/db")[0] > stopped_at, 60, "caught up")
    time.sleep(3)
    assert _current(stack.vault, f"{rotator}/db")[0] == stopped_at + 1, "one rotation on return"
    for _ in range(4):  # kill -9 at random points of the schedule
        time.sleep(random.uniform(0.5, 5.0))
        stack.operator.kill()
        stack.operator.start()
    eventually(lambda: _in_sync(stack, rotator), 60, "Secret equals Vault after the kills")
    # An interval counts from the recorded slot of the last rotation, and a version is written
    # after its slot is found, at most LATE later on a loaded machine: versions i < j are at
    # least 5 (j - i) - LATE seconds apart. Two rotations for one slot are closer than LATE.
    created = _created(stack.vault, f"{rotator}/db")
    apart = [
        (j - i, (created[j] - created[i]).total_seconds())
        for i, j in itertools.combinations(range(len(created)), 2)
    ]
    assert all(s >= 5 * n - LATE for n, s in apart), f"two rotations for one slot: {apart}"


def test_a_lost_status_causes_no_extra_rotation(stack: Stack, rotator: str) -> None:
    stack.put(f"{rotator}/db", {"password": "initial-password"})
    obj = _rotating(rotator, {"interval": "1h"})
    obj["metadata"]["annotations"] = {"vaultsync.io/rotate": "once"}
    obj["spec"]["destination"] = {"name": "db", "deletionPolicy": "Retain"}
    stack.apply(obj)
    eventually(lambda: _current(stack.vault, f"{rotator}/db")[0] == 2, 60, "rotated once")
    eventually(lambda: stack.ready_is(rotator, "db", "True"), 30, "Ready")
    stack.cp.kubectl("delete", "vaultsecret", "db", "-n", rotator, "--timeout=60s")
    stack.apply(obj)  # a GitOps re-create: no status, the same annotation
    eventually(
        lambda: (stack.vaultsecret(rotator, "db").get("status") or {}).get("rotatedVersion") == 2,
        60,
        "status rebuilt from Vault's record",
    )
    time.sleep(3)
    assert _current(stack.vault, f"{rotator}/db")[0] == 2


def test_rotation_creates_a_secret_that_does_not_exist_once(stack: Stack, rotator: str) -> None:
    """Also with a rotate request there from the start (a manifest in Git): the creation is
    the rotation it asks for."""
    rotating = _rotating(rotator, {"interval": "87600h"})
    rotating["metadata"]["annotations"] = {"vaultsync.io/rotate": "from-git"}
    stack.apply(rotating)
    _, data = eventually(
        lambda: (
            stack.vault.secrets.kv.v2.list_secrets(rotator, mount_point="secret")
            and _in_sync(stack, rotator)
        ),
        60,
        "created in Vault and synced",
        retry_on=(hvac.exceptions.InvalidPath,),
    )
    assert set(data) == {"password"} and len(data["password"]) == 24
    time.sleep(3)
    assert _current(stack.vault, f"{rotator}/db")[0] == 1
