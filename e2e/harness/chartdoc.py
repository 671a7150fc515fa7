"""The values table of charts/vaultsync/README.md, generated from the chart's values.yaml.

The comment block right above a key in values.yaml is its description. A key whose value is
a map with described keys below it is a section (a row of its own only when it has a
description); any other key is a value with a row: its key path, its default (as JSON) and its
description, which every value must have. A map whose keys carry no comments (a
securityContext, a probe) is one value.

    python -m e2e.harness.chartdoc            rewrite the table in the README
    python -m e2e.harness.chartdoc --check    exit 1 when the README is not current

e2e/test_chart.py runs the check, and fails on a value without a description.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.harness import ROOT

CHART = ROOT / "charts" / "vaultsync"
BEGIN = "<!-- values:begin (generated from values.yaml by `make chart-readme`) -->"
END = "<!-- values:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*):(?:\s|$)")


@dataclass(frozen=True)
class Row:
    key: str
    default: str
    description: str
    section: bool = False


def comments(text: str) -> dict[tuple[str, ...], str]:
    """Each key path of a values file, in file order, with the comment block right above it
    ("" when none). Keys inside list items are not keys of the values."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    list_item: int | None = None  # indentation of the list item being skipped
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if not stripped:
            pending = []
            continue
        if list_item is not None and indent > list_item:
            continue
        list_item = None
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("- "):
            list_item, pending = indent, []
            continue
        match = _KEY.match(line)
        if not match:
            pending = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match["key"])
        found[path] = " ".join(pending)
        pending = []
        stack.append((indent, match["key"]))
    return found


def _value(values: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def rows(text: str) -> list[Row]:
    described = comments(text)
    values = yaml.safe_load(text)
    result: list[Row] = []
    leaves: list[tuple[str, ...]] = []
    for path, description in described.items():
        if any(path[: len(leaf)] == leaf for leaf in leaves):
            continue  # a key of a map documented as one value
        value = _value(values, path)
        below = [p for p, d in described.items() if len(p) > len(path) and p[: len(path)] == path]
        key = ".".join(path)
        if isinstance(value, dict) and value and any(described[p] for p in below):
            if description:
                result.append(Row(key, "", description, section=True))
            continue
        leaves.append(path)
        result.append(Row(key, json.dumps(value, separators=(", ", ": ")), description))
    return result


def undocumented(text: str) -> list[str]:
    return [row.key for row in rows(text) if not row.description]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(text: str) -> str:
    lines = ["| key | default | description |", "|---|---|---|"]
    for row in rows(text):
        default = f"`{_cell(row.default)}`" if row.default else ""
        key = f"**`{row.key}`**" if row.section else f"`{row.key}`"
        lines.append(f"| {key} | {default} | {_cell(row.description)} |")
    return "\n".join(lines) + "\n"


def readme(current: str, values_text: str) -> str:
    """current with the text between the markers replaced by the table of values_text."""
    if current.count(BEGIN) != 1 or current.count(END) != 1:
        raise ValueError(f"the README needs one {BEGIN!r} and one {END!r}")
    head, rest = current.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table(values_text)}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness.chartdoc")
    parser.add_argument("--check", action="store_true", help="fail when the README is stale")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    values_text = (args.chart / "values.yaml").read_text()
    missing = undocumented(values_text)
    if missing:
        print(f"values without a description (a comment above them): {', '.join(missing)}")
        return 1
    path = args.chart / "README.md"
    current = path.read_text()
    wanted = readme(current, values_text)
    if args.check:
        if wanted != current:
            print(f"{path} is not current: run `make chart-readme`")
            return 1
        return 0
    if wanted != current:
        path.write_text(wanted)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
