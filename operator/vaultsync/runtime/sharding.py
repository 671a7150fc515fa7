"""Which replica reconciles what, when there are several: `vaultsync run --shards N` shares
the work, `vaultsync run --peering NAME` keeps one replica working and the others standing by.

With shards, namespaced objects belong to one of N shards by a stable hash of their
namespace; cluster-scoped objects (VaultPolicy, VaultAuditDevice, VaultTransitKey,
VaultConnection) belong to the `leader`. With peering (no shards), the leader is everything. Each
shard and the leader is a Lease that one replica holds (kube/leases.py); the replicas alive
(a Lease each, renewed) split them evenly by rendezvous hashing, so that every replica
computes the same assignment from the same view and hands over what is no longer its own.
This module is the arithmetic, with no I/O: who should hold what, and for how long a holder
may start work on what it holds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LEADER = "leader"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


@dataclass(frozen=True)
class Sharding:
    """How this replica takes part: `--shards N`, or `--peering NAME` (shards 0)."""

    identity: str  # this replica's name (its pod's), unique among the replicas
    shards: int  # namespace shards, the same in every replica; 0: the leader does everything
    group: str = "vaultsync"  # the Leases' name prefix, in the operator's namespace
    duration: float = 15.0  # a dead replica's shards are taken over after this (seconds)
    priority: int = 0  # without shards: the live replica of highest priority leads

    def __post_init__(self) -> None:
        if self.shards < 0:
            raise ValueError(f"--shards: {self.shards} is not a positive number")
        if self.duration < 3:
            raise ValueError(f"--lease-duration: {self.duration} is under 3 seconds")
        for what, value in (("--identity", self.identity), ("--lease-group", self.group)):
            if not _NAME.fullmatch(value) or len(value) > 100:
                raise ValueError(
                    f"{what}: {value!r} must be lower-case letters, digits, '-' or '.', "
                    "start and end with a letter or digit, at most 100 characters"
                )


def shard_names(count: int) -> list[str]:
    return [f"shard-{i}" for i in range(count)]


def shard_of(namespace: str, count: int) -> str:
    """The shard of a namespace (the leader for cluster-scoped objects, and for everything
    without shards): the first 8 bytes of its SHA-256, modulo the shard count, the same in
    every replica and every version."""
    if not namespace or not count:
        return LEADER
    digest = hashlib.sha256(namespace.encode()).digest()
    return f"shard-{int.from_bytes(digest[:8], 'big') % count}"


def _rank(member: str, item: str) -> bytes:
    return hashlib.sha256(f"{member}/{item}".encode()).digest()


def assign(members: Mapping[str, int], count: int) -> dict[str, str]:
    """Who should hold what, from the live replicas and their priorities. Each shard goes to
    the replica that ranks highest for it (rendezvous hashing: a hash of replica and shard),
    unless that one already has its share, so that every replica holds count // replicas
    shards or one more, and a replica joining or leaving moves few shards besides its own.
    The leader goes to the replica of highest priority, then rank."""
    names = sorted(members)
    if not names:
        return {}
    base, extra = divmod(count, len(names))
    held = dict.fromkeys(names, 0)
    wanted = {LEADER: max(names, key=lambda m: (members[m], _rank(m, LEADER)))}
    for item in shard_names(count):
        for member in sorted(names, key=lambda m: _rank(m, item), reverse=True):
            if held[member] < base or (held[member] == base and extra > 0):
                extra -= held[member] == base
                held[member] += 1
                wanted[item] = member
                break
    return wanted


@dataclass(slots=True)
class Observed:
    """A Lease as this replica has watched it change: a holder that stops renewing is dead
    once its Lease stayed unchanged for a whole duration of this replica's own clock (the
    holders' clocks are never compared with ours)."""

    version: str
    holder: str
    duration: float
    changed_at: float  # when this replica first saw this version

    def expired(self, now: float) -> bool:
        return not self.holder or now >= self.changed_at + self.duration


@dataclass
class Observations:
    leases: dict[str, Observed] = field(default_factory=dict)

    def see(self, name: str, version: str, holder: str, duration: float, now: float) -> Observed:
        seen = self.leases.get(name)
        if seen is None or seen.version != version:
            seen = self.leases[name] = Observed(version, holder, duration, now)
        return seen

    def forget_except(self, names: Iterable[str]) -> None:
        keep = set(names)
        for name in [n for n in self.leases if n not in keep]:
            del self.leases[name]


@dataclass(slots=True)
class Held:
    """A Lease this replica holds: the version it wrote last, and until when it may start
    work on it. That is two thirds of the duration after the request that renewed it was
    sent, so work started in time ends (the remaining third) before any other replica can
    see the Lease expire, a full duration after it saw that renewal."""

    version: str
    work_until: float

    @staticmethod
    def renewed(version: str, sent_at: float, duration: float) -> Held:
        return Held(version, sent_at + duration * 2 / 3)
