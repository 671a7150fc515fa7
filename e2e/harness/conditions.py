"""The conditions of our objects (Ready above all), as tests and benchmarks wait for them."""

from __future__ import annotations

from typing import Any


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The object's condition of that type, whichever generation it is about."""
    conditions = obj.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), None)


def ready_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object's Ready condition, whichever generation it is about."""
    return condition(obj, "Ready")


def ready_is(obj: dict[str, Any], status: str) -> dict[str, Any] | None:
    """The Ready condition if it has status and is about the object's current generation."""
    ready = ready_condition(obj)
    if ready is None or ready.get("observedGeneration") != obj["metadata"].get("generation"):
        return None
    return ready if ready["status"] == status else None
