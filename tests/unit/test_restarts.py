"""Rolling restarts, pure parts and the runner against an in-memory API: values are keyed
HMACs, annotation keys are valid, adoption restarts nothing, every change restarts exactly
once (coalesced by minInterval, never dropped), an operator restart writes nothing."""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from pydantic import TypeAdapter, ValidationError

from vaultsync.api.restart import RestartSpec, RolloutRestartTarget, RolloutRestartTargets
from vaultsync.kube import hmackey
from vaultsync.kube.workloads import (
    DEPLOYMENT,
    FIELD_MANAGER,
    KEY_ID_ANNOTATION,
    KINDS,
    OPT_IN_ANNOTATION,
    PENDING_PREFIX,
    RESTARTED_AT_ANNOTATION,
    ROLLOUT,
    TRIGGER_PREFIX,
    Conflict,
    Ours,
    WorkloadError,
    WorkloadKind,
    annotation_name,
    apply_body,
    opted_in,
    ours,
)
from vaultsync.runtime.conditions import ConditionUpdate, apply_updates
from vaultsync.secrets.digest import keyed_digest
from vaultsync.secrets.restarts import (
    CONDITION,
    Action,
    Decision,
    Restarts,
    comparable,
    data_changed,
    decide,
    desired,
    digest,
    key_id,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
# The name part of an annotation key (Kubernetes' qualified-name rule).
NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


# --- values and keys --------------------------------------------------------------------------


def test_digest_is_a_keyed_hmac_stable_for_the_same_data() -> None:
    data = {"password": b"hunter2", "user": b"app"}
    assert digest(KEY, data) == digest(KEY, dict(reversed(list(data.items()))))
    assert re.fullmatch(r"[0-9a-f]{32}", digest(KEY, data))
    assert digest(KEY, data) != digest(OTHER_KEY, data)
    assert digest(KEY, data) != digest(KEY, {**data, "password": b"hunter3"})
    unkeyed = hashlib.sha256()
    for name in sorted(data):
        unkeyed.update(name.encode() + b"\0" + data[name] + b"\0")
    assert digest(KEY, data) != unkeyed.hexdigest()[:32]  # not the old brute-forceable hash


def test_digest_separates_keys_from_values_and_metadata() -> None:
    assert keyed_digest(KEY, {"ab": b"c"}) != keyed_digest(KEY, {"a": b"bc"})
    assert keyed_digest(KEY, {"a": b"1"}) != keyed_digest(KEY, {"a": b"1"}, {"label/x": "y"})
    # the restart trigger is the data-hash of a Secret without declared metadata
    assert digest(KEY, {"a": b"1"}) == keyed_digest(KEY, {"a": b"1"}, {})


def test_key_id_names_the_key_without_revealing_it() -> None:
    assert key_id(KEY) == key_id(bytes(KEY))
    assert key_id(KEY) != key_id(OTHER_KEY)
    assert len(key_id(KEY)) == 8


@pytest.mark.parametrize("name", ["db", "a", "x" * 63, "db-credentials.v2"])
def test_short_secret_names_are_the_annotation_name(name: str) -> None:
    assert annotation_name(name) == name
    assert NAME_PART.fullmatch(annotation_name(name))


@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{62,251}[a-z0-9])", fullmatch=True),
)
def test_long_secret_names_become_valid_unique_annotation_names(name: str) -> None:
    part = annotation_name(name)
    assert len(part) <= 63
    assert NAME_PART.fullmatch(part), part
    assert part.startswith(name[:54])
    assert part == annotation_name(name)
    twin = name[:-1] + ("b" if name[-1] != "b" else "c")
    assert annotation_name(twin) != part  # same 54-character prefix, other hash


def test_opt_in_annotation_lists_secret_names() -> None:
    marks = {OPT_IN_ANNOTATION: " db , api-token,"}
    assert opted_in(marks, "db")
    assert opted_in(marks, "api-token")
    assert not opted_in(marks, "d")
    assert not opted_in({}, "db")


# --- data changed ----------------------------------------------------------------------------


