"""Rolling restarts of the workloads that use a VaultSecret's Secret, exactly when its data
changes.

Targets are `spec.rolloutRestartTargets` plus the workloads of the namespace that opt in with
the annotation `vaultsync.io/restart-on-change: "<secret>[,<secret>...]"` (listed when
needed, metadata only; nothing is watched). What is kept on a workload and how it is written
is in kube/workloads.py; what to do with one is decided here, purely (`decide`, `desired`):

- the value is a keyed HMAC of the Secret's data (`digest`), so the same data gives the same
  value whatever refreshes, operator restarts or GitOps re-applies happen: nothing to do;
- a workload seen for the first time is *recorded* (a metadata annotation, no rollout), unless
  the data changed in this very sync: adopting a workload restarts nothing;
- a changed value restarts it (pod-template annotation, or a Rollout's spec.restartAt), at
  once or, with `spec.restart.minInterval`, at the end of the window since its last restart
  by vaultsync (kept on the workload). A change inside the window is written as *pending* on
  the workload; the restart at the window's end applies every pending change of that
  workload, from any VaultSecret, in one rollout. Nothing is dropped;
- records made with another HMAC key (the key Secret was lost) are not comparable: they are
  re-recorded, not acted on.

Restarts never fail the sync: problems (a missing target, a denied patch, no Rollout CRD)
are reasons on the condition `Restarted`, the Secret sync and Ready stay as they are.
What converged is remembered per process, so a refresh that finds the same data makes no
request at all; after an operator restart the first reconcile reads the targets once and,
the values being equal, writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from vaultsync.api.base import parse_duration
from vaultsync.api.restart import RestartSpec, RolloutRestartTarget
from vaultsync.api.secret import SecretDestination
from vaultsync.kube import events
from vaultsync.kube.api import Kube
from vaultsync.kube.logref import about
from vaultsync.kube.workloads import (
    DAEMON_SET,
    DEPLOYMENT,
    KINDS,
    ROLLOUT,
    STATEFUL_SET,
    Conflict,
    Ours,
    WorkloadError,
    WorkloadKind,
    Workloads,
    annotation_name,
    opted_in,
    ours,
)
from vaultsync.runtime import metrics
from vaultsync.runtime.conditions import ConditionUpdate, get_condition
from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.destination import KEYS_ANNOTATION, written
from vaultsync.secrets.digest import keyed_digest

log = logging.getLogger(__name__)

CONDITION = "Restarted"
ATTEMPTS = 4  # applies per workload and reconcile before a conflict is left to the next one


# --- values -----------------------------------------------------------------------------------


def digest(key: bytes, data: Mapping[str, bytes]) -> str:
    """The trigger value: the keyed HMAC of the data (equal to the Secret's data-hash
    annotation when no labels or annotations are declared)."""
    return keyed_digest(key, data)


def key_id(key: bytes) -> str:
    """A short public name of the HMAC key, to tell records made with another key."""
    return hmac.new(key, b"vaultsync restart key id", hashlib.sha256).hexdigest()[:8]


def data_changed(previous: Mapping[str, Any] | None, data: Mapping[str, bytes]) -> bool:
    """Whether the sync replaced the data vaultsync writes into an existing Secret.

    previous is the Secret as read before the sync. A Secret created now is no change (no
    pod ran with other data of ours). With Merge, only the keys vaultsync wrote count."""
    if previous is None:
        return False
    stored = dict(previous.get("data") or {})
    annotations = (previous.get("metadata") or {}).get("annotations") or {}
    if KEYS_ANNOTATION in annotations:
        ours_keys = written(previous).keys
        stored = {k: v for k, v in stored.items() if k in ours_keys}
    try:
        decoded = {k: base64.b64decode(v) for k, v in stored.items()}
    except ValueError:
        return True
    return decoded != dict(data)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def due(state: Ours, min_interval: float) -> datetime | None:
    """When the workload may be restarted again (None: any time)."""
    last = _parse(state.restarted_at)
    if min_interval <= 0 or last is None:
        return None
    return last + timedelta(seconds=min_interval)


# --- deciding ---------------------------------------------------------------------------------


class Action(StrEnum):
    NONE = "none"  # the workload has the value
    RECORD = "record"  # first sight, data unchanged: remember the value, restart nothing
    DEFER = "defer"  # a change inside the minInterval window: pending until `due`
    RESTART = "restart"


@dataclass(frozen=True)
class Decision:
    action: Action
    due: datetime | None = None


def comparable(state: Ours, kid: str) -> Ours:
    """state without records and pending values made with another HMAC key."""
    if state.key_id in (None, kid):
        return state
    return replace(state, records={}, pending={}, key_id=None)


def decide(
    state: Ours, name: str, value: str, *, changed: bool, min_interval: float, now: datetime
) -> Decision:
    """What to do to a workload (state: comparable() ours) for the Secret whose annotation name
    part is name and whose data has the HMAC value; changed: the data changed in this sync."""
    record, pending = state.records.get(name), state.pending.get(name)
    latest = pending if pending is not None else record
    window = due(state, min_interval)
    if latest == value:
        if pending is None:
            return Decision(Action.NONE)
        if window is None or now >= window:
            return Decision(Action.RESTART)
        return Decision(Action.DEFER, window)
    if latest is None and not changed:
        return Decision(Action.RECORD)
    if window is not None and now < window:
        return Decision(Action.DEFER, window)
    return Decision(Action.RESTART)


def desired(
    kind: WorkloadKind,
    state: Ours,
    decision: Decision,
    name: str,
    value: str,
    kid: str,
    now: datetime,
) -> Ours:
    """Our fields on the workload after the decision (state: comparable() ours). A restart
    applies every pending value of the workload, this one's and other Secrets'."""
    records, pending = dict(state.records), dict(state.pending)
    triggers = dict(state.triggers)
    restarted_at, restart_at = state.restarted_at, state.restart_at
    if decision.action is Action.RECORD:
        records[name] = value
        pending.pop(name, None)
    elif decision.action is Action.DEFER:
        pending[name] = value
    elif decision.action is Action.RESTART:
        pending[name] = value
        records.update(pending)
        if kind.template_trigger:
            triggers.update(pending)
        pending = {}
        restarted_at = _text(now)
        if not kind.template_trigger:
            previous = _parse(restart_at)
            moment = now if previous is None or now > previous else previous + timedelta(seconds=1)
            restart_at = _text(moment)
    return Ours(records, pending, triggers, restarted_at, kid, restart_at)


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: WorkloadKind
    name: str
    explicit: bool  # listed in spec.rolloutRestartTargets (else opted in by annotation)

    def __str__(self) -> str:
        return f"{self.kind.kind} {self.name!r}"


@dataclass(frozen=True)
class Done:
    """What happened to one target."""

    target: Target
    action: Action | None = None
    due: datetime | None = None
    secrets: tuple[str, ...] = ()  # restarted for the changes of these (annotation names)
    problem: SyncError | None = None


@dataclass(frozen=True)
class Report:
    condition: ConditionUpdate
    wake_after: float | None = None
    restarted: tuple[str, ...] = ()  # "Deployment/api", for logs and tests


NO_TARGETS = Report(ConditionUpdate(CONDITION, None))


class Restarting(Protocol):
    """The spec of a kind whose Secret restarts workloads (VaultSecret, VaultPKISecret)."""

    @property
    def destination(self) -> SecretDestination: ...

    @property
    def rollout_restart_targets(self) -> list[RolloutRestartTarget]: ...

    @property
    def restart(self) -> RestartSpec | None: ...


def _what(body: Mapping[str, Any]) -> str:
    """The object, for the log: "VaultSecret team-a/db"."""
    meta = body["metadata"]
    return f"{body.get('kind', 'VaultSecret')} {meta['namespace']}/{meta['name']}"


class Restarts:
    """Restarts for every object of a kind; one instance per reconciler."""

    def __init__(self, kube: Kube, workloads: Workloads | None = None) -> None:
        self.kube = kube
        self.workloads = workloads or Workloads(kube)
        self._lock = threading.Lock()
        self._converged: dict[tuple[str, str], tuple[object, ConditionUpdate]] = {}
        self._unsettled: dict[tuple[str, str], str] = {}
        self._workload_locks = [threading.Lock() for _ in range(64)]
        self._denied: set[str] = set()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._converged.pop((namespace, name), None)
            self._unsettled.pop((namespace, name), None)

    def after_sync(
        self,
        body: Mapping[str, Any],
        spec: Restarting,
        key: bytes,
        previous: Mapping[str, Any] | None,
        data: Mapping[str, bytes],
    ) -> Report:
        """run() for an object whose Secret was just synced to data (previous: the
        Secret as read before the sync, None if it was created)."""
        window = spec.restart.min_interval if spec.restart is not None else "0"
        return self.run(
            body,
            secret=spec.destination.name,
            targets=spec.rollout_restart_targets,
            min_interval=parse_duration(window),
            key=key,
            previous=previous,
            data=data,
        )

    def run(
        self,
        body: Mapping[str, Any],
        *,
        secret: str,
        targets: Sequence[RolloutRestartTarget],
        min_interval: float,
        key: bytes,
        previous: Mapping[str, Any] | None,
        data: Mapping[str, bytes],
    ) -> Report:
        """Restart what needs it after a successful sync of Secret `secret` to `data`
        (previous: the Secret as it was before the sync). Never raises."""
        meta = body["metadata"]
        namespace, own = meta["namespace"], (meta["namespace"], meta["name"])
        value, kid = digest(key, data), key_id(key)
        fingerprint = (meta.get("uid"), secret, value, tuple(targets), min_interval)
        with self._lock:
            converged = self._converged.get(own)
            if converged is not None and converged[0] == fingerprint:
                return Report(converged[1])
            changed = data_changed(previous, data) or self._unsettled.get(own) == value
        try:
            found, done = self._targets(namespace, secret, targets)
            now = datetime.now(UTC)
            for target in found:
                done.append(
                    self._one(target, namespace, secret, value, kid, changed, min_interval, now)
                )
        except Exception as exc:  # a restart never fails the sync: it is said in the condition
            log.exception("restarts of %s", _what(body))
            problem = SyncError(f"unexpected error: {type(exc).__name__}", reason="RestartFailed")
            done = [Done(Target(DEPLOYMENT, "?", True), problem=problem)]
        report = self._report(body, secret, done, datetime.now(UTC)) if done else NO_TARGETS
        settled = all(d.problem is None and d.action is not Action.DEFER for d in done)
        with self._lock:
            if settled:
                self._converged[own] = (fingerprint, report.condition)
                self._unsettled.pop(own, None)
            else:
                self._converged.pop(own, None)
                if changed:
                    self._unsettled[own] = value
        return report

    def _targets(
        self, namespace: str, secret: str, spec: Sequence[RolloutRestartTarget]
    ) -> tuple[list[Target], list[Done]]:
        targets = [Target(KINDS[t.kind.value], t.name, True) for t in spec]
        problems: list[Done] = []
        kinds = [DEPLOYMENT, STATEFUL_SET, DAEMON_SET]
        try:
            if self.workloads.rollouts_installed():
                kinds.append(ROLLOUT)
        except WorkloadError as exc:
            log.warning("Argo Rollouts discovery: %s", exc)
        for kind in kinds:
            try:
                listed = self.workloads.opted_in(kind, namespace)
            except WorkloadError as exc:
                if exc.reason == "RestartDenied":
                    # Not allowed to list (the chart grants Rollouts only with
                    # rbac.argoRollouts): opting in cannot work, which is said once in the log
                    # rather than on every VaultSecret, most of which may not use it.
                    self._denied_once(kind, exc)
                    continue
                problems.append(Done(Target(kind, "*", False), problem=exc))
                continue
            for name, marks in sorted(listed.items()):
                if opted_in(marks, secret) and not any(
                    (t.kind, t.name) == (kind, name) for t in targets
                ):
                    targets.append(Target(kind, name, False))
        return targets, problems

    def _denied_once(self, kind: WorkloadKind, exc: WorkloadError) -> None:
        with self._lock:
            if kind.kind in self._denied:
                return
            self._denied.add(kind.kind)
        log.warning("workloads that opt in with an annotation are not restarted: %s", exc)

    def _workload_lock(self, namespace: str, target: Target) -> threading.Lock:
        index = hash((namespace, target.kind.kind, target.name)) % len(self._workload_locks)
        return self._workload_locks[index]

    def _one(
        self,
        target: Target,
        namespace: str,
        secret: str,
        value: str,
        kid: str,
        changed: bool,
        min_interval: float,
        now: datetime,
    ) -> Done:
        name = annotation_name(secret)
        kind = target.kind
        with self._workload_lock(namespace, target):
            for _ in range(ATTEMPTS):
                try:
                    obj = self.workloads.read(kind, namespace, target.name)
                except WorkloadError as exc:
                    return Done(target, problem=exc)
                if obj is None:
                    if not target.explicit:
                        return Done(target, Action.NONE)  # opted in, deleted since the list
                    return Done(
                        target,
                        problem=WorkloadError(
                            f"{target} does not exist in namespace {namespace!r}",
                            reason="TargetNotFound",
                        ),
                    )
                state = ours(kind, obj)
                base = comparable(state, kid)
                decision = decide(
                    base, name, value, changed=changed, min_interval=min_interval, now=now
                )
                want = desired(kind, base, decision, name, value, kid, now)
                restarted = tuple(sorted({*base.pending, name}))
                if want == state:
                    return Done(target, decision.action, decision.due)
                try:
                    self.workloads.apply(kind, obj, want)
                except Conflict:
                    continue  # changed meanwhile: read again and decide again
                except WorkloadError as exc:
                    return Done(target, problem=exc)
                if decision.action is Action.RESTART:
                    self._restarted(obj, kind, secret, restarted)
                    return Done(target, decision.action, secrets=restarted)
                return Done(target, decision.action, decision.due)
        return Done(
            target,
            problem=Conflict(f"{target} kept changing: {ATTEMPTS} applies in a row conflicted"),
        )

    def _restarted(
        self, obj: Mapping[str, Any], kind: WorkloadKind, secret: str, names: tuple[str, ...]
    ) -> None:
        meta = obj["metadata"]
        metrics.ROLLOUT_RESTARTS.labels(kind.kind, meta["namespace"], meta["name"]).inc()
        others = [n for n in names if n != annotation_name(secret)]
        also = f" (with the pending change of {', '.join(others)})" if others else ""
        events.emit(
            self.kube,
            {**obj, "apiVersion": kind.api_version, "kind": kind.kind},
            warning=False,
            reason="RolloutRestarted",
            message=f"vaultsync restarted it: the data of Secret {secret!r} changed{also}",
        )

    def _report(
        self, body: Mapping[str, Any], secret: str, done: list[Done], now: datetime
    ) -> Report:
        restarted = [d for d in done if d.action is Action.RESTART and d.problem is None]
        pending = [d for d in done if d.action is Action.DEFER and d.problem is None]
        problems = [d for d in done if d.problem is not None]
        if restarted:
            names = ", ".join(str(d.target) for d in restarted)
            message = f"the data of Secret {secret!r} changed: restarted {names}"
            log.info("%s: %s", _what(body), message, extra=about(body))
            events.emit(self.kube, body, warning=False, reason="RolloutRestarted", message=message)
        if problems:
            first = problems[0].problem
            assert first is not None
            text = "; ".join(str(d.problem) for d in problems)
            condition = ConditionUpdate(CONDITION, False, first.reason, text)
        elif pending:
            text = "; ".join(f"{d.target} restarts at {_text(d.due or now)}" for d in pending)
            condition = ConditionUpdate(CONDITION, False, "RestartPending", f"minInterval: {text}")
        else:
            names = ", ".join(str(d.target) for d in done)
            condition = ConditionUpdate(
                CONDITION, True, "UpToDate", f"{names} run the current data of Secret {secret!r}"
            )
        self._announce(body, condition)
        dues = [d.due for d in pending if d.due is not None]
        wake = max(0.0, (min(dues) - now).total_seconds()) + 0.5 if dues else None
        return Report(
            condition, wake, tuple(f"{d.target.kind.kind}/{d.target.name}" for d in restarted)
        )

    def _announce(self, body: Mapping[str, Any], condition: ConditionUpdate) -> None:
        """An Event when the condition's reason or message changes to a problem or a wait."""
        if condition.status:
            return
        before = get_condition((body.get("status") or {}).get("conditions") or [], CONDITION)
        if before is not None and (before.get("reason"), before.get("message")) == (
            condition.reason,
            condition.message,
        ):
            return
        events.emit(
            self.kube,
            body,
            warning=condition.reason != "RestartPending",
            reason=condition.reason,
            message=condition.message,
        )
