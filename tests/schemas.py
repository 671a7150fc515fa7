"""Walking generated JSON schemas in tests."""

from __future__ import annotations

from typing import Any


def nodes(node: object) -> list[dict[str, Any]]:
    """Every object of a schema, the root first, depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(nodes(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(nodes(value))
    return found
