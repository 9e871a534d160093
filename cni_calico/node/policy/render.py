"""Calico policy as one nftables table (`inet calico`). Pure.

`render(state)` gives a comparable `Ruleset` (`ruleset` turns it into `nft -f` input, whole or
as the difference from the previous one). Everything is sorted, so equal
states give equal rulesets.

Layout (names of hashed objects are `<prefix>-<12 hex of sha256>`):

    forward      filter hook: cali* traffic only; ct invalid drop, established accept; then the
                 sender's egress (from-wl-dispatch), a mark check, the receiver's ingress
                 (to-wl-dispatch), accept.
    input        filter hook: from cali* only; IPv6 router ICMP accepted first (as felix); the
                 workload's egress, then the endpoint-to-host action.
    postrouting  nat hook: masquerade sources in @nat-pools going outside @all-pools.
    from-wl-dispatch / to-wl-dispatch
                 IPIP and VXLAN from workloads dropped (as felix: encapsulation could bypass
                 egress policy), anti-spoof (@wl-addrs: ifname . address), then
                 `iifname vmap @from-wl` / `oifname vmap @to-wl`; a cali* interface not in the
                 map is dropped.
    fw-<h> / tw-<h>  one chain per distinct (direction, ordered policies, profiles) signature,
                 shared by every local endpoint with it: egress (from workload) / ingress.
    po-<h> / pi-<h>  one chain per policy and direction; pro-<h> / pri-<h> per profile.
    sel-<h>, net-<h>  named interval sets for rule selectors and nets; wl-addrs, nat-pools,
                 all-pools fixed ones. Each IPv4 set has an IPv6 twin named `<name>-v6`.

Verdicts travel in two mark bits, as in felix: MARK_ACCEPT (0x10000) and MARK_PASS (0x20000),
cleared at the start of each signature chain. Policy chains set a bit and `return`, never
`accept`, so forwarded workload-to-workload traffic meets both the sender's egress and the
receiver's ingress.

Not matched: named ports (Calico resolves them through the endpoints' port lists, which the
state does not carry): a rule whose ports are all named never matches, named entries in
notPorts exclude nothing. A notICMP without an ICMP protocol only matches ICMP packets (as
iptables' icmp match, which needs the protocol). Not rendered: HTTP matches, tiers (everything
is the default tier), host endpoints (so doNotTrack / preDNAT policies).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from ...ipnets import Network, subnet_of
from ...model.v3 import EntityRule, ProfileSpec, Rule
from .model import (
    EGRESS,
    ENDPOINT_TO_HOST_ACTIONS,
    INGRESS,
    Endpoint,
    EndpointSelector,
    Policy,
    PolicyState,
    Selection,
    policy_id,
    policy_label,
    rule_selectors,
)
from .ruleset import BaseHook, Chain, NftMap, NftSet, Ruleset, quoted_comment

IFACE_PREFIX = "cali"
MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
LOG_PREFIX = "calico-packet: "
VXLAN_PORT = 4789
# felix lets these ICMPv6 types from workloads reach the host before any policy, so that a
# workload cannot cut itself off from its router (MLD 130-132, RS 133, NS 135, NA 136)
ICMPV6_ROUTER_TYPES = "mld-listener-query, mld-listener-report, mld-listener-done, " \
                      "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert"

_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPv6": "ipv6-icmp",
              "SCTP": "sctp", "UDPLite": "udplite"}
_ICMP_FAMILY = {"icmp": 4, "1": 4, "ipv6-icmp": 6, "58": 6}



# ------------------------------------------------------------------ small helpers

def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _claim(owners: dict[str, str], name: str, identity: str) -> None:
    """Record that hashed `name` stands for `identity`; two identities on one name is an error."""
    if owners.setdefault(name, identity) != identity:
        raise RuntimeError(f"name collision on {name}: {owners[name]!r} and {identity!r}")


def _ip(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def _suffix(version: int) -> str:
    """The IPv4 object has the plain name, its IPv6 twin ends in -v6."""
    return "" if version == 4 else "-v6"


def _addr_type(version: int) -> str:
    return "ipv4_addr" if version == 4 else "ipv6_addr"


@functools.lru_cache(maxsize=65536)
def _network(cidr: str) -> Network:
    """Parsed once: every render sees the same endpoint addresses and policy nets again."""
    return ipaddress.ip_network(cidr, strict=False)


def _networks(cidrs: Iterable[str], version: int) -> list[Network]:
    """Those of `version`, deduplicated, without any network inside another (nft refuses
    overlapping intervals), sorted by address."""
    nets = sorted({n for n in (_network(c) for c in cidrs) if n.version == version},
                  key=lambda n: (int(n.network_address), n.prefixlen))
    kept: list[Network] = []
    for net in nets:
        if not kept or not subnet_of(net, kept[-1]):
            kept.append(net)
    return kept


def _element(net: Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


# Every render parses every endpoint's addresses again: keep the parsed forms.
_interface = functools.lru_cache(maxsize=65536)(ipaddress.ip_interface)


def host_addresses(endpoint: Endpoint) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [_interface(a).ip for a in endpoint.addresses]


# ------------------------------------------------------------------ named sets

class _SetBook:
    """Collects the named sets the rules use; one set per distinct meaning, shared by every rule."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.sets: dict[str, NftSet] = {}
        self._keys: dict[str, str] = {}  # set name -> the key it was made for (collision guard)

    def _add(self, name: str, key: str, make: NftSet) -> str:
        _claim(self._keys, name, key)
        self.sets.setdefault(name, make)
        return name

    def selector(self, sel: EndpointSelector, version: int) -> str:
        text = sel.text()
        name = f"sel-{_hash(text)}{_suffix(version)}"
        if self._keys.get(name) == text:
            return name  # already computed
        members = _networks((str(_interface(a).ip) for a in self.selection.addresses(sel)), version)
        return self._add(name, text, NftSet(_addr_type(version), ("interval",),
                                            tuple(_element(n) for n in members), f"selector: {text}"))

    def nets(self, cidrs: Iterable[str], version: int) -> str:
        members = _networks(cidrs, version)
        text = ", ".join(_element(n) for n in members)
        name = f"net-{_hash(text)}{_suffix(version)}"
        return self._add(name, text, NftSet(_addr_type(version), ("interval",),
                                            tuple(_element(n) for n in members), f"nets: {text}"))


