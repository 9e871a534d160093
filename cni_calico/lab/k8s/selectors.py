"""Label and field selectors, parsed and matched as the API server does (labels.Parse, fields.ParseSelector)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .validation import label_key_errors, label_value_errors


class SelectorError(ValueError):
    pass


SPECIAL = "!=(),<>"


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i:i + 2])
            i += 2
        elif ch in SPECIAL:
            tokens.append(ch)
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # in, notin, exists, !, gt, lt  (= and == are "in"; != is "notin")
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return present and (number > bound if self.op == "gt" else number < bound)


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str] | None) -> bool:
        return all(r.matches(labels or {}) for r in self.requirements)


def parse_label_selector(text: str) -> LabelSelector:
    tokens = _tokens(text)
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise SelectorError(f"unable to parse requirement: found '', expected: identifier in {text!r}")
        pos += 1
        return tokens[pos - 1]

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def identifier(what: str) -> str:
        tok = take()
        if tok in SPECIAL or tok in ("==", "!="):
            raise SelectorError(f"unable to parse requirement: found '{tok}', expected: {what}")
        return tok

    def check_key(key: str) -> str:
        errors = label_key_errors(key)
        if errors:
            raise SelectorError(f"unable to parse requirement: invalid label key \"{key}\": {'; '.join(errors)}")
        return key

    def check_value(value: str) -> str:
        errors = label_value_errors(value)
        if errors:
            raise SelectorError(f"unable to parse requirement: invalid label value: \"{value}\": {'; '.join(errors)}")
        return value

    requirements: list[Requirement] = []
    while pos < len(tokens):
        tok = take()
        if tok == "!":
            requirements.append(Requirement(check_key(identifier("identifier")), "!"))
        elif tok in SPECIAL or tok in ("==", "!="):
            raise SelectorError(f"unable to parse requirement: found '{tok}', expected: !, identifier")
        else:
            key = check_key(tok)
            op = peek()
            if op is None or op == ",":
                requirements.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                take()
                nxt = peek()
                value = "" if nxt is None or nxt == "," else check_value(identifier("identifier"))
                requirements.append(Requirement(key, "notin" if op == "!=" else "in", (value,)))
            elif op in ("in", "notin"):
                take()
                if take() != "(":
                    raise SelectorError(f"unable to parse requirement: found '{tokens[pos - 1]}', expected: '('")
                values: list[str] = []
                while True:
                    tok = take()
                    if tok == ")" and not values:
                        raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
                    if tok in (",", ")"):
                        values.append("")
                    else:
                        values.append(check_value(tok))
                        tok = take()
                    if tok == ")":
                        break
                    if tok != ",":
                        raise SelectorError(f"unable to parse requirement: found '{tok}', expected: ',', ')'")
                requirements.append(Requirement(key, op, tuple(values)))
            elif op in (">", "<"):
                take()
                bound = identifier("integer")
                if not re.fullmatch(r"-?\d+", bound):
                    raise SelectorError(f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                                        f"an integer: {bound}")
                requirements.append(Requirement(key, "gt" if op == ">" else "lt", (bound,)))
            else:
                raise SelectorError(f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, "
                                    f"lt")
        nxt = peek()
        if nxt is not None:
            if take() != ",":
                raise SelectorError(f"found '{nxt}', expected: ',' or 'end of string'")
            if peek() is None:
                raise SelectorError("found '', expected: identifier after ','")
    return LabelSelector(tuple(requirements))


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((field_value(obj, name) == value) == equal for name, equal, value in self.terms)

    def exact_name(self) -> str | None:
        for name, equal, value in self.terms:
            if name == "metadata.name" and equal:
                return value
        return None


def field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current += text[i:i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {text!r}")
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def parse_field_selector(text: str, selectable: tuple[str, ...]) -> FieldSelector:
    terms: list[tuple[str, bool, str]] = []
    if not text.strip():
        return FieldSelector()
    for part in _split_unescaped(text, ","):
        match = re.match(r"^([^=!]*?)(!=|==|=)(.*)$", part)
        if not match:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = match.group(1).strip(), match.group(2), _unescape(match.group(3))
        if name not in selectable:
            raise SelectorError(f'field label not supported: {name}')
        terms.append((name, op != "!=", value))
    return FieldSelector(tuple(terms))
