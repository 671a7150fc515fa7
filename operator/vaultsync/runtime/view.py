"""What the watches know when a reconcile starts: VaultAuths, VaultConnections, namespaces.

The lookups read kopf's in-memory indexes; `namespaces` and `terminating` are copies taken
in the event loop (the indexes change there), `namespaces` only for the kinds that fan out
over namespaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SpecLookup = Callable[[str | None, str], dict[str, Any] | None]
"""(namespace or None for cluster-scoped, name) -> the object's spec, or None."""

Namespaces = Mapping[str, Mapping[str, str]]
"""Namespace name -> its labels."""


def _none(_namespace: str | None, _name: str) -> dict[str, Any] | None:
    return None


@dataclass(frozen=True)
class View:
    auths: SpecLookup = _none
    connections: SpecLookup = _none
    namespaces: Namespaces = field(default_factory=dict)
    terminating: frozenset[str] = frozenset()
    """The namespaces being deleted."""