def secret(data: dict[str, bytes], **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": annotations},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def test_data_changed_compares_what_we_wrote() -> None:
    assert not data_changed(None, {"a": b"1"})  # created now: nobody ran with other data
    assert not data_changed(secret({"a": b"1"}), {"a": b"1"})
    assert data_changed(secret({"a": b"1"}), {"a": b"2"})
    assert data_changed(secret({"a": b"1"}), {"a": b"1", "b": b"2"})
    merged = secret({"a": b"1", "foreign": b"x"}, **{"vaultsync.io/managed-keys": '["a"]'})
    assert not data_changed(merged, {"a": b"1"})
    assert data_changed(merged, {"a": b"2"})


def test_upgrade_from_the_unkeyed_hash_is_no_data_change() -> None:
    old = secret({"a": b"1"}, **{"vaultsync.io/data-hash": "0123456789abcdef0123456789abcdef"})
    assert not data_changed(old, {"a": b"1"})


# --- what is ours on a workload ---------------------------------------------------------------


def deployment(
    annotations: dict[str, str] | None = None,
    template: dict[str, str] | None = None,
    rv: str = "1",
    name: str = "api",
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "resourceVersion": rv,
            "uid": f"uid-{name}",
            "generation": 1,
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": dict(template or {})},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def rollout(annotations: dict[str, str] | None = None, restart_at: str | None = None) -> Any:
    obj = deployment(annotations)
    obj.update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
    if restart_at:
        obj["spec"]["restartAt"] = restart_at
    return obj


def test_ours_reads_only_our_annotations() -> None:
    obj = deployment(
        {
            TRIGGER_PREFIX + "db": "h1",
            PENDING_PREFIX + "api-token": "h2",
            RESTARTED_AT_ANNOTATION: "2026-01-01T00:00:00Z",
            KEY_ID_ANNOTATION: "k",
            "deployment.kubernetes.io/revision": "3",
            OPT_IN_ANNOTATION: "db",
        },
        {TRIGGER_PREFIX + "db": "h0", "kubectl.kubernetes.io/restartedAt": "x"},
    )
    state = ours(DEPLOYMENT, obj)
    assert state == Ours(
        records={"db": "h1"},
        pending={"api-token": "h2"},
        triggers={"db": "h0"},
        restarted_at="2026-01-01T00:00:00Z",
        key_id="k",
    )
    assert ours(ROLLOUT, rollout(restart_at="2026-01-01T00:00:00Z")).restart_at == (
        "2026-01-01T00:00:00Z"
    )


def test_apply_body_carries_all_our_fields_and_nothing_else() -> None:
    obj = deployment(rv="42")
    want = Ours({"db": "h1", "x": "h3"}, {"y": "h4"}, {"db": "h1"}, "2026-01-01T00:00:00Z", "k")
    body = apply_body(DEPLOYMENT, obj, want)
    assert body == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "namespace": "team-a",
            "resourceVersion": "42",
            "annotations": {
                TRIGGER_PREFIX + "db": "h1",
                TRIGGER_PREFIX + "x": "h3",
                PENDING_PREFIX + "y": "h4",
                RESTARTED_AT_ANNOTATION: "2026-01-01T00:00:00Z",
                KEY_ID_ANNOTATION: "k",
            },
        },
        "spec": {"template": {"metadata": {"annotations": {TRIGGER_PREFIX + "db": "h1"}}}},
    }
    recorded_only = apply_body(DEPLOYMENT, obj, Ours({"db": "h1"}, key_id="k"))
    assert "spec" not in recorded_only  # no trigger yet: the pod template is not touched
    roll = apply_body(ROLLOUT, rollout(), Ours({"db": "h1"}, restart_at="2026-01-01T00:00:00Z"))
    assert roll["spec"] == {"restartAt": "2026-01-01T00:00:00Z"}
    assert roll["apiVersion"] == "argoproj.io/v1alpha1"
    assert FIELD_MANAGER == "vaultsync"


# --- deciding ---------------------------------------------------------------------------------


