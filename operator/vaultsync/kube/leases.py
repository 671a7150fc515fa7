"""Shards (or, without shards, the leadership) held through coordination.k8s.io Leases in
the operator's namespace.

Every replica keeps a member Lease of its own (`<group>-member-<identity>`) renewed, reads
the group's Leases, works out who should hold what (runtime/sharding.py: the leader and N
shards, round-robin over the live members) and then:
- renews what it holds and should keep;
- hands over what should be another's: it stops starting work there at once, keeps renewing
  until the reconciles that run there have ended, then clears the holder, so the new holder
  takes it at its next step;
- takes what should be its own when the Lease is free, or unchanged for a whole duration by
  this replica's clock (its holder is dead; even when the holder has its own name).
Every write is a replace at the resourceVersion read, so two replicas never both win a Lease;
a holder that cannot renew stops starting work two thirds of a duration after its last
renewal, before anyone else can take the Lease. Replicas that disagree on the shard count (a
rolling update that changes it) hold nothing until only one count is alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe, drain
from vaultsync.runtime import metrics
from vaultsync.runtime.sharding import LEADER, Held, Observations, assign, shard_of

GROUP_LABEL = "vaultsync.io/lease-group"
ROLE_LABEL = "vaultsync.io/lease-role"
SHARDS_ANNOTATION = "vaultsync.io/shards"
PRIORITY_ANNOTATION = "vaultsync.io/priority"
log = logging.getLogger(__name__)
Lease = dict[str, Any]


def _lease(name: str, labels: dict[str, str], spec: dict[str, Any], **meta: Any) -> Lease:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "labels": labels, **meta},
        "spec": spec,
    }


@dataclass(frozen=True)
class Hooks:
    """What the coordinator tells the schedulers, in the event loop."""

    gained: Callable[[str], None]  # work on this shard now: its objects are due
    lost: Callable[[str], None]  # no longer held (taken, or could not be renewed)
    busy: Callable[[str], bool]  # whether a reconcile of this shard still runs


class Coordinator:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        group: str,
        identity: str,
        shards: int,
        duration: float,
        hooks: Hooks,
        priority: int = 0,
    ) -> None:
        self.identity = identity
        self.shards = shards
        self.priority = priority
        self.duration = duration
        self._api = client.CoordinationV1Api(kube.core.api_client)
        self._namespace = namespace
        self._group = group
        self._hooks = hooks
        self._held: dict[str, Held] = {}
        self._leases: dict[str, Lease] = {}  # as last written by this replica
        self._releasing: set[str] = set()
        self._observed = Observations()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="leases")  # never queued
        self._stopping = False
        self._stepped: float | None = None  # when a step last succeeded
        self._joined = False  # its member Lease was there for the others' last step
        self._failure = "not started"

    @property
    def period(self) -> float:
        return self.duration / 3

    @property
    def member(self) -> str:
        return f"{self._group}-member-{self.identity}"

    def owns(self, namespace: str) -> bool:
        """Whether this replica may start reconciling an object of this namespace now."""
        return self.holds(shard_of(namespace, self.shards))

    def holds(self, item: str) -> bool:
        held = self._held.get(item)
        return (
            held is not None and item not in self._releasing and time.monotonic() < held.work_until
        )

    def held(self) -> list[str]:
        return sorted(item for item in self._held if self.holds(item))

    def lease_name(self, item: str) -> str:
        return f"{self._group}-{item}"

    async def run(self) -> None:
        """Step every third of a duration until cancelled; a failed step is retried."""
        while True:
            try:
                await self.step()
                self._stepped = time.monotonic()
            except ApiException as exc:
                self._failure = describe(exc)
                log.warning("leases: %s", self._failure)
            except Exception as exc:  # never the end of the loop; held shards lapse on their own
                self._failure = type(exc).__name__
                log.exception("leases: step failed")
            await asyncio.sleep(self.period)

    def problem(self) -> str | None:
        """For readiness: None while the Leases are read and written (the last step, at most
        three periods ago, succeeded); else what failed. A replica that cannot reach its
        Leases holds nothing and does nothing."""
        if self._stepped is not None and time.monotonic() - self._stepped < 3 * self.period:
            return None
        return f"leases: {self._failure}"

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Lease:
        """One request in the coordinator's own thread (never behind the reconciles), its
        response as JSON."""

        def call() -> Lease:
            found: Lease = json.loads(drain(fn(*args, **kwargs, _preload_content=False)) or "{}")
            return found

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def step(self) -> None:
        await self._renew_member()
        listing = await self._call(
            self._api.list_namespaced_lease,
            self._namespace,
            label_selector=f"{GROUP_LABEL}={self._group}",
        )
        now = time.monotonic()
        members, counts, by_name = {self.identity: self.priority}, {self.shards}, {}
        for lease in listing.get("items") or []:
            meta, spec = lease["metadata"], lease.get("spec") or {}
            by_name[meta["name"]] = lease
            seen = self._observed.see(
                meta["name"],
                meta["resourceVersion"],
                spec.get("holderIdentity") or "",
                float(spec.get("leaseDurationSeconds") or self.duration),
                now,
            )
            if (meta.get("labels") or {}).get(ROLE_LABEL) == "member" and not seen.expired(now):
                annotations = meta.get("annotations") or {}
                members[seen.holder] = int(annotations.get(PRIORITY_ANNOTATION) or 0)
                counts.add(int(annotations.get(SHARDS_ANNOTATION) or 0))
        self._observed.forget_except(by_name)
        wanted: dict[str, str] = {}
        if len(counts) > 1:
            log.warning(
                "leases: live replicas disagree on the shard count (%s); holding none "
                "until one count is left",
                sorted(counts),
            )
        elif not self._stopping:
            wanted = assign(members, self.shards)
        for item in list(self._held):
            if wanted.get(item) != self.identity:
                self._releasing.add(item)
            if item in self._releasing and not self._hooks.busy(item):
                await self._release(item)
            else:
                await self._renew(item)
        # A replica takes nothing at its first step: replicas started together would each
        # see only themselves, take everything, and hand most of it over again at once.
        for item, holder in wanted.items() if self._joined else ():
            if holder == self.identity and item not in self._held:
                await self._acquire(item, by_name.get(self.lease_name(item)))
        self._joined = True
        if self.holds(LEADER):
            await self._forget_dead_members(by_name, now)

    async def _forget_dead_members(self, leases: dict[str, Lease], now: float) -> None:
        """Member Leases of replicas gone for ten durations (pods of a Deployment never come
        back under the same name) are deleted by the leader, at the version seen."""
        for name, lease in leases.items():
            seen = self._observed.leases.get(name)
            if (lease["metadata"].get("labels") or {}).get(ROLE_LABEL) != "member":
                continue
            if seen is None or now < seen.changed_at + 10 * seen.duration:
                continue
            options = {"preconditions": {"resourceVersion": seen.version}}
            try:
                await self._call(
                    self._api.delete_namespaced_lease, name, self._namespace, body=options
                )
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise

    def _spec(self, **more: Any) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": now,
            **more,
        }

    async def _write(self, lease: Lease) -> Lease:
        """Replace a Lease at the version it carries, or create it when it has none."""
        name = lease["metadata"]["name"]
        if lease["metadata"].get("resourceVersion"):
            return await self._call(
                self._api.replace_namespaced_lease, name, self._namespace, lease
            )
        return await self._call(self._api.create_namespaced_lease, self._namespace, lease)

    async def _renew_member(self) -> None:
        lease = self._leases.get(self.member)
        if lease is None:
            labels = {GROUP_LABEL: self._group, ROLE_LABEL: "member"}
            annotations = {
                SHARDS_ANNOTATION: str(self.shards),
                PRIORITY_ANNOTATION: str(self.priority),
            }
            lease = _lease(self.member, labels, {}, annotations=annotations)
            try:  # this replica's own, from before a restart under the same name
                found = await self._call(
                    self._api.read_namespaced_lease, self.member, self._namespace
                )
                lease["metadata"]["resourceVersion"] = found["metadata"]["resourceVersion"]
            except ApiException as exc:
                if exc.status != 404:
                    raise
        lease["spec"] = self._spec()
        try:
            self._leases[self.member] = await self._write(lease)
        except ApiException:
            self._leases.pop(self.member, None)  # read afresh next time
            raise

    async def _renew(self, item: str) -> None:
        name = self.lease_name(item)
        lease = self._leases[name]
        lease["spec"] = {**lease["spec"], **self._spec()}
        sent = time.monotonic()
        try:
            written = await self._write(lease)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise  # held until it lapses, renewed at the next step if it can be
            self._drop(item, "lost")
            log.warning("leases: %s was taken over (%s)", item, describe(exc))
            return
        self._leases[name] = written
        lapsed = sent >= self._held[item].work_until
        self._held[item] = Held.renewed(written["metadata"]["resourceVersion"], sent, self.duration)
        if lapsed and item not in self._releasing:  # nothing started there meanwhile
            self._hooks.gained(item)

    async def _release(self, item: str) -> None:
        lease = self._leases[self.lease_name(item)]
        lease["spec"] = {k: v for k, v in lease["spec"].items() if k != "holderIdentity"}
        try:
            await self._write(lease)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        self._drop(item, "released")
        log.info("leases: handed over %s", item)

    async def _acquire(self, item: str, lease: Lease | None) -> None:
        name = self.lease_name(item)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if lease is None:
            labels = {GROUP_LABEL: self._group, ROLE_LABEL: "shard"}
            lease = _lease(name, labels, self._spec(acquireTime=now, leaseTransitions=0))
        else:
            holder = (lease.get("spec") or {}).get("holderIdentity") or ""
            seen = self._observed.leases.get(name)
            # Even a Lease in this replica's own name waits out its duration: it may be held
            # by a process that still runs under the same name (a misconfigured identity).
            if seen is None or not seen.expired(time.monotonic()):
                return
            transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0)
            changed = 0 if holder == self.identity else 1
            lease = {
                **lease,
                "spec": self._spec(acquireTime=now, leaseTransitions=transitions + changed),
            }
        sent = time.monotonic()
        try:
            written = await self._write(lease)
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # another replica was quicker, or it went: seen again next step
            raise
        self._leases[name] = written
        self._held[item] = Held.renewed(written["metadata"]["resourceVersion"], sent, self.duration)
        metrics.SHARDS_HELD.labels(item).set(1)
        metrics.SHARD_CHANGES.labels(item, "acquired").inc()
        log.info("leases: took %s", item)
        self._hooks.gained(item)

    def _drop(self, item: str, change: str) -> None:
        self._held.pop(item, None)
        self._releasing.discard(item)
        self._leases.pop(self.lease_name(item), None)
        metrics.SHARDS_HELD.labels(item).set(0)
        metrics.SHARD_CHANGES.labels(item, change).inc()
        self._hooks.lost(item)

    async def stop(self, timeout: float) -> None:
        """Hand everything over (once the reconciles that run have ended, within timeout)
        and leave the group, so that the others take over at their next step."""
        self._stopping = True
        self._releasing.update(self._held)
        deadline = time.monotonic() + timeout
        while any(self._hooks.busy(item) for item in self._held) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for item in list(self._held):
            if self._hooks.busy(item):
                self._drop(item, "lost")  # left to lapse: a reconcile still runs
                continue
            try:
                await self._release(item)
            except ApiException as exc:
                log.warning("leases: could not hand over %s: %s", item, describe(exc))
        try:
            await self._call(self._api.delete_namespaced_lease, self.member, self._namespace)
        except ApiException as exc:
            log.warning("leases: could not leave the group: %s", describe(exc))
        self._thread.shutdown(wait=False)
