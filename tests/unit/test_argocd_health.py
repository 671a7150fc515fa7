"""The Argo CD health script, run by a real Lua interpreter against our statuses."""

from pathlib import Path
from typing import Any

import pytest

from e2e.harness.argocd import SCRIPT, health
from vaultsync.api.crds import KINDS
from vaultsync.runtime.conditions import set_condition

DOCS = Path(__file__).resolve().parents[2] / "docs"


def obj(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "x", "generation": generation}}
    if status is not None:
        body["status"] = status
    return body


def ready(ok: bool, reason: str, generation: int) -> dict[str, Any]:
    conditions = set_condition(
        [], type_="Ready", status=ok, reason=reason, message="m", generation=generation
    )
    return {"observedGeneration": generation, "conditions": conditions}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (obj(1, None), "Progressing"),
        (obj(1, {"conditions": []}), "Progressing"),
        (obj(2, ready(True, "Synced", 2)), "Healthy"),
        (obj(3, ready(True, "Synced", 2)), "Progressing"),
        (obj(2, ready(False, "PermissionDenied", 2)), "Degraded"),
    ],
)
def test_health(body: dict[str, Any], expected: str) -> None:
    status, message = health(body)
    assert status == expected
    if expected == "Degraded":
        assert message.startswith("PermissionDenied: ")


def test_the_docs_carry_the_script_for_every_kind() -> None:
    page = (DOCS / "gitops.md").read_text()
    indented = "\n".join(
        ("    " + line) if line else "" for line in SCRIPT.rstrip("\n").split("\n")
    )
    for kind in KINDS:
        assert f"resource.customizations.health.vaultsync.io_{kind.kind}: |\n{indented}" in page