# ------------------------------------------------------------------ one Calico rule

def _protocol(value: object) -> str:
    return _PROTOCOLS.get(str(value), str(value))


def _versions(rule: Rule) -> tuple[int, ...]:
    """IP versions the rule can match: its ipVersion, an ICMP protocol and its nets narrow it."""
    versions = {4, 6}
    if rule.ipVersion is not None:
        versions &= {rule.ipVersion}
    if rule.protocol is not None and _protocol(rule.protocol) in _ICMP_FAMILY:
        versions &= {_ICMP_FAMILY[_protocol(rule.protocol)]}
    for entity in (rule.source, rule.destination):
        if entity and entity.nets:  # notNets do not narrow: other versions are never in them
            versions &= {ipaddress.ip_network(n, strict=False).version for n in entity.nets}
    return tuple(sorted(versions))


def _port_spec(ports: list[int | str] | None) -> str | None:
    """nft port expression for numbers and `a:b` ranges, merged and sorted; None when nothing
    numeric is left (named ports are not matched)."""
    ranges = []
    for port in ports or ():
        if isinstance(port, int):
            ranges.append((port, port))
        elif re.fullmatch(r"\d+:\d+", str(port)):
            low, high = (int(p) for p in str(port).split(":"))
            ranges.append((low, high))
    merged: list[list[int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    if not merged:
        return None
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in merged]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _port_matches(rule: Rule) -> list[str] | None:
    """`th sport/dport` conditions; None when the rule lists ports but none can match."""
    parts = []
    for entity, field in ((rule.source, "sport"), (rule.destination, "dport")):
        if entity is None:
            continue
        if entity.ports:
            spec = _port_spec(entity.ports)
            if spec is None:
                return None
            parts.append(f"th {field} {spec}")
        spec = _port_spec(entity.notPorts)
        if spec is not None:
            parts.append(f"th {field} != {spec}")
    return parts


def _icmp_matches(rule: Rule, version: int) -> list[str]:
    kw = "icmp" if version == 4 else "icmpv6"
    parts = []
    if rule.icmp is not None and rule.icmp.type is not None:
        parts.append(f"{kw} type {rule.icmp.type}")
        if rule.icmp.code is not None:
            parts.append(f"{kw} code {rule.icmp.code}")
    if rule.notICMP is not None and rule.notICMP.type is not None:
        if rule.notICMP.code is None:
            parts.append(f"{kw} type != {rule.notICMP.type}")
        else:  # not (type and code): one lookup on the pair
            parts.append(f"{kw} type . {kw} code != {{ {rule.notICMP.type} . {rule.notICMP.code} }}")
    return parts


def _address_matches(entity: EntityRule | None, field: str, version: int, policy_ns: str | None,
                     book: _SetBook) -> list[str]:
    if entity is None:
        return []
    key = f"{_ip(version)} {field}"
    parts = []
    if entity.nets:
        parts.append(f"{key} @{book.nets(entity.nets, version)}")
    if entity.notNets and _networks(entity.notNets, version):
        parts.append(f"{key} != @{book.nets(entity.notNets, version)}")
    positive, negative = rule_selectors(entity, policy_ns)
    if positive is not None:
        parts.append(f"{key} @{book.selector(positive, version)}")
    if negative is not None:
        parts.append(f"{key} != @{book.selector(negative, version)}")
    return parts


def _is_family_specific(rule: Rule, policy_ns: str | None) -> bool:
    """Whether the rule needs one nft rule per IP version (address sets, ICMP fields)."""
    if rule.icmp is not None or rule.notICMP is not None:
        return True
    for entity in (rule.source, rule.destination):
        if entity and (entity.nets or entity.notNets or any(rule_selectors(entity, policy_ns))):
            return True
    return False


def _verdict(action: str) -> str:
    if action == "Allow":
        return f"meta mark set meta mark | {MARK_ACCEPT:#x} return"
    if action == "Pass":
        return f"meta mark set meta mark | {MARK_PASS:#x} return"
    if action == "Log":
        return f'log prefix "{LOG_PREFIX}"'
    return "drop"


def _rule_lines(rule: Rule, comment: str, policy_ns: str | None, book: _SetBook) -> list[str]:
    """One Calico rule as nft rules (none if it cannot match, two when it has per-version parts)."""
    ports = _port_matches(rule)
    versions = _versions(rule)
    if ports is None or not versions:
        return []
    proto = [f"meta l4proto {_protocol(rule.protocol)}"] if rule.protocol is not None else []
    if rule.notProtocol is not None:
        proto.append(f"meta l4proto != {_protocol(rule.notProtocol)}")
    tail = [*ports, _verdict(rule.action), f"comment {quoted_comment(comment)}"]
    if len(versions) == 2 and not _is_family_specific(rule, policy_ns):
        return [" ".join([*proto, *tail])]
    lines = []
    for version in versions:
        addresses = [*_address_matches(rule.source, "saddr", version, policy_ns, book),
                     *_address_matches(rule.destination, "daddr", version, policy_ns, book)]
        family = [] if addresses else [f"meta nfproto ipv{version}"]
        lines.append(" ".join([*family, *proto, *_icmp_matches(rule, version), *addresses, *tail]))
    return lines


# ------------------------------------------------------------------ policy and profile chains

def _rules_chain(rules: list[Rule] | None, label: str, direction: str, policy_ns: str | None,
                 comment: str, book: _SetBook) -> Chain:
    lines: list[str] = []
    for index, rule in enumerate(rules or ()):
        note = f"{label} {direction.lower()}[{index}] {rule.action.lower()}"
        lines.extend(_rule_lines(rule, note, policy_ns, book))
    return Chain(tuple(lines), comment)


def policy_chain_name(policy: Policy, direction: str) -> str:
    return ("pi-" if direction == INGRESS else "po-") + _hash(policy_id(policy))


def profile_chain_name(profile: str, direction: str) -> str:
    return ("pri-" if direction == INGRESS else "pro-") + _hash(f"Profile/{profile}")


def _policy_chain(policy: Policy, direction: str, book: _SetBook) -> Chain:
    rules = policy.spec.ingress if direction == INGRESS else policy.spec.egress
    where = f"{policy.namespace}/{policy.name}" if policy.kind == "NetworkPolicy" else policy.name
    return _rules_chain(rules, policy_label(policy), direction,
                        policy.namespace if policy.kind == "NetworkPolicy" else None,
                        f"{policy.kind} {where} {direction.lower()}", book)


def _profile_chain(name: str, spec: ProfileSpec, direction: str, book: _SetBook) -> Chain:
    rules = spec.ingress if direction == INGRESS else spec.egress
    # profile rules see every namespace, as a GlobalNetworkPolicy's do
    return _rules_chain(rules, f"profile:{name}", direction, None,
                        f"Profile {name} {direction.lower()}", book)


# ------------------------------------------------------------------ signature chains

@dataclass(frozen=True)
class _Signature:
    """What decides an endpoint's chain for one direction; equal signatures share the chain."""

    direction: str
    policies: tuple[Policy, ...]
    profiles: tuple[str, ...]

    def chain_name(self) -> str:
        text = "\n".join([self.direction, *map(policy_id, self.policies), "--", *self.profiles])
        return ("tw-" if self.direction == INGRESS else "fw-") + _hash(text)

    def comment(self) -> str:
        policies = ", ".join(map(policy_label, self.policies)) or "none"
        return f"{self.direction.lower()}: policies {policies}; profiles {', '.join(self.profiles) or 'none'}"


def _signature(selection: Selection, endpoint: Endpoint, direction: str) -> _Signature:
    return _Signature(direction, selection.applicable_policies(endpoint, direction), tuple(endpoint.profiles))


def _mark_is(bit: int, value_set: bool) -> str:
    return f"meta mark & {bit:#x} {'!=' if value_set else '=='} 0"


def _signature_chain(sig: _Signature, profiles: Mapping[str, ProfileSpec]) -> Chain:
    """Policies in order (Pass skips the rest), then profiles in order; drop if none allowed."""
    rules = [f"meta mark set meta mark & {0xFFFFFFFF & ~(MARK_ACCEPT | MARK_PASS):#x} "
             f"comment {quoted_comment('clear accept and pass bits')}"]
    for policy in sig.policies:
        rules.append(f"{_mark_is(MARK_PASS, False)} jump {policy_chain_name(policy, sig.direction)} "
                     f"comment {quoted_comment(policy_label(policy))}")
        rules.append(f"{_mark_is(MARK_ACCEPT, True)} return comment {quoted_comment('allowed by policy')}")
    if sig.policies:
        rules.append(f"{_mark_is(MARK_PASS, False)} drop comment {quoted_comment('no policy allowed or passed')}")
    for profile in sig.profiles:
        if profile not in profiles:
            continue  # an unknown profile has no rules
        chain = profile_chain_name(profile, sig.direction)
        rules.append(f"jump {chain} comment {quoted_comment(f'profile:{profile}')}")
        rules.append(f"{_mark_is(MARK_ACCEPT, True)} return comment {quoted_comment('allowed by profile')}")
    rules.append(f"drop comment {quoted_comment('no profile allowed')}")
    return Chain(tuple(rules), sig.comment())


# ------------------------------------------------------------------ fixed chains

def _dispatch_chains() -> dict[str, Chain]:
    drop_unknown = f"drop comment {quoted_comment('unknown workload interface')}"
    return {
        "from-wl-dispatch": Chain((
            f"meta l4proto ipip drop comment {quoted_comment('IPIP from a workload')}",
            f"udp dport {VXLAN_PORT} drop comment {quoted_comment('VXLAN from a workload')}",
            f"iifname . ip saddr != @wl-addrs drop comment {quoted_comment('anti-spoof: not its IPv4 address')}",
            f"iifname . ip6 saddr != @wl-addrs-v6 drop comment {quoted_comment('anti-spoof: not its IPv6 address')}",
            "iifname vmap @from-wl",
            drop_unknown,
        ), "egress policy of the sending workload"),
        "to-wl-dispatch": Chain((
            "oifname vmap @to-wl",
            drop_unknown,
        ), "ingress policy of the receiving workload"),
    }


def _base_chains(endpoint_to_host: str) -> dict[str, Chain]:
    wl = f'"{IFACE_PREFIX}*"'
    conntrack = ("ct state invalid drop", "ct state established,related accept")
    host_verdict = {"Accept": "accept", "Drop": "drop", "Return": "return"}[endpoint_to_host]
    not_allowed = f"{_mark_is(MARK_ACCEPT, False)} drop comment {quoted_comment('egress policy did not allow')}"
    return {
        "forward": Chain((
            f"iifname != {wl} oifname != {wl} return comment {quoted_comment('not workload traffic')}",
            *conntrack,
            f"iifname {wl} jump from-wl-dispatch",
            f"iifname {wl} {not_allowed}",
            f"oifname {wl} jump to-wl-dispatch",
            f"accept comment {quoted_comment('allowed by workload policy')}",
        ), "workload traffic through this host", BaseHook("filter", "forward", "filter")),
        "input": Chain((
            f"iifname != {wl} return comment {quoted_comment('not from a workload')}",
            *conntrack,
            f"icmpv6 type {{ {ICMPV6_ROUTER_TYPES} }} accept comment {quoted_comment('IPv6 router duties')}",
            "jump from-wl-dispatch",
            not_allowed,
            f"{host_verdict} comment {quoted_comment(f'endpoint to host action {endpoint_to_host}')}",
        ), "workload traffic to this host", BaseHook("filter", "input", "filter")),
        "postrouting": Chain(tuple(
            f"{_ip(v)} saddr @nat-pools{_suffix(v)} {_ip(v)} daddr != @all-pools{_suffix(v)} "
            f"masquerade fully-random comment {quoted_comment('natOutgoing')}" for v in (4, 6)
        ), "natOutgoing of pool addresses", BaseHook("nat", "postrouting", "srcnat")),
    }


# ------------------------------------------------------------------ render

def local_endpoints(state: PolicyState) -> list[Endpoint]:
    """Local endpoints with an interface, by key; a second endpoint on one interface is ignored."""
    seen: set[str] = set()
    chosen = []
    for ep in sorted(state.endpoints, key=lambda e: e.key):
        if ep.local and ep.iface and ep.iface not in seen:
            seen.add(ep.iface)
            chosen.append(ep)
    return chosen


def _fixed_sets(state: PolicyState, endpoints: list[Endpoint]) -> dict[str, NftSet]:
    sets = {}
    for v in (4, 6):
        pairs = sorted((ep.iface, ip) for ep in endpoints for ip in host_addresses(ep) if ip.version == v)
        sets[f"wl-addrs{_suffix(v)}"] = NftSet(f"ifname . {_addr_type(v)}", (),
                                               tuple(f'"{i}" . {ip}' for i, ip in dict.fromkeys(pairs)),
                                               f"local workload addresses (IPv{v})")
        for name, pools, what in (("nat-pools", state.nat_pools, "pools with natOutgoing"),
                                  ("all-pools", state.all_pools, "all pools")):
            sets[f"{name}{_suffix(v)}"] = NftSet(_addr_type(v), ("interval",),
                                                 tuple(_element(n) for n in _networks(pools, v)),
                                                 f"{what} (IPv{v})")
    return sets


def render(state: PolicyState) -> Ruleset:
    if state.endpoint_to_host not in ENDPOINT_TO_HOST_ACTIONS:
        raise ValueError(f"endpoint_to_host must be one of {', '.join(ENDPOINT_TO_HOST_ACTIONS)}, "
                         f"not {state.endpoint_to_host!r}")
    selection = Selection(state)
    book = _SetBook(selection)
    endpoints = local_endpoints(state)
    chains: dict[str, Chain] = {**_base_chains(state.endpoint_to_host), **_dispatch_chains()}
    owners: dict[str, str] = {}  # hashed chain name -> what it was made for
    dispatch: dict[str, dict[str, str]] = {"from-wl": {}, "to-wl": {}}
    for ep in endpoints:
        for direction, map_name in ((INGRESS, "to-wl"), (EGRESS, "from-wl")):
            sig = _signature(selection, ep, direction)
            name = sig.chain_name()
            dispatch[map_name][ep.iface] = f"goto {name}"
            _claim(owners, name, sig.comment())
            if name in chains:
                continue
            chains[name] = _signature_chain(sig, state.profiles)
            for policy in sig.policies:
                chain_name = policy_chain_name(policy, direction)
                _claim(owners, chain_name, policy_id(policy))
                if chain_name not in chains:
                    chains[chain_name] = _policy_chain(policy, direction, book)
            for profile in sig.profiles:
                chain_name = profile_chain_name(profile, direction)
                _claim(owners, chain_name, f"Profile/{profile}")
                if profile in state.profiles and chain_name not in chains:
                    chains[chain_name] = _profile_chain(profile, state.profiles[profile], direction, book)
    sets = {**_fixed_sets(state, endpoints), **book.sets}
    maps = {name: NftMap("ifname : verdict", tuple(sorted(elements.items()))) for name, elements in dispatch.items()}
    return Ruleset(dict(sorted(sets.items())), dict(sorted(maps.items())), dict(sorted(chains.items())))
