"""calicoctl's output formats: `ps` (the default table), `wide`, `yaml`, `json`. Pure."""

from __future__ import annotations

import json
from typing import Any, Sequence

import yaml

from .errors import CtlError
from .kinds import Kind, TableContext

FORMATS = ("ps", "wide", "yaml", "yml", "json")
API_VERSION = "projectcalico.org/v3"

# Go's text/tabwriter as calicoctl sets it up: NewWriter(out, 5, 1, 3, ' ', 0)
MIN_WIDTH = 5
PADDING = 3


def table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Every cell is tab-terminated in Calico's templates, so every cell - the last one too - is
    padded to its column's width (the widest cell plus 3, at least 5); a blank line follows."""
    lines = [list(headings), *(list(row) for row in rows)]
    widths = [max(MIN_WIDTH, max(len(line[i]) for line in lines) + PADDING) for i in range(len(headings))]
    return "".join("".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + "\n"
                   for line in lines) + "\n"


def resource_table(kind: Kind, items: Sequence[dict[str, Any]], *, wide: bool, with_namespace: bool,
                   context: TableContext = TableContext()) -> str:
    headings = kind.table_headings(wide, with_namespace)
    return table(headings, [[kind.cells[h](item, context) for h in headings] for item in items])


def as_list(kind: Kind, items: list[dict[str, Any]], revision: int) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": f"{kind.name}List", "items": items,
            "metadata": {"resourceVersion": str(revision)}}


class _GoYamlDumper(yaml.SafeDumper):
    """Go's YAML (which calicoctl prints with) quotes with double quotes where PyYAML would use
    single ones: `resourceVersion: "1187"`."""

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def dump(document: Any, fmt: str) -> str:
    if fmt in ("yaml", "yml"):
        return yaml.dump(document, Dumper=_GoYamlDumper, default_flow_style=False, sort_keys=True)
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    raise CtlError(f"unrecognized output format '{fmt}'")


def render(kind: Kind, items: list[dict[str, Any]], fmt: str, *, named: bool, revision: int,
           with_namespace: bool = False, context: TableContext = TableContext()) -> str:
    """`named`: resources asked for by name, which Calico prints one by one - a table each, or
    the resource alone (several: a plain sequence of them); a listing is one table or a List."""
    if fmt in ("ps", "wide"):
        groups = [[item] for item in items] if named else [items]
        return "".join(resource_table(kind, group, wide=fmt == "wide", with_namespace=with_namespace,
                                      context=context) for group in groups)
    if fmt not in ("yaml", "yml", "json"):
        raise CtlError(f"unrecognized output format '{fmt}'")
    document: Any = (items[0] if len(items) == 1 else items) if named else as_list(kind, items, revision)
    return dump(document, fmt)
