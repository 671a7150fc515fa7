"""Which replica should hold which shard, and when a Lease counts as abandoned."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from vaultsync.runtime.sharding import (
    LEADER,
    Held,
    Observations,
    Sharding,
    assign,
    shard_names,
    shard_of,
)


def test_a_namespace_always_falls_in_the_same_shard_and_cluster_scope_on_the_leader() -> None:
    assert shard_of("", 16) == LEADER
    # pinned (SHA-256 of the name): a change here would move namespaces on an upgrade
    assert shard_of("default", 16) == "shard-13"
    assert shard_of("kube-system", 16) == "shard-1"


def test_namespaces_spread_over_the_shards() -> None:
    counts = Counter(shard_of(f"ns-{i}", 8) for i in range(8000))
    assert set(counts) == set(shard_names(8))
    assert max(counts.values()) < 1.15 * min(counts.values())


@pytest.mark.parametrize("members", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("shards", [1, 3, 16])
def test_every_replica_computes_the_same_balanced_assignment(members: int, shards: int) -> None:
    names = [f"r{i}" for i in range(members)]
    wanted = assign(dict.fromkeys(names, 0), shards)
    for order in itertools.islice(itertools.permutations(names), 6):
        assert assign(dict.fromkeys(order, 0), shards) == wanted
    assert set(wanted) == {LEADER, *shard_names(shards)}
    per = Counter(wanted[s] for s in shard_names(shards))
    if shards >= members:
        assert set(per) == set(names)
    assert max(per.values()) - min(per.get(n, 0) for n in names) <= 1
    assert wanted[LEADER] in names


def test_a_replica_leaving_or_joining_moves_few_shards_besides_its_own() -> None:
    names = ["vaultsync-0", "vaultsync-1", "vaultsync-2", "vaultsync-3"]
    before = assign(dict.fromkeys(names, 0), 16)
    after = assign(dict.fromkeys(names[:-1], 0), 16)  # vaultsync-3 died
    moved = [s for s in shard_names(16) if before[s] != after[s]]
    own = [s for s in shard_names(16) if before[s] == "vaultsync-3"]
    assert set(own) <= set(moved) and len(moved) <= len(own) + 3, (own, moved)
    joined = assign(dict.fromkeys([*names, "vaultsync-4"], 0), 16)
    moved = [s for s in shard_names(16) if before[s] != joined[s]]
    assert len([s for s in moved if joined[s] == "vaultsync-4"]) >= 3
    assert len(moved) <= 3 + 3, moved


def test_no_members_no_assignment() -> None:
    assert assign({}, 4) == {}


def test_without_shards_the_live_replica_of_highest_priority_leads() -> None:
    assert assign({"a": 100, "b": 200}, 0) == {LEADER: "b"}
    assert assign({"a": 100}, 0) == {LEADER: "a"}
    tie = assign({"a": 5, "b": 5}, 0)[LEADER]
    assert tie == assign({"b": 5, "a": 5}, 0)[LEADER]
    assert shard_of("team-a", 0) == LEADER


def test_a_lease_is_abandoned_only_after_a_whole_duration_without_change() -> None:
    seen = Observations()
    first = seen.see("vaultsync-shard-0", "10", "r1", 15.0, now=100.0)
    assert not first.expired(100.0) and not first.expired(114.9)
    assert first.expired(115.0)
    renewed = seen.see("vaultsync-shard-0", "11", "r1", 15.0, now=110.0)
    assert not renewed.expired(124.9) and renewed.expired(125.0)
    same = seen.see("vaultsync-shard-0", "11", "r1", 15.0, now=124.0)  # no change: no reset
    assert same.changed_at == 110.0
    released = seen.see("vaultsync-shard-0", "12", "", 15.0, now=126.0)
    assert released.expired(126.0)  # handed over: free at once
    seen.forget_except(["other"])
    assert seen.leases == {}


def test_a_holder_stops_starting_work_a_third_of_a_duration_before_others_may_take_over() -> None:
    held = Held.renewed("7", sent_at=50.0, duration=15.0)
    assert held.work_until == pytest.approx(60.0)
    assert Observations().see("l", "7", "r0", 15.0, now=50.0).changed_at + 15.0 > held.work_until


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"identity": "r0", "shards": -1}, "--shards"),
        ({"identity": "r0", "shards": 2, "duration": 1}, "--lease-duration"),
        ({"identity": "R0_", "shards": 2}, "--identity"),
        ({"identity": "r0", "shards": 2, "group": "-x"}, "--lease-group"),
    ],
)
def test_bad_sharding_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sharding(**kwargs)  # type: ignore[arg-type]
