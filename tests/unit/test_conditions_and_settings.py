import pytest

from vaultsync.api.base import parse_duration
from vaultsync.runtime.conditions import get_condition, set_condition
from vaultsync.runtime.settings import Settings


def test_transition_time_moves_only_when_status_flips() -> None:
    conds = set_condition(
        [], type_="Ready", status=False, reason="A", message="", generation=1, now="t1"
    )
    conds = set_condition(
        conds, type_="Ready", status=False, reason="B", message="m", generation=2, now="t2"
    )
    ready = get_condition(conds, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "t1"
    assert ready["reason"] == "B"
    assert ready["observedGeneration"] == 2
    conds = set_condition(
        conds, type_="Ready", status=True, reason="Synced", message="", generation=2, now="t3"
    )
    assert len(conds) == 1
    assert conds[0]["lastTransitionTime"] == "t3"
    assert conds[0]["status"] == "True"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("30s", 30.0), ("1m", 60.0), ("1h30m", 5400.0), ("500ms", 0.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "m", "-1s", "1.5h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_backoff_doubles_up_to_the_cap() -> None:
    s = Settings(namespace="x", metrics_port=0, workers=1, min_backoff=5, max_backoff=60)
    assert [s.backoff(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