def decided(state: Ours, value: str = "new", **kwargs: Any) -> Decision:
    args: dict[str, Any] = {"changed": False, "min_interval": 0.0, "now": NOW, **kwargs}
    return decide(state, "db", value, **args)


def test_first_sight_records_and_restarts_nothing() -> None:
    assert decided(Ours()) == Decision(Action.RECORD)
    want = desired(DEPLOYMENT, Ours(), Decision(Action.RECORD), "db", "new", "k", NOW)
    assert want.records == {"db": "new"}
    assert want.triggers == {}  # the pod template stays as it is: no rollout
    assert want.restarted_at is None


def test_first_sight_in_the_sync_that_changed_the_data_restarts() -> None:
    assert decided(Ours(), changed=True) == Decision(Action.RESTART)


def test_same_value_does_nothing_whatever_else() -> None:
    state = Ours({"db": "new"}, {}, {"db": "new"}, NOW.isoformat(), "k")
    for changed in (False, True):
        assert decided(state, changed=changed, min_interval=3600) == Decision(Action.NONE)


def test_a_new_value_restarts_and_writes_the_trigger() -> None:
    state = Ours({"db": "old", "other": "o"}, {}, {"db": "old", "other": "o"}, None, "k")
    decision = decided(state)
    assert decision == Decision(Action.RESTART)
    want = desired(DEPLOYMENT, state, decision, "db", "new", "k", NOW)
    assert want.records == {"db": "new", "other": "o"}
    assert want.triggers == {"db": "new", "other": "o"}  # the other Secret's trigger is kept
    assert want.restarted_at == "2026-03-01T12:00:00Z"


def test_a_recorded_workload_gets_its_first_trigger_on_the_first_change() -> None:
    state = Ours({"db": "old"}, key_id="k")
    want = desired(DEPLOYMENT, state, decided(state), "db", "new", "k", NOW)
    assert want.triggers == {"db": "new"}


def test_inside_the_window_a_change_waits_as_pending() -> None:
    last = NOW - timedelta(seconds=20)
    state = Ours({"db": "old"}, {}, {"db": "old"}, last.strftime("%Y-%m-%dT%H:%M:%SZ"), "k")
    decision = decided(state, min_interval=60)
    assert decision == Decision(Action.DEFER, last + timedelta(seconds=60))
    want = desired(DEPLOYMENT, state, decision, "db", "new", "k", NOW)
    assert want.pending == {"db": "new"}
    assert want.triggers == {"db": "old"}  # not yet
    # later, the same value: still waiting, nothing new to write
    later = NOW + timedelta(seconds=10)
    assert decided(want, min_interval=60, now=later) == decision
    # a newer value inside the window replaces the pending one: one restart, latest data
    newer = decided(want, "newer", min_interval=60, now=later)
    assert newer.action is Action.DEFER
    # at the window's end: restart
    end = last + timedelta(seconds=60)
    assert decided(want, min_interval=60, now=end) == Decision(Action.RESTART)


def test_a_restart_applies_every_pending_change_of_the_workload() -> None:
    state = Ours({"db": "old", "token": "t1"}, {"token": "t2"}, {"db": "old", "token": "t1"})
    want = desired(DEPLOYMENT, state, Decision(Action.RESTART), "db", "new", "k", NOW)
    assert want.pending == {}
    assert want.records == {"db": "new", "token": "t2"}
    assert want.triggers == {"db": "new", "token": "t2"}


def test_rollouts_restart_through_restart_at_strictly_later() -> None:
    state = Ours({"db": "old"}, restart_at="2026-03-01T12:00:00Z")
    want = desired(ROLLOUT, state, Decision(Action.RESTART), "db", "new", "k", NOW)
    assert want.triggers == {}
    assert want.records == {"db": "new"}
    assert want.restart_at == "2026-03-01T12:00:01Z"  # same second as before: one later
    fresh = desired(ROLLOUT, Ours({"db": "old"}), Decision(Action.RESTART), "db", "n", "k", NOW)
    assert fresh.restart_at == "2026-03-01T12:00:00Z"


