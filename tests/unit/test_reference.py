"""docs/reference.md is generated from the models, like the CRDs, and must be current."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vaultsync.api.crds import KINDS, crd
from vaultsync.api.reference import GUIDES, render

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def paths(node: dict[str, Any], path: str) -> Iterator[str]:
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.{name}"
        yield from paths(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from paths(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from paths(node["additionalProperties"], f"{path}{{}}")


def test_committed_reference_is_current() -> None:
    committed = (DOCS / "reference.md").read_text()
    assert committed == render(), "run `make crds` and commit the result"


def test_every_field_has_a_row() -> None:
    page = render()
    for kind in KINDS:
        schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for top in ("spec", "status"):
            for path in paths(schema["properties"][top], top):
                assert f"| `{path}` |" in page, path


def test_every_kind_links_its_guide_and_the_guides_link_back() -> None:
    page = render()
    for kind in KINDS:
        title, guide = GUIDES[kind.kind]
        assert f"## {kind.kind}\n" in page
        assert f"[{title}]({guide})" in page
        assert f"reference.md#{kind.kind.lower()}" in (DOCS / guide).read_text(), guide
