"""Calico's label selector language, parsed once into a predicate over a label dict.

    all()  global()  has(k)  !has(k)  k == 'v'  k != 'v'  k in {'a','b'}  k not in {...}
    k contains 's'  k starts with 's'  k ends with 's'  &&  ||  !  ( )

An empty selector means all(). Parse errors raise SelectorError naming the position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

Labels = Mapping[str, str]
Predicate = Callable[[Labels], bool]


class SelectorError(ValueError):
    pass


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<op>&&|\|\||==|!=|!|\(|\)|\{|\}|,)
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<word>[A-Za-z0-9_./\-]+)
    )""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # op, str, word, end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            tokens.append(_Tok("end", "", pos))
            return tokens
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SelectorError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = match.lastgroup or "op"
        value = match.group(kind)
        tokens.append(_Tok(kind, value[1:-1] if kind == "str" else value, match.start(kind)))
        pos = match.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> _Tok:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            want = text or kind
            raise SelectorError(f"expected {want!r} at position {tok.pos}, found {tok.text or 'end of selector'!r}")
        self.i += 1
        return tok

    def accept(self, kind: str, text: str) -> bool:
        tok = self.peek()
        if tok.kind == kind and tok.text == text:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if self.peek().kind == "end":
            return lambda labels: True
        pred = self.parse_or()
        self.take("end")
        return pred

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.accept("op", "||"):
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else (lambda labels: any(p(labels) for p in parts))

    def parse_and(self) -> Predicate:
        parts = [self.parse_unary()]
        while self.accept("op", "&&"):
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else (lambda labels: all(p(labels) for p in parts))

    def parse_unary(self) -> Predicate:
        if self.accept("op", "!"):
            inner = self.parse_unary()
            return lambda labels: not inner(labels)
        if self.accept("op", "("):
            inner = self.parse_or()
            self.take("op", ")")
            return inner
        return self.parse_term()

    def parse_term(self) -> Predicate:
        word = self.take("word").text
        if word in ("all", "global") and self.accept("op", "("):
            self.take("op", ")")
            return lambda labels: True
        if word == "has" and self.accept("op", "("):
            key = self.take("word").text
            self.take("op", ")")
            return lambda labels: key in labels
        key = word
        if self.accept("op", "=="):
            value = self.take("str").text
            return lambda labels: labels.get(key) == value
        if self.accept("op", "!="):
            value = self.take("str").text
            return lambda labels: labels.get(key) != value
        if self.accept("word", "in"):
            values = self.parse_set()
            return lambda labels: labels.get(key) in values
        if self.accept("word", "not"):
            self.take("word", "in")
            values = self.parse_set()
            return lambda labels: labels.get(key) not in values
        if self.accept("word", "contains"):
            value = self.take("str").text
            return lambda labels: key in labels and value in labels[key]
        if self.accept("word", "starts"):
            self.take("word", "with")
            value = self.take("str").text
            return lambda labels: key in labels and labels[key].startswith(value)
        if self.accept("word", "ends"):
            self.take("word", "with")
            value = self.take("str").text
            return lambda labels: key in labels and labels[key].endswith(value)
        tok = self.peek()
        raise SelectorError(f"expected an operator after {key!r} at position {tok.pos}")

    def parse_set(self) -> frozenset[str]:
        self.take("op", "{")
        values: set[str] = set()
        if not self.accept("op", "}"):
            values.add(self.take("str").text)
            while self.accept("op", ","):
                values.add(self.take("str").text)
            self.take("op", "}")
        return frozenset(values)


def parse(text: str | None) -> Predicate:
    """Compile a selector; raises SelectorError for malformed text."""
    return _Parser(text or "").parse()


def matches(text: str | None, labels: Labels) -> bool:
    return parse(text)(labels)
