"""The committed CRDs are generated from the models and must be current."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from vaultsync.api.crds import KINDS, PEERING_CRD, Kind, crd, render, render_peering

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_committed_crd_is_current(kind: Kind) -> None:
    committed = ROOT / "crds" / f"{kind.crd_name}.yaml"
    assert committed.read_text() == render(kind), "run `make crds` and commit the result"


def _walk(node: object) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Kind) -> None:
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for node in _walk(schema["properties"]["spec"]):
        assert "$ref" not in node
        assert "anyOf" not in node or all("type" not in o for o in node["anyOf"])
        assert not isinstance(node.get("additionalProperties"), bool)
        assert "default" not in node, "defaults would be written into users' objects"


def test_crd_yaml_parses() -> None:
    for kind in KINDS:
        doc = yaml.safe_load((ROOT / "crds" / f"{kind.crd_name}.yaml").read_text())
        assert doc["spec"]["names"]["kind"] == kind.kind


def test_committed_peering_crd_is_current() -> None:
    committed = ROOT / "crds" / f"{PEERING_CRD['metadata']['name']}.yaml"
    assert committed.read_text() == render_peering(), "run `make crds` and commit the result"
