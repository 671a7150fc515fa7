"""The Argo CD health script, run by a real Lua interpreter against our statuses."""

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.argocd import SCRIPT, health
from vaultsync import GROUP, VERSION
from vaultsync.api.crds import KINDS, Kind
from vaultsync.runtime.conditions import set_condition

DOCS = Path(__file__).resolve().parents[2] / "docs"
WILDCARD = f"{GROUP}/*"


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


def _customizations() -> dict[str, Any]:
    """The resource customizations docs/gitops.md tells Argo CD users to add to argocd-cm."""
    page = (DOCS / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(data:\n.*?)```", page, re.DOTALL)
    assert len(blocks) == 1, "one argocd-cm snippet"
    data = yaml.safe_load(blocks[0])["data"]
    assert set(data) == {"resource.customizations"}
    customizations: dict[str, Any] = yaml.safe_load(data["resource.customizations"])
    return customizations


def test_the_docs_carry_the_script_once_for_every_kind() -> None:
    """One wildcard key: Argo CD (2.6 or later) matches it against group/kind with a glob."""
    customizations = _customizations()
    assert list(customizations) == [WILDCARD]
    assert customizations[WILDCARD] == {"health.lua": SCRIPT}
    for kind in KINDS:
        assert fnmatch.fnmatchcase(f"{GROUP}/{kind.kind}", WILDCARD), kind.kind
    for other in ("apps/Deployment", "argoproj.io/Rollout", "secrets.hashicorp.com/VaultAuth"):
        assert not fnmatch.fnmatchcase(other, WILDCARD), other


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_the_one_script_judges_every_kind(kind: Kind) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind.kind, **obj(2, ready(True, "Ok", 2))}
    assert health(body) == ("Healthy", "Ok: m")
    body["metadata"]["generation"] = 3
    assert health(body)[0] == "Progressing"
