"""A reader for the plain block YAML kubeconfig files are written in (by kubectl, kubeadm, Calico's
installer): nested block mappings and sequences of one-line plain or quoted scalars, and comments.
Anything else (flow collections, anchors, tags, multi-line scalars, numbers, dates, comments after
a plain value...) raises `Unsupported` and the caller reads the text with PyYAML instead: what
this returns is always what PyYAML's safe loader would. Pure.

Why: importing PyYAML costs a standalone plugin call about 10 ms, more than the rest of what
reading a pod adds.
"""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_./-]*):(?: +(.*))?$")
_UNPRINTABLE = re.compile(r"[^\n\x20-\x7e]")  # after line ends are made \n (tabs are unsupported too)
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`=<")
_NULLS = frozenset(("~", "null", "Null", "NULL"))
_TRUES = frozenset(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"))
_FALSES = frozenset(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"))
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r"}


class Unsupported(Exception):
    """Outside the subset: read it with PyYAML."""


def load(text: str) -> Any:
    text = text.replace("\r\n", "\n")
    if not text.isascii() or _UNPRINTABLE.search(text):
        raise Unsupported("not printable ASCII")  # what PyYAML accepts beyond is not worth the check here
    lines: list[tuple[int, str]] = []
    for raw in text.split("\n"):
        line = raw.rstrip(" ")
        content = line.lstrip(" ")
        if content and not content.startswith("#"):
            lines.append((len(line) - len(content), content))
    if lines and lines[0] == (0, "---"):
        del lines[0]
    if not lines:
        return None
    parser = _Parser(lines)
    value = parser.node(lines[0][0])
    if parser.pos != len(lines):
        raise Unsupported(f"line {parser.pos}")
    return value


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ")


class _Parser:
    def __init__(self, lines: list[tuple[int, str]]) -> None:
        self.lines = lines
        self.pos = 0

    def _more_indented(self, indent: int) -> bool:
        return self.pos < len(self.lines) and self.lines[self.pos][0] > indent

    def node(self, indent: int) -> Any:
        content = self.lines[self.pos][1]
        if _is_item(content):
            return self.sequence(indent)
        if _KEY.match(content):
            return self.mapping(indent)
        self.pos += 1
        value = _scalar(content)
        if self.pos < len(self.lines):
            raise Unsupported("more after a scalar")
        return value

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while self.pos < len(self.lines):
            at, content = self.lines[self.pos]
            if at < indent:
                break
            match = _KEY.match(content) if at == indent else None
            if match is None:
                raise Unsupported(f"line {self.pos}")
            key = _plain(match.group(1))
            if not isinstance(key, str):
                raise Unsupported("a key that is not a string")
            self.pos += 1
            out[key] = self.value(match.group(2) or "", indent)
        return out

    def value(self, rest: str, indent: int) -> Any:
        """What follows `key:` (or `-`): inline, or the block on the next lines."""
        if rest:
            value = _scalar(rest)
            if self._more_indented(indent):
                raise Unsupported("a scalar continued on the next line")
            return value
        if self._more_indented(indent):
            return self.node(self.lines[self.pos][0])
        if self.pos < len(self.lines) and self.lines[self.pos][0] == indent and _is_item(self.lines[self.pos][1]):
            return self.sequence(indent)  # `key:` then `- item` at the key's own indent
        return None

    def sequence(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while self.pos < len(self.lines):
            at, content = self.lines[self.pos]
            if at < indent or (at == indent and not _is_item(content)):
                break
            if at > indent:
                raise Unsupported(f"line {self.pos}")
            rest = content[1:].lstrip(" ")
            if not rest:
                self.pos += 1
                out.append(self.node(self.lines[self.pos][0]) if self._more_indented(indent) else None)
            elif _is_item(rest):
                raise Unsupported("a sequence inside a sequence's item line")
            elif _KEY.match(rest):  # `- key: value`: a mapping whose keys line up with this one
                self.lines[self.pos] = (indent + len(content) - len(rest), rest)
                out.append(self.mapping(self.lines[self.pos][0]))
            else:
                self.pos += 1
                out.append(self.value(rest, indent))
        return out


def _scalar(text: str) -> Any:
    if text[0] == '"':
        return _quoted(text, '"')
    if text[0] == "'":
        return _quoted(text, "'")
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return _plain(text)


def _plain(text: str) -> Any:
    """A plain scalar as PyYAML resolves it (YAML 1.1), where that is certain."""
    if text[0] in _INDICATORS or " #" in text or ": " in text or text.endswith(":"):
        raise Unsupported(f"plain scalar {text!r}")
    if text in _NULLS:
        return None
    if text in _TRUES:
        return True
    if text in _FALSES:
        return False
    if text[0] in "0123456789+.":  # numbers, dates, times, .inf, .nan: left to PyYAML
        raise Unsupported(f"plain scalar {text!r}")
    return text


def _quoted(text: str, quote: str) -> str:
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == quote:
            if quote == "'" and text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            tail = text[i + 1:].lstrip(" ")
            if tail and not (tail.startswith("#") and len(tail) < len(text) - i - 1):
                raise Unsupported("text after a quoted scalar")
            return "".join(out)
        if char == "\\" and quote == '"':
            escaped = _ESCAPES.get(text[i + 1:i + 2])
            if escaped is None:
                raise Unsupported("escape")
            out.append(escaped)
            i += 2
            continue
        out.append(char)
        i += 1
    raise Unsupported("a quoted scalar continued on the next line")
