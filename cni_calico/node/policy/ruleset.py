"""The policy table as a value, and its nft text. Pure.

`Ruleset` is what `render.render` produces: sets, verdict maps and chains, each rule as nft
syntax. `full_script` replaces the whole table in one `nft -f` transaction (whether or not it
exists); `update_script` turns one Ruleset into another in one transaction touching only what
changed; `counts` sizes it. Everything is sorted, so equal values give equal text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

FAMILY = "inet"
TABLE = "calico"
_COMMENT_MAX = 127  # nft refuses longer comments


# ------------------------------------------------------------------ the Ruleset value

@dataclass(frozen=True)
class NftSet:
    type: str  # "ipv4_addr", "ifname . ipv6_addr", ...
    flags: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()  # nft syntax, sorted
    comment: str = ""


@dataclass(frozen=True)
class NftMap:
    type: str  # "ifname : verdict"
    elements: tuple[tuple[str, str], ...] = ()  # (interface name, verdict), sorted


@dataclass(frozen=True)
class BaseHook:
    type: str  # filter | nat
    hook: str
    priority: str
    policy: str = "accept"


@dataclass(frozen=True)
class Chain:
    rules: tuple[str, ...]
    comment: str = ""
    base: BaseHook | None = None


@dataclass(frozen=True)
class Ruleset:
    sets: Mapping[str, NftSet]
    maps: Mapping[str, NftMap]
    chains: Mapping[str, Chain]


def quoted_comment(text: str) -> str:
    """Free text as a quoted nft comment: printable ASCII, no double quote, bounded."""
    clean = re.sub(r"[^\x20-\x7e]", "?", text).replace('"', "'")
    if len(clean) > _COMMENT_MAX:
        clean = clean[:_COMMENT_MAX - 3] + "..."
    return f'"{clean}"'


# ------------------------------------------------------------------ nft scripts

_CHAIN_RANK = ("forward", "input", "postrouting", "from-wl-dispatch", "to-wl-dispatch")


def _chain_order(name: str) -> tuple[int, str]:
    """Base and dispatch chains first, then the rest by name: readable, and stable."""
    return (_CHAIN_RANK.index(name) if name in _CHAIN_RANK else len(_CHAIN_RANK), name)


def _elements_block(items: list[str], indent: str) -> list[str]:
    if not items:
        return []
    if len(items) == 1:
        return [f"{indent}elements = {{ {items[0]} }}"]
    return [f"{indent}elements = {{", *(f"{indent}\t{e}," for e in items[:-1]), f"{indent}\t{items[-1]}", f"{indent}}}"]


def _set_block(name: str, s: NftSet) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {s.type}"]
    if s.flags:
        lines.append(f"\t\tflags {', '.join(s.flags)}")
    if s.comment:
        lines.append(f"\t\tcomment {quoted_comment(s.comment)}")
    return [*lines, *_elements_block(list(s.elements), "\t\t"), "\t}"]


def _map_element(key: str, verdict: str) -> str:
    return f'"{key}" : {verdict}'


def _map_block(name: str, m: NftMap) -> list[str]:
    items = [_map_element(k, v) for k, v in m.elements]
    return [f"\tmap {name} {{", f"\t\ttype {m.type}", *_elements_block(items, "\t\t"), "\t}"]


def _hook_line(base: BaseHook) -> str:
    return f"type {base.type} hook {base.hook} priority {base.priority}; policy {base.policy};"


def _chain_block(name: str, chain: Chain) -> list[str]:
    lines = [f"\tchain {name} {{"]
    if chain.base:
        lines.append(f"\t\t{_hook_line(chain.base)}")
    if chain.comment:
        lines.append(f"\t\tcomment {quoted_comment(chain.comment)}")
    return [*lines, *(f"\t\t{rule}" for rule in chain.rules), "\t}"]


def full_script(ruleset: Ruleset) -> str:
    """Replace the whole table in one transaction, whether or not it exists."""
    body: list[str] = []
    for name, s in ruleset.sets.items():
        body += _set_block(name, s)
    for name, m in ruleset.maps.items():
        body += _map_block(name, m)
    for name in sorted(ruleset.chains, key=_chain_order):
        body += _chain_block(name, ruleset.chains[name])
    return "\n".join([
        f"# Calico policy: table {FAMILY} {TABLE}, generated; `delete table {FAMILY} {TABLE}` removes it all.",
        f"add table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
        *body,
        "}",
        "",
    ])


def _where(kind: str, name: str) -> str:
    return f"{kind} {FAMILY} {TABLE} {name}"


def _element_cmd(verb: str, name: str, items: list[str]) -> list[str]:
    return [f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(items)} }}"] if items else []


def _set_spec(s: NftSet) -> str:
    parts = [f"type {s.type};"]
    if s.flags:
        parts.append(f"flags {', '.join(s.flags)};")
    if s.comment:
        parts.append(f"comment {quoted_comment(s.comment)};")
    return "{ " + " ".join(parts) + " }"


def _chain_spec(chain: Chain) -> str:
    parts = [_hook_line(chain.base)] if chain.base else []
    if chain.comment:
        parts.append(f"comment {quoted_comment(chain.comment)};")
    return " { " + " ".join(parts) + " }" if parts else ""


def _definitions_changed(old: Ruleset, new: Ruleset) -> bool:
    """A set, map or chain whose definition (not content) differs cannot be changed in place."""
    for name in old.sets.keys() & new.sets.keys():
        a, b = old.sets[name], new.sets[name]
        if (a.type, a.flags, a.comment) != (b.type, b.flags, b.comment):
            return True
    for name in old.maps.keys() & new.maps.keys():
        if old.maps[name].type != new.maps[name].type:
            return True
    for name in old.chains.keys() & new.chains.keys():
        old_chain, new_chain = old.chains[name], new.chains[name]
        if (old_chain.base, old_chain.comment) != (new_chain.base, new_chain.comment):
            return True
    return any(new.chains[name].base for name in new.chains.keys() - old.chains.keys())


def _creations(old: Ruleset, new: Ruleset) -> list[str]:
    out = []
    for name in sorted(new.sets.keys() - old.sets.keys()):
        out.append(f"add {_where('set', name)} {_set_spec(new.sets[name])}")
        out += _element_cmd("add", name, list(new.sets[name].elements))
    for name in sorted(new.maps.keys() - old.maps.keys()):
        out.append(f"add {_where('map', name)} {{ type {new.maps[name].type}; }}")
    for name in sorted(new.chains.keys() - old.chains.keys(), key=_chain_order):
        out.append(f"add {_where('chain', name)}{_chain_spec(new.chains[name])}")
    return out


def _set_element_changes(old: Ruleset, new: Ruleset) -> list[str]:
    out = []
    for name in sorted(old.sets.keys() & new.sets.keys()):
        before, after = old.sets[name].elements, new.sets[name].elements
        kept_before, kept_after = set(before), set(after)
        out += _element_cmd("delete", name, [e for e in before if e not in kept_after])
        out += _element_cmd("add", name, [e for e in after if e not in kept_before])
    return out


def _map_element_changes(old: Ruleset, new: Ruleset) -> list[str]:
    out = []
    for name in sorted(new.maps):
        before = dict(old.maps[name].elements) if name in old.maps else {}
        after = dict(new.maps[name].elements)
        out += _element_cmd("delete", name, [f'"{k}"' for k, v in before.items() if after.get(k) != v])
        out += _element_cmd("add", name, [_map_element(k, v) for k, v in after.items() if before.get(k) != v])
    return out


def update_script(old: Ruleset, new: Ruleset) -> str:
    """Turn the kernel's `old` into `new` in one transaction, touching only what changed; ''
    when nothing did. Order: create sets, maps and (empty) chains; change set elements; flush
    chains that change or go; change map elements; fill chains; delete what is gone (no rule
    or map element points at it any more). A changed definition (type, flags, comment, hook)
    cannot be altered in place: the whole table is replaced instead."""
    if old == new:
        return ""
    if _definitions_changed(old, new):
        return full_script(new)
    changed = sorted((n for n in old.chains.keys() & new.chains.keys()
                      if old.chains[n].rules != new.chains[n].rules), key=_chain_order)
    added = sorted(new.chains.keys() - old.chains.keys(), key=_chain_order)
    removed = sorted(old.chains.keys() - new.chains.keys(), key=_chain_order)
    lines = [*_creations(old, new), *_set_element_changes(old, new)]
    lines += [f"flush {_where('chain', n)}" for n in [*changed, *removed]]
    lines += _map_element_changes(old, new)
    lines += [f"add rule {FAMILY} {TABLE} {n} {rule}" for n in [*changed, *added] for rule in new.chains[n].rules]
    lines += [f"delete {_where('map', n)}" for n in sorted(old.maps.keys() - new.maps.keys())]
    lines += [f"delete {_where('chain', n)}" for n in removed]
    lines += [f"delete {_where('set', n)}" for n in sorted(old.sets.keys() - new.sets.keys())]
    return "\n".join(lines) + "\n" if lines else ""


# ------------------------------------------------------------------ sizes

def counts(ruleset: Ruleset) -> dict[str, int]:
    return {
        "rules": sum(len(c.rules) for c in ruleset.chains.values()),
        "chains": len(ruleset.chains),
        "sets": len(ruleset.sets),
        "maps": len(ruleset.maps),
        "set_elements": sum(len(s.elements) for s in ruleset.sets.values()),
        "map_elements": sum(len(m.elements) for m in ruleset.maps.values()),
    }
