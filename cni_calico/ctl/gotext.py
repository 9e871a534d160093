"""Values as Calico's table templates print them: Go's text/template and fmt %v, and Calico's
`join` template function. Pure."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


def go_text(value: Any) -> str:
    """A value as Go's text/template prints it: booleans in lower case, a nil pointer `<nil>`,
    floats in %v form (1e+06 from a million)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def go_float(value: float) -> str:
    """Go's %v of a float64 (strconv's 'g' with the shortest digits): %e form when the decimal
    exponent is below -4 or from 6 up (1e+06, 1.5e-05), else plain (100, 1000.5)."""
    if value == 0 or not math.isfinite(value):
        return {0: "0", math.inf: "+Inf", -math.inf: "-Inf"}.get(value, "NaN")
    number = Decimal(repr(value)).normalize()  # repr: the shortest digits that read back the same
    sign, digits, exponent = number.as_tuple()
    point = len(digits) + int(exponent) - 1  # the decimal exponent of the first digit
    if point < -4 or point >= 6:
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    return format(number, "f")


def join(items: Any) -> str:
    """Calico's template `join`: list items, or a map's sorted k=v pairs, separated by commas."""
    if items is None:
        return ""
    if isinstance(items, dict):
        items = sorted(f"{key}={value}" for key, value in items.items())
    elif not isinstance(items, list):
        items = [items]
    return ",".join(_ip_nat(item) if isinstance(item, dict) else str(item) for item in items)


def _ip_nat(item: dict[str, Any]) -> str:
    """Go's %v of an IPNAT struct: its fields in their Go order, in braces (`{10.0.0.1 192.0.2.1}`)."""
    return "{" + f"{item.get('internalIP', '')} {item.get('externalIP', '')}" + "}"