def test_records_made_with_another_key_are_recorded_again_not_acted_on() -> None:
    state = Ours({"db": "h-old-key", "x": "y"}, {"z": "p"}, {"db": "h-old-key"}, None, "oldkid")
    base = comparable(state, "newkid")
    assert base.records == {} and base.pending == {}
    assert base.triggers == state.triggers
    decision = decided(base)
    assert decision == Decision(Action.RECORD)
    want = desired(DEPLOYMENT, base, decision, "db", "new", "newkid", NOW)
    assert want.records == {"db": "new"}
    assert want.key_id == "newkid"
    assert want.triggers == {"db": "h-old-key"}  # untouched: no rollout
    assert comparable(state, "oldkid") is state


@settings(max_examples=200, deadline=None)
@given(
    changes=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=12),
    interval=st.sampled_from([0, 30, 60, 120]),
)
def test_coalescing_never_drops_a_change_and_respects_the_window(
    changes: list[int], interval: int
) -> None:
    """Data changes at the given seconds; the loop reconciles at each change and whenever a
    DEFER asks. At the end the workload has the last value; restarts are minInterval apart;
    every restart carries a value that was not applied before."""
    times = sorted(set(changes))
    state = Ours({"db": "v-initial"}, {}, {"db": "v-initial"}, None, "k")
    restarts: list[datetime] = []
    wakes: list[datetime] = []
    value = "v-initial"
    events = [(NOW + timedelta(seconds=t), f"v{t}") for t in times]
    clock = NOW
    while events or wakes:
        next_change = events[0][0] if events else None
        next_wake = min(wakes) if wakes else None
        if next_change is not None and (next_wake is None or next_change <= next_wake):
            clock, value = events.pop(0)
            changed = True
        else:
            assert next_wake is not None
            clock = next_wake
            wakes.remove(next_wake)
            changed = False
        decision = decide(state, "db", value, changed=changed, min_interval=interval, now=clock)
        before = state
        state = desired(DEPLOYMENT, state, decision, "db", value, "k", clock)
        if decision.action is Action.RESTART:
            assert state.triggers["db"] != before.triggers.get("db")
            restarts.append(clock)
        elif decision.action is Action.DEFER:
            assert decision.due is not None and decision.due > clock
            wakes.append(decision.due)
    assert state.triggers["db"] == value == events_last(times)
    assert state.pending == {}
    for earlier, later in itertools.pairwise(restarts):
        assert (later - earlier).total_seconds() >= interval
    assert len(restarts) <= len(times)


def events_last(times: list[int]) -> str:
    return f"v{times[-1]}"


# --- the runner against an in-memory API ------------------------------------------------------


