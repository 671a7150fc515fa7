"""Argo CD's view of our objects: docs/argocd/health.lua run by a real Lua interpreter."""

from __future__ import annotations

from typing import Any

import lupa

from e2e.harness import ROOT

SCRIPT = (ROOT / "docs" / "argocd" / "health.lua").read_text()


def _table(runtime: lupa.LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _table(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_table(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD would show them for obj."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _table(runtime, obj)
    result = runtime.execute(SCRIPT)
    return str(result["status"]), str(result["message"])
