"""Tables as Go's tablewriter draws them with its defaults, which calicoctl uses for `node status`
and `ipam show`: +---+ borders, headings upper-cased and centred (the odd space on the right),
cells that look like numbers right-aligned and the rest left-aligned, a column as wide as its
widest cell but wrapping text past 30 characters at word boundaries. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_WIDTH = 30  # tablewriter's default: longer cells wrap
TOO_LONG_PENALTY = 100_000  # tablewriter's cost of a line over the limit
_NUMBER = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$")  # tablewriter's "decimal"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A bordered table, as tablewriter draws it with its defaults."""
    widths = [min(len(h), MAX_WIDTH) for h in headers]
    cells: list[list[list[str]]] = []  # row -> column -> wrapped lines
    for row in rows:
        wrapped = []
        for col, text in enumerate(row):
            # Same order as tablewriter: the width grows to the (capped) cell, the cell wraps at the
            # width reached so far, then the width grows to a word too long to break.
            widths[col] = max(widths[col], min(len(text), MAX_WIDTH))
            lines = _wrap(text, widths[col])
            widths[col] = max(widths[col], *(len(line) for line in lines))
            wrapped.append(lines)
        cells.append(wrapped)

    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    headings = "|" + "|".join(f" {_centre(h.upper(), w)} " for h, w in zip(headers, widths, strict=True)) + "|\n"
    out = [rule, headings, rule]
    for wrapped in cells:
        height = max(len(lines) for lines in wrapped)
        for i in range(height):
            parts = []
            for lines, w in zip(wrapped, widths, strict=True):
                text = lines[i] if i < len(lines) else ""
                parts.append(f" {text.rjust(w) if _NUMBER.match(text.strip()) else text.ljust(w)} ")
            out.append("|" + "|".join(parts) + "|\n")
    out.append(rule)
    return "".join(out)


def _centre(text: str, width: int) -> str:
    gap = width - len(text)
    left = gap // 2 if gap > 0 else 0
    return " " * left + text + " " * max(gap - left, 0)


def _wrap(text: str, limit: int) -> list[str]:
    """Break at spaces into lines of at most `limit`, with minimal raggedness (tablewriter's WrapWords)."""
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(len(w) for w in words)])
    n = len(words)
    # length[i][j]: words i..j on one line
    length = [[0] * n for _ in range(n)]
    for i in range(n):
        length[i][i] = len(words[i])
        for j in range(i + 1, n):
            length[i][j] = length[i][j - 1] + 1 + len(words[j])
    cost = [0] * n
    breaks = [n] * n
    for i in range(n - 1, -1, -1):
        if length[i][n - 1] <= limit:
            continue  # the rest fits on one line: free
        cost[i] = 2**31 - 1
        for j in range(i + 1, n):
            gap = limit - length[i][j - 1]
            c = gap * gap + cost[j] + (TOO_LONG_PENALTY if length[i][j - 1] > limit else 0)
            if c < cost[i]:
                cost[i], breaks[i] = c, j
    lines, i = [], 0
    while i < n:
        lines.append(" ".join(words[i:breaks[i]]))
        i = breaks[i]
    return lines
