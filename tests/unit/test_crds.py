"""The committed CRDs are generated from the models and must be current."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.schemas import nodes
from vaultsync.api.crds import (
    KINDS,
    Kind,
    crd,
    model_schema,
    render,
    shown_default,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_committed_crd_is_current(kind: Kind) -> None:
    committed = ROOT / "crds" / f"{kind.crd_name}.yaml"
    assert committed.read_text() == render(kind), "run `make crds` and commit the result"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Kind) -> None:
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for node in nodes(schema["properties"]["spec"]):
        assert "$ref" not in node
        assert "anyOf" not in node or all("type" not in o for o in node["anyOf"])
        assert not isinstance(node.get("additionalProperties"), bool)
        assert "default" not in node, "defaults would be written into users' objects"


def test_crd_yaml_parses() -> None:
    for kind in KINDS:
        doc = yaml.safe_load((ROOT / "crds" / f"{kind.crd_name}.yaml").read_text())
        assert doc["spec"]["names"]["kind"] == kind.kind


def _schema(kind: Kind) -> dict[str, Any]:
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def properties(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property below node, with its path: nested objects, array items, map values."""
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.{name}", sub
        yield from properties(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from properties(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from properties(node["additionalProperties"], f"{path}{{}}")


def undescribed(schema: dict[str, Any]) -> list[str]:
    """Properties without a description, but metadata: the API server serves ObjectMeta's own
    schema for it (and refuses more than its type in a CRD with defaults)."""
    return [
        path
        for path, node in properties(schema)
        if path != ".metadata" and not node.get("description", "").strip()
    ]


def test_the_walk_finds_every_property_without_a_description() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "description": "d",
                "properties": {
                    "list": {
                        "type": "array",
                        "description": "d",
                        "items": {"type": "object", "properties": {"a": {"type": "string"}}},
                    },
                    "map": {
                        "type": "object",
                        "description": "d",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"b": {"type": "string", "description": " "}},
                        },
                    },
                    "c": {"type": "string"},
                },
            },
            "status": {"type": "object"},
        },
    }
    assert undescribed(schema) == [".spec.list[].a", ".spec.map{}.b", ".spec.c", ".status"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_and_the_kind_have_a_description(kind: Kind) -> None:
    """`kubectl explain` says something about the kind and every field, spec and status."""
    schema = _schema(kind)
    assert schema.get("description", "").strip(), f"{kind.kind} has no description"
    assert {"spec", "status"} <= set(schema["properties"])
    missing = [path for path in undescribed(schema) if path != ".metadata"]
    assert missing == [], "give these fields a description (Field(description=...))"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_descriptions_tell_the_defaults(kind: Kind) -> None:
    described = dict(properties(_schema(kind)["properties"]["spec"], ".spec"))
    with_defaults = dict(properties(model_schema(kind.spec, defaults=True), ".spec"))
    for path, node in with_defaults.items():
        shown = shown_default(node.get("default"))
        if shown is not None:
            assert described[path]["description"].endswith(f"Defaults to {shown}."), path


def test_a_default_in_its_description() -> None:
    vaultsecret = next(k for k in KINDS if k.kind == "VaultSecret")
    spec = _schema(vaultsecret)["properties"]["spec"]["properties"]
    assert spec["refreshInterval"]["description"].endswith('Defaults to "1m".')
    assert "Defaults" not in spec["keys"]["description"]  # empty: nothing worth telling
    assert "default" not in spec["refreshInterval"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_conditions_are_a_map_keyed_by_type(kind: Kind) -> None:
    conditions = _schema(kind)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_map_list_keys_are_required(kind: Kind) -> None:
    """The API server refuses a map list whose keys an item may lack (they have no defaults)."""
    for path, node in properties(_schema(kind)):
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required") or [])
            assert set(node["x-kubernetes-list-map-keys"]) <= required, path
