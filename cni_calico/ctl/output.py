"""calicoctl's output formats: `ps` (the default table), `wide`, `yaml`, `json`. Pure."""

from __future__ import annotations

import json
from typing import Any, Sequence

import yaml

from .errors import CtlError
from .kinds import Column, Kind

FORMATS = ("ps", "wide", "yaml", "json")
API_VERSION = "projectcalico.org/v3"


def table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    """Like Go's tabwriter as calicoctl sets it up: columns padded with at least three spaces."""
    cells = [[header for header, _ in columns]] + [[get(row) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines) + "\n"


def as_list(kind: Kind, items: list[dict[str, Any]], revision: int) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": f"{kind.name}List", "items": items,
            "metadata": {"resourceVersion": str(revision)}}


def render(kind: Kind, items: list[dict[str, Any]], fmt: str, *, single: bool, revision: int,
           all_namespaces: bool = False) -> str:
    """`single`: one resource asked for by name, printed alone rather than as a List."""
    if fmt in ("ps", "wide"):
        columns = list(kind.wide if fmt == "wide" else kind.columns)
        if kind.namespaced and all_namespaces:
            columns.insert(0, ("NAMESPACE", lambda row: str(row.get("metadata", {}).get("namespace", ""))))
        return table(columns, items)
    document: Any = items[0] if single and len(items) == 1 else as_list(kind, items, revision)
    if fmt == "yaml":
        return yaml.safe_dump(document, default_flow_style=False, sort_keys=True)
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    raise CtlError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