@dataclass
class FakeWorkloads:
    """Workloads in memory, applied like server-side apply of our fields at a resourceVersion;
    rollouts counted as pod-template (or restartAt) changes."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[tuple[str, str], int] = field(default_factory=dict)
    reads: int = 0
    applies: int = 0
    lists: int = 0
    conflicts: int = 0  # make the next n applies conflict (a concurrent change)
    denied: set[tuple[str, str]] = field(default_factory=set)
    list_denied: bool = False
    crd: bool = True

    def add(self, obj: dict[str, Any]) -> None:
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        self.rollouts.setdefault((obj["kind"], obj["metadata"]["name"]), 0)

    def rollouts_installed(self, *, fresh: bool = False) -> bool:
        return self.crd

    def read(self, kind: WorkloadKind, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        if kind is ROLLOUT and not self.crd:
            raise WorkloadError("no CRD", reason="RolloutCRDMissing")
        obj = self.objects.get((kind.kind, name))
        return copy.deepcopy(obj) if obj is not None else None

    def opted_in(self, kind: WorkloadKind, namespace: str) -> dict[str, dict[str, str]]:
        self.lists += 1
        if self.list_denied:
            raise WorkloadError("list: 403 forbidden", reason="RestartDenied")
        return {
            o["metadata"]["name"]: o["metadata"]["annotations"]
            for (k, _), o in self.objects.items()
            if k == kind.kind and OPT_IN_ANNOTATION in o["metadata"]["annotations"]
        }

    def apply(self, kind: WorkloadKind, obj: dict[str, Any], want: Ours) -> dict[str, Any]:
        key = (kind.kind, obj["metadata"]["name"])
        if key in self.denied:
            raise WorkloadError("patch: 403 forbidden", reason="RestartDenied")
        stored = self.objects[key]
        if self.conflicts:
            self.conflicts -= 1
            stored["metadata"]["resourceVersion"] = str(
                int(stored["metadata"]["resourceVersion"]) + 1
            )
        body = apply_body(kind, obj, want)
        if body["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]:
            raise Conflict("409")
        self.applies += 1
        before = ours(kind, stored)
        mine = (TRIGGER_PREFIX, PENDING_PREFIX, RESTARTED_AT_ANNOTATION, KEY_ID_ANNOTATION)
        meta = stored["metadata"]
        meta["annotations"] = {
            k: v for k, v in meta["annotations"].items() if not k.startswith(mine)
        } | body["metadata"]["annotations"]
        template = stored["spec"]["template"]["metadata"]
        if kind.template_trigger:
            template["annotations"] = {
                k: v for k, v in template["annotations"].items() if not k.startswith(TRIGGER_PREFIX)
            } | body.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        elif "spec" in body:
            stored["spec"]["restartAt"] = body["spec"]["restartAt"]
        after = ours(kind, stored)
        if (after.triggers, after.restart_at) != (before.triggers, before.restart_at):
            self.rollouts[key] += 1
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(stored)


class FakeCore:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def create_namespaced_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)


@dataclass
class FakeKube:
    core: FakeCore = field(default_factory=FakeCore)
    custom: Any = None
    events: Any = None  # Events posted at once


def vaultsecret(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": "db", "namespace": "team-a", "uid": "vs-uid"},
        "status": status or {},
    }


TARGET = [RolloutRestartTarget(kind="Deployment", name="api")]


def runner(fake: FakeWorkloads) -> tuple[Restarts, FakeKube]:
    kube = FakeKube()
    return Restarts(kube, fake), kube  # type: ignore[arg-type]


def run(
    restarts: Restarts,
    data: dict[str, bytes],
    previous: dict[str, bytes] | None,
    targets: list[RolloutRestartTarget] = TARGET,
    **kwargs: Any,
) -> Any:
    return restarts.run(
        vaultsecret(kwargs.pop("status", None)),
        secret="db",
        targets=targets,
        min_interval=kwargs.pop("min_interval", 0.0),
        key=KEY,
        previous=secret(previous) if previous is not None else None,
        data=data,
    )


def test_runner_adopts_then_restarts_once_per_change_and_caches() -> None:
    fake = FakeWorkloads()
    fake.add(deployment())
    restarts, kube = runner(fake)
    first = run(restarts, {"p": b"1"}, None)
    assert first.condition.status is True and first.condition.reason == "UpToDate"
    assert fake.rollouts[("Deployment", "api")] == 0  # adopted: recorded, not restarted
    reads = fake.reads
    for _ in range(5):  # refreshes with the same data: no request at all
        assert run(restarts, {"p": b"1"}, {"p": b"1"}).condition == first.condition
    assert fake.reads == reads
    changed = run(restarts, {"p": b"2"}, {"p": b"1"})
    assert changed.restarted == ("Deployment/api",)
    assert fake.rollouts[("Deployment", "api")] == 1
    reasons = [e["reason"] for e in kube.core.events]
    assert reasons.count("RolloutRestarted") == 2  # on the VaultSecret and on the Deployment
    stored = fake.objects[("Deployment", "api")]
    value = stored["spec"]["template"]["metadata"]["annotations"][TRIGGER_PREFIX + "db"]
    assert value == digest(KEY, {"p": b"2"})
    assert run(restarts, {"p": b"2"}, {"p": b"2"}).restarted == ()
    assert fake.rollouts[("Deployment", "api")] == 1


def test_a_new_operator_process_reads_once_and_writes_nothing() -> None:
    fake = FakeWorkloads()
    fake.add(deployment())
    before, _ = runner(fake)
    run(before, {"p": b"1"}, None)
    run(before, {"p": b"2"}, {"p": b"1"})
    applies = fake.applies
    after, _ = runner(fake)  # a restarted operator: nothing in memory
    report = run(after, {"p": b"2"}, {"p": b"2"})
    assert report.condition.status is True
    assert fake.applies == applies
    assert fake.rollouts[("Deployment", "api")] == 1


def test_a_restart_missed_by_a_crash_after_the_secret_write_still_happens() -> None:
    fake = FakeWorkloads()
    fake.add(deployment())
    first, _ = runner(fake)
    run(first, {"p": b"1"}, None)
    # the Secret got the new data, then the operator died before the restart
    after, _ = runner(fake)
    report = run(after, {"p": b"2"}, {"p": b"2"})
    assert report.restarted == ("Deployment/api",)  # recorded value differs: restart


def test_conflicts_are_read_again_and_decided_again() -> None:
    fake = FakeWorkloads()
    fake.add(deployment())
    restarts, _ = runner(fake)
    run(restarts, {"p": b"1"}, None)
    fake.conflicts = 2
    assert run(restarts, {"p": b"2"}, {"p": b"1"}).restarted == ("Deployment/api",)
    assert fake.rollouts[("Deployment", "api")] == 1


def test_problems_are_a_condition_and_retried_and_a_change_is_not_lost() -> None:
    fake = FakeWorkloads()
    restarts, kube = runner(fake)
    missing = run(restarts, {"p": b"1"}, None)
    assert missing.condition == ConditionUpdate(
        CONDITION,
        False,
        "TargetNotFound",
        "Deployment 'api' does not exist in namespace 'team-a'",
    )
    assert [e["type"] for e in kube.core.events] == ["Warning"]
    fake.add(deployment())
    fake.denied.add(("Deployment", "api"))
    denied = run(restarts, {"p": b"2"}, {"p": b"1"})  # the data changed now, restart denied
    assert denied.condition.reason == "RestartDenied"
    fake.denied.clear()
    # the next refresh sees no data change in the Secret, but the change was never applied
    retried = run(restarts, {"p": b"2"}, {"p": b"2"})
    assert retried.restarted == ("Deployment/api",)
    assert retried.condition.status is True


def test_rollout_targets_without_their_crd_say_so() -> None:
    fake = FakeWorkloads(crd=False)
    restarts, _ = runner(fake)
    targets = [RolloutRestartTarget(kind="Rollout", name="web")]
    report = run(restarts, {"p": b"1"}, None, targets=targets)
    assert report.condition.reason == "RolloutCRDMissing"


def test_opted_in_workloads_are_targets_too() -> None:
    fake = FakeWorkloads()
    fake.add(deployment({OPT_IN_ANNOTATION: "other,db"}, name="web"))
    fake.add(deployment({OPT_IN_ANNOTATION: "other"}, name="not-me"))
    restarts, _ = runner(fake)
    run(restarts, {"p": b"1"}, None, targets=[])
    report = run(restarts, {"p": b"2"}, {"p": b"1"}, targets=[])
    assert report.restarted == ("Deployment/web",)
    assert fake.rollouts[("Deployment", "not-me")] == 0


def test_no_targets_removes_the_condition() -> None:
    restarts, _ = runner(FakeWorkloads())
    report = run(restarts, {"p": b"1"}, None, targets=[])
    assert report.condition == ConditionUpdate(CONDITION, None)
    conditions = [{"type": "Ready"}, {"type": CONDITION}]
    assert apply_updates(conditions, (report.condition,), 1) == [{"type": "Ready"}]


def test_min_interval_defers_and_wakes_at_the_window_end() -> None:
    fake = FakeWorkloads()
    fake.add(deployment())
    restarts, _ = runner(fake)
    run(restarts, {"p": b"1"}, None, min_interval=600)
    run(restarts, {"p": b"2"}, {"p": b"1"}, min_interval=600)  # restarts: no restart before
    assert fake.rollouts[("Deployment", "api")] == 1
    deferred = run(restarts, {"p": b"3"}, {"p": b"2"}, min_interval=600)
    assert deferred.condition.reason == "RestartPending"
    assert deferred.wake_after is not None and 590 < deferred.wake_after <= 601
    assert fake.rollouts[("Deployment", "api")] == 1
    stored = fake.objects[("Deployment", "api")]["metadata"]["annotations"]
    assert stored[PENDING_PREFIX + "db"] == digest(KEY, {"p": b"3"})
    # an operator restart inside the window keeps waiting (the state is on the workload)
    again, _ = runner(fake)
    assert run(again, {"p": b"3"}, {"p": b"3"}, min_interval=600).condition.reason == (
        "RestartPending"
    )
    # the window ends (pretend the last restart was long ago)
    stored[RESTARTED_AT_ANNOTATION] = "2000-01-01T00:00:00Z"
    done = run(again, {"p": b"3"}, {"p": b"3"}, min_interval=600)
    assert done.restarted == ("Deployment/api",)
    assert fake.rollouts[("Deployment", "api")] == 2


# --- the HMAC key Secret ----------------------------------------------------------------------


class KeyCore:
    def __init__(self, existing: str | None = None, race: str | None = None) -> None:
        self.stored = existing
        self.race = race  # another replica creates this key just before us
        self.creates = 0

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if self.stored is None:
            raise ApiException(status=404)
        return {"data": {"key": self.stored}}

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.creates += 1
        if self.race is not None:
            self.stored = self.race
            raise ApiException(status=409)
        self.stored = body["data"]["key"]
        return body


def test_the_key_is_created_once_and_read_after() -> None:
    core = KeyCore()
    kube: Any = FakeKube(core=core)  # type: ignore[arg-type]
    key = hmackey.load_or_create(kube, "ops")
    assert len(key) == 32
    assert hmackey.load_or_create(kube, "ops") == key
    assert core.creates == 1


def test_a_replica_that_loses_the_create_race_uses_the_winners_key() -> None:
    theirs = base64.b64encode(b"w" * 32).decode()
    kube: Any = FakeKube(core=KeyCore(race=theirs))  # type: ignore[arg-type]
    assert hmackey.load_or_create(kube, "ops") == b"w" * 32


def test_a_broken_key_is_an_error_never_replaced() -> None:
    core = KeyCore(existing=base64.b64encode(b"short").decode())
    kube: Any = FakeKube(core=core)  # type: ignore[arg-type]
    with pytest.raises(hmackey.HmacKeyUnavailable, match="never replaces"):
        hmackey.load_or_create(kube, "ops")
    assert core.creates == 0


# --- the API ----------------------------------------------------------------------------------


def test_targets_are_unique_known_kinds() -> None:
    targets = TypeAdapter(RolloutRestartTargets)
    assert [t.kind for t in targets.validate_python([{"kind": "Rollout", "name": "web"}])] == [
        "Rollout"
    ]
    with pytest.raises(ValidationError, match="same workload"):
        targets.validate_python([{"kind": "Deployment", "name": "a"}] * 2)
    with pytest.raises(ValidationError):
        targets.validate_python([{"kind": "CronJob", "name": "a"}])
    assert set(KINDS) == {"Deployment", "StatefulSet", "DaemonSet", "Rollout"}
    assert RestartSpec.model_validate({"minInterval": "5m"}).min_interval == "5m"
    with pytest.raises(ValidationError):
        RestartSpec.model_validate({"minInterval": "soon"})


def test_a_denied_opt_in_listing_is_logged_not_a_condition_on_every_vaultsecret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeWorkloads(list_denied=True)
    restarts, _ = runner(fake)
    assert run(restarts, {"p": b"1"}, None, targets=[]).condition == ConditionUpdate(
        CONDITION, None
    )
    fake.add(deployment())
    assert run(restarts, {"p": b"1"}, None).condition.status is True  # explicit targets work
    denied = [r for r in caplog.records if "opt in" in r.getMessage()]
    assert len(denied) == 4  # once per kind, not per reconcile
