"""The nftables renderer for Calico policy: semantics on the Ruleset value, golden scripts.

Regenerate the goldens after an intended change with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_nft_render.py`
and review the diff. Loading them into a kernel is tests/test_nft_load.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from cni_calico.lab.iptables_estimate import iptables_equivalent
from cni_calico.model.v3 import GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec, strictly
from cni_calico.node.policy.model import (
    EGRESS,
    INGRESS,
    Endpoint,
    Policy,
    PolicyState,
    Selection,
    applicable_policies,
    policy_sort_key,
    rule_selectors,
)
from cni_calico.node.policy.render import (
    MARK_ACCEPT,
    MARK_PASS,
    policy_chain_name,
    profile_chain_name,
    render,
)
from cni_calico.node.policy.ruleset import Ruleset, counts, full_script, update_script

from .golden import assert_matches_golden

GOLDEN = Path(__file__).parent / "golden" / "nft"

POOL = "10.65.0.0/16"
POOL6 = "fd00:65::/64"


# ---------------------------------------------------------------- state builders

def wep(name: str, ip: str, ns: str = "default", labels: dict[str, str] | None = None, *,
        local: bool = True, profiles: tuple[str, ...] | None = None, ip6: str | None = None) -> Endpoint:
    iface = "cali" + hashlib.sha1(f"{ns}/{name}".encode()).hexdigest()[:11]
    addresses = (f"{ip}/32",) + ((f"{ip6}/128",) if ip6 else ())
    merged = {**(labels or {}), "projectcalico.org/namespace": ns, "projectcalico.org/orchestrator": "k8s"}
    return Endpoint(f"{ns}/{name}", ns, iface, addresses, merged,
                    (f"kns.{ns}",) if profiles is None else profiles, local)


def np(ns: str, name: str, **spec: Any) -> Policy:
    return Policy("NetworkPolicy", ns, name, strictly(NetworkPolicySpec, spec))


def gnp(name: str, **spec: Any) -> Policy:
    return Policy("GlobalNetworkPolicy", None, name, strictly(GlobalNetworkPolicySpec, spec))


ALLOW_ALL = {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}


def profiles(*names: str, rules: dict[str, Any] | None = None) -> dict[str, ProfileSpec]:
    return {n: strictly(ProfileSpec, ALLOW_ALL if rules is None else rules) for n in names}


def state(endpoints: tuple[Endpoint, ...], policies: tuple[Policy, ...] = (), *,
          profile_specs: dict[str, ProfileSpec] | None = None,
          namespaces: dict[str, dict[str, str]] | None = None, nat_pools: tuple[str, ...] = (),
          all_pools: tuple[str, ...] = (POOL,), endpoint_to_host: str = "Accept") -> PolicyState:
    specs = profiles(*sorted({p for ep in endpoints for p in ep.profiles})) if profile_specs is None else profile_specs
    return PolicyState(endpoints, policies, specs, namespaces or {}, nat_pools, all_pools, endpoint_to_host)


WEB = wep("web", "10.65.0.10", labels={"app": "web"}, ip6="fd00:65::10")
DB = wep("db", "10.65.0.20", labels={"app": "db"})
DB_REMOTE = wep("db-2", "10.65.1.20", labels={"app": "db"}, local=False)
OTHER_DB = wep("db", "10.65.2.20", ns="other", labels={"app": "db"}, local=False)
PROD_DB = wep("db", "10.65.3.20", ns="prod", labels={"app": "db"}, local=False)
NAMESPACES = {"default": {"team": "web"}, "other": {"team": "data"}, "prod": {"team": "data", "env": "prod"}}


# ---------------------------------------------------------------- golden cases

CASES: dict[str, PolicyState] = {
    # No policy at all: the namespace profile decides, in both directions.
    "profile_only": state((WEB, DB)),
    # Deny SSH to web, allow the rest of TCP; egress untouched (Ingress type only).
    "deny_tcp_port": state((WEB, DB), (
        np("default", "no-ssh", order=100, selector="app == 'web'", ingress=[
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [22, "2222:2224"]}},
            {"action": "Allow", "protocol": "TCP", "destination": {"notPorts": [22]}},
            {"action": "Allow", "protocol": "UDP", "source": {"ports": [53]}, "destination": {"ports": ["dns"]}},
        ]),)),
    # ICMP and ICMPv6: echo allowed, one type/code denied, everything else but echo logged.
    "icmp": state((WEB,), (
        gnp("icmp", selector="all()", ingress=[
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
            {"action": "Deny", "protocol": "ICMP", "icmp": {"type": 3, "code": 1}},
            {"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 128, "code": 0}},
            {"action": "Log", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}},
            {"action": "Deny", "notProtocol": "ICMP", "ipVersion": 4},
        ]),)),
    # Rule selectors: namespaced (own namespace), namespaceSelector, notSelector; a GNP with a
    # namespaceSelector of its own.
    "selector_namespace_selector": state((WEB, DB, DB_REMOTE, OTHER_DB, PROD_DB), (
        np("default", "web-from-db", order=10, selector="app == 'web'", ingress=[
            {"action": "Allow", "source": {"selector": "app == 'db'"}},
            {"action": "Allow", "source": {"selector": "app == 'db'", "namespaceSelector": "team == 'data'"}},
            {"action": "Deny", "source": {"notSelector": "app == 'db'"}},
        ]),
        gnp("data-egress", order=20, namespaceSelector="team == 'web'", types=["Egress"], egress=[
            {"action": "Allow", "destination": {"namespaceSelector": "env == 'prod'"}},
            {"action": "Deny", "destination": {"namespaceSelector": "global()"}},
        ]),
    ), namespaces=NAMESPACES),
    # nets and notNets, one set each, shared by the two rules that name the same nets.
    "nets_not_nets": state((WEB,), (
        np("default", "nets", selector="all()", types=["Ingress", "Egress"], ingress=[
            {"action": "Allow", "source": {"nets": ["192.0.2.0/24", "198.51.100.7/32"], "notNets": ["192.0.2.128/25"]}},
            {"action": "Deny", "source": {"nets": ["2001:db8::/32"]}},
        ], egress=[
            {"action": "Allow", "destination": {"nets": ["198.51.100.7/32", "192.0.2.0/24"]}},
            {"action": "Deny", "destination": {"notNets": ["10.0.0.0/8", "10.1.0.0/16"]}},
        ]),)),
    # Order (an unordered policy last, ties by name), Pass to the profiles, Log continuing.
    "pass_and_order": state((WEB,), (
        np("default", "z-unordered", selector="all()", ingress=[{"action": "Allow"}]),
        np("default", "b-pass", order=50, selector="all()", ingress=[
            {"action": "Log", "protocol": "TCP"},
            {"action": "Pass", "protocol": "TCP", "destination": {"ports": [80]}},
        ]),
        gnp("a-deny", order=50, selector="all()", ingress=[{"action": "Deny", "protocol": "UDP"}]),
        gnp("first", order=1.5, selector="all()", ingress=[{"action": "Pass", "source": {"nets": ["10.65.0.0/16"]}}]),
    ), profile_specs=profiles("kns.default", rules={"ingress": [{"action": "Pass"}], "egress": [{"action": "Allow"}]})),
    # natOutgoing on one of two pools, both versions; workloads may not reach the host.
    "nat_outgoing": state((WEB,), nat_pools=(POOL, POOL6), all_pools=(POOL, "10.66.0.0/16", POOL6),
                          endpoint_to_host="Drop"),
    # Two local endpoints whose ingress policies differ: two ingress chains, one shared egress chain.
    "two_signatures": state((WEB, DB), (
        np("default", "web-in", order=10, selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "TCP"}]),
        np("default", "all-out", order=20, selector="all()", types=["Egress"], egress=[{"action": "Allow"}]),
    ), endpoint_to_host="Return"),
}


def golden_path(case: str) -> Path:
    return GOLDEN / f"{case}.nft"


# ---------------------------------------------------------------- a tiny evaluator

_RULE = re.compile(r"^(?P<cond>.*?)\s*(?P<action>jump \S+|goto \S+|return|drop|accept"
                   r"|meta mark set meta mark \| 0x[0-9a-f]+ return|meta mark set meta mark & 0x[0-9a-f]+"
                   r'|log prefix "[^"]*")(?: comment "[^"]*")?$')
_MARK_TEST = re.compile(r"meta mark & (0x[0-9a-f]+) (==|!=) 0\s*")


def run_chain(rs: Ruleset, chain: str, matches: Callable[[str], bool], mark: int = 0) -> tuple[str, int]:
    """Follow one packet through `chain` of the rendered ruleset. Mark tests, jumps, returns and
    verdicts are evaluated; any other condition of a rule is decided by `matches(rule)`.
    Returns ("drop" | "return", mark)."""
    for rule in rs.chains[chain].rules:
        parsed = _RULE.match(rule)
        assert parsed, f"unexpected rule form: {rule}"
        cond, action = parsed.group("cond"), parsed.group("action")
        ok = True
        for bit, op in _MARK_TEST.findall(cond):
            ok = ok and ((mark & int(bit, 16)) != 0) == (op == "!=")
        rest = _MARK_TEST.sub("", cond).strip()
        if not ok or (rest and not matches(rule)):
            continue
        if action.startswith(("jump ", "goto ")):
            verdict, mark = run_chain(rs, action.split()[1], matches, mark)
            if verdict == "drop" or action.startswith("goto"):
                return verdict, mark
        elif action == "return":
            return "return", mark
        elif action == "drop":
            return "drop", mark
        elif action.endswith(" return"):
            return "return", mark | int(action.split()[-2], 16)
        elif action.startswith("meta mark set meta mark &"):
            mark &= int(action.split()[-1], 16)
    return "return", mark


def verdict(rs: Ruleset, map_name: str, iface: str, matches: Callable[[str], bool] = lambda r: True) -> str:
    """"allow" or "drop" for a packet to (`to-wl`) or from (`from-wl`) a local workload."""
    target = dict(rs.maps[map_name].elements)[iface]
    result, mark = run_chain(rs, target.split()[1], matches)
    return "allow" if result == "return" and mark & MARK_ACCEPT else "drop"


def jumps(rs: Ruleset, chain: str) -> list[str]:
    return [m.group(1) for r in rs.chains[chain].rules for m in [re.search(r"jump (\S+)", r)] if m]


def ingress_chain(rs: Ruleset, ep: Endpoint) -> str:
    return dict(rs.maps["to-wl"].elements)[ep.iface].split()[1]


def egress_chain(rs: Ruleset, ep: Endpoint) -> str:
    return dict(rs.maps["from-wl"].elements)[ep.iface].split()[1]


def selector_sets(rs: Ruleset) -> dict[str, tuple[str, ...]]:
    """Selector text -> IPv4 members of every selector set."""
    return {s.comment.removeprefix("selector: "): s.elements for name, s in rs.sets.items()
            if name.startswith("sel-") and not name.endswith("-v6")}


# ---------------------------------------------------------------- policy selection and order

def test_policies_apply_in_order_then_calico_key_name() -> None:
    st = CASES["pass_and_order"]
    order = [p.name for p in applicable_policies(st, WEB, INGRESS)]
    # 1.5 first; at 50 the GNP key "a-deny" sorts before the NP key "default/b-pass"; no order last
    assert order == ["first", "a-deny", "b-pass", "z-unordered"]
    rs = render(st)
    assert jumps(rs, ingress_chain(rs, WEB)) == [
        *(policy_chain_name(p, INGRESS) for p in applicable_policies(st, WEB, INGRESS)),
        profile_chain_name("kns.default", INGRESS)]


def test_namespaced_tie_break_uses_namespace_slash_name() -> None:
    # Calico's key for a NetworkPolicy is "<namespace>/<name>": "zz/a" sorts after GNP "b"
    keys = sorted([np("zz", "a", order=1), gnp("b", order=1)], key=policy_sort_key)
    assert [p.name for p in keys] == ["b", "a"]


def test_network_policy_selects_its_own_namespace_only() -> None:
    policy = np("default", "p", selector="app == 'db'")
    other_db = dataclasses.replace(OTHER_DB, local=True)
    st = state((DB, other_db), (policy,))
    assert applicable_policies(st, DB, INGRESS) == (policy,)
    assert applicable_policies(st, other_db, INGRESS) == ()


def test_global_policy_selects_every_namespace_narrowed_by_namespace_selector() -> None:
    everywhere = gnp("everywhere", selector="app == 'db'")
    data_only = gnp("data-only", selector="app == 'db'", namespaceSelector="team == 'data'")
    st = state((DB, OTHER_DB), (everywhere, data_only), namespaces=NAMESPACES)
    assert applicable_policies(st, DB, INGRESS) == (everywhere,)
    assert applicable_policies(st, OTHER_DB, INGRESS) == (data_only, everywhere)


def test_untracked_and_pre_dnat_policies_do_not_apply_to_workloads() -> None:
    raw = gnp("raw", doNotTrack=True, applyOnForward=True, ingress=[{"action": "Deny"}])
    st = state((WEB,), (raw,))
    assert applicable_policies(st, WEB, INGRESS) == ()


def test_policy_types_decide_the_direction() -> None:
    st = CASES["two_signatures"]
    assert [p.name for p in applicable_policies(st, WEB, INGRESS)] == ["web-in"]
    assert [p.name for p in applicable_policies(st, WEB, EGRESS)] == ["all-out"]
    assert [p.name for p in applicable_policies(st, DB, INGRESS)] == []


# ---------------------------------------------------------------- verdicts

def test_profile_decides_when_no_policy_applies() -> None:
    rs = render(CASES["profile_only"])
    assert verdict(rs, "to-wl", WEB.iface) == "allow"
    assert verdict(rs, "from-wl", WEB.iface) == "allow"
    deny_all = render(state((WEB,), profile_specs=profiles("kns.default", rules={})))
    assert verdict(deny_all, "to-wl", WEB.iface) == "drop"


def test_policies_that_apply_but_do_not_allow_drop_before_the_profiles() -> None:
    st = state((WEB,), (np("default", "tcp-only", selector="all()", ingress=[{"action": "Allow", "protocol": "TCP"}]),))
    rs = render(st)
    assert verdict(rs, "to-wl", WEB.iface, matches=lambda r: "l4proto tcp" in r) == "allow"
    assert verdict(rs, "to-wl", WEB.iface, matches=lambda r: False) == "drop"  # the allow-all profile is not reached
    assert verdict(rs, "from-wl", WEB.iface) == "allow"  # no egress policy: the profile


def test_first_matching_policy_wins_deny_before_allow() -> None:
    deny = np("default", "deny", order=1, selector="all()", ingress=[{"action": "Deny"}])
    allow = np("default", "allow", order=2, selector="all()", ingress=[{"action": "Allow"}])
    assert verdict(render(state((WEB,), (deny, allow))), "to-wl", WEB.iface) == "drop"
    earlier_allow = dataclasses.replace(allow, spec=allow.spec.model_copy(update={"order": 0}))
    assert verdict(render(state((WEB,), (deny, earlier_allow))), "to-wl", WEB.iface) == "allow"


def test_pass_skips_remaining_policies_and_goes_to_the_profiles() -> None:
    passing = np("default", "pass", order=1, selector="all()", ingress=[{"action": "Pass"}])
    deny = np("default", "deny", order=2, selector="all()", ingress=[{"action": "Deny"}])
    assert verdict(render(state((WEB,), (passing, deny))), "to-wl", WEB.iface) == "allow"
    no_profile = state((WEB,), (passing, deny), profile_specs=profiles("kns.default", rules={}))
    assert verdict(render(no_profile), "to-wl", WEB.iface) == "drop"


def test_pass_in_a_profile_moves_on_to_the_next_profile() -> None:
    specs = {"first": strictly(ProfileSpec, {"ingress": [{"action": "Pass"}, {"action": "Deny"}]}),
             "second": strictly(ProfileSpec, {"ingress": [{"action": "Allow"}]})}
    ep = dataclasses.replace(WEB, profiles=("first", "second"))
    assert verdict(render(state((ep,), profile_specs=specs)), "to-wl", ep.iface) == "allow"
    alone = dataclasses.replace(WEB, profiles=("first",))
    assert verdict(render(state((alone,), profile_specs=specs)), "to-wl", alone.iface) == "drop"


def test_log_continues_to_the_next_rule() -> None:
    log_then_deny = np("default", "p", selector="all()", ingress=[{"action": "Log"}, {"action": "Deny"}])
    rs = render(state((WEB,), (log_then_deny,)))
    chain = rs.chains[policy_chain_name(log_then_deny, INGRESS)]
    assert chain.rules[0].startswith('log prefix "calico-packet: "')
    assert verdict(rs, "to-wl", WEB.iface) == "drop"


def test_allow_and_pass_return_with_a_mark_never_accept() -> None:
    rs = render(CASES["pass_and_order"])
    policy_rules = [r for n, c in rs.chains.items() if n.startswith(("pi-", "po-", "pri-", "pro-")) for r in c.rules]
    assert policy_rules and not any(re.search(r"\baccept\b", r) for r in policy_rules)
    assert any(f"| {MARK_PASS:#x} return" in r for r in policy_rules)
    assert any(f"| {MARK_ACCEPT:#x} return" in r for r in policy_rules)


def test_signature_chains_clear_both_bits_first() -> None:
    rs = render(CASES["two_signatures"])
    for name, chain in rs.chains.items():
        if name.startswith(("tw-", "fw-")):
            assert chain.rules[0].startswith("meta mark set meta mark & 0xfffcffff")


def test_forward_runs_egress_then_checks_the_mark_then_ingress() -> None:
    rules = render(CASES["profile_only"]).chains["forward"].rules
    egress = next(i for i, r in enumerate(rules) if "jump from-wl-dispatch" in r)
    check = next(i for i, r in enumerate(rules) if f"meta mark & {MARK_ACCEPT:#x} == 0 drop" in r)
    ingress = next(i for i, r in enumerate(rules) if "jump to-wl-dispatch" in r)
    assert egress < check < ingress
    assert rules[0].startswith('iifname != "cali*" oifname != "cali*" return')  # others untouched


@pytest.mark.parametrize("action, last", [("Accept", "accept"), ("Drop", "drop"), ("Return", "return")])
def test_endpoint_to_host_action_follows_egress_policy(action: str, last: str) -> None:
    rules = render(state((WEB,), endpoint_to_host=action)).chains["input"].rules
    assert rules.index("jump from-wl-dispatch") < len(rules) - 1
    assert rules[-1].split(" comment ")[0] == last


def test_endpoint_to_host_must_be_known() -> None:
    with pytest.raises(ValueError, match="endpoint_to_host"):
        render(state((WEB,), endpoint_to_host="Allow"))


def test_unknown_workload_interfaces_are_dropped() -> None:
    rs = render(CASES["profile_only"])
    for name, lookup in (("from-wl-dispatch", "iifname vmap @from-wl"), ("to-wl-dispatch", "oifname vmap @to-wl")):
        rules = rs.chains[name].rules
        assert rules[-2] == lookup and rules[-1].startswith("drop ")


# ---------------------------------------------------------------- rule matching

def test_rule_selector_is_scoped_to_the_policy_namespace() -> None:
    sets = selector_sets(render(CASES["selector_namespace_selector"]))
    # local and remote endpoints of the policy's namespace, not the other namespaces' db
    assert sets["projectcalico.org/namespace == 'default' && (app == 'db')"] == ("10.65.0.20", "10.65.1.20")
    assert sets["namespace(team == 'data') && (app == 'db')"] == ("10.65.2.20", "10.65.3.20")
    # notSelector is not namespace-scoped: every endpoint matching it, anywhere
    assert sets["(app == 'db')"] == ("10.65.0.20", "10.65.1.20", "10.65.2.20", "10.65.3.20")
    # the NetworkPolicy's notSelector-only rule still gets the own-namespace positive set
    assert sets["projectcalico.org/namespace == 'default'"] == ("10.65.0.10", "10.65.0.20", "10.65.1.20")


def test_global_policy_rule_selector_sees_all_namespaces() -> None:
    policy = gnp("g", ingress=[{"action": "Allow", "source": {"selector": "app == 'db'"}}])
    sets = selector_sets(render(state((WEB, DB, OTHER_DB), (policy,))))
    assert sets == {"(app == 'db')": ("10.65.0.20", "10.65.2.20")}


def test_namespace_selector_global_matches_no_workload() -> None:
    sets = selector_sets(render(CASES["selector_namespace_selector"]))
    assert sets["namespace(global())"] == ()
    assert sets["namespace(env == 'prod')"] == ("10.65.3.20",)


def test_one_selector_set_shared_by_every_rule_using_it_with_an_ipv6_twin() -> None:
    source = np("default", "a", ingress=[{"action": "Allow", "source": {"selector": "app == 'db'"}}])
    dest = np("default", "b", types=["Egress"], egress=[{"action": "Deny", "destination": {"selector": "app == 'db'"}}])
    rs = render(state((WEB, DB), (source, dest)))
    names = sorted(n for n in rs.sets if n.startswith("sel-"))
    assert len(names) == 2 and names[1] == names[0] + "-v6" and rs.sets[names[1]].type == "ipv6_addr"
    assert rs.sets[names[0]].elements == ("10.65.0.20",)
    users = {chain for chain, c in rs.chains.items() for r in c.rules if f"@{names[0]} " in r}
    assert users == {policy_chain_name(source, INGRESS), policy_chain_name(dest, EGRESS)}


def test_service_account_names_select_by_label() -> None:
    api = wep("api", "10.65.0.30", labels={"projectcalico.org/serviceaccount": "api-sa"})
    policy = np("default", "sa", ingress=[{"action": "Allow", "source": {"serviceAccounts": {"names": ["api-sa"]}}}])
    sets = selector_sets(render(state((WEB, api, DB), (policy,))))
    assert list(sets.values()) == [("10.65.0.30",)]


def test_same_nets_share_one_set_and_notnets_drop_contained_networks() -> None:
    rs = render(CASES["nets_not_nets"])
    nets = {n: s.elements for n, s in rs.sets.items() if n.startswith("net-")}
    assert ("192.0.2.0/24", "198.51.100.7") in nets.values()  # written in two orders, one set
    assert ("10.0.0.0/8",) in nets.values()  # 10.1.0.0/16 lies inside
    assert len([e for e in nets.values() if e == ("192.0.2.0/24", "198.51.100.7")]) == 1


def test_ipv6_nets_rule_is_ipv6_only_and_notnets_of_one_version_let_the_other_pass() -> None:
    rs = render(CASES["nets_not_nets"])
    policy = CASES["nets_not_nets"].policies[0]
    ingress = rs.chains[policy_chain_name(policy, INGRESS)].rules
    assert [r for r in ingress if "ingress[1]" in r] == [next(r for r in ingress if "ip6 saddr @net-" in r)]
    egress_deny = [r for r in rs.chains[policy_chain_name(policy, EGRESS)].rules if "egress[1]" in r]
    assert egress_deny[0].startswith("ip daddr != @net-") and egress_deny[1].startswith("meta nfproto ipv6 drop")


def test_ports_ranges_and_named_ports() -> None:
    rs = render(CASES["deny_tcp_port"])
    rules = rs.chains[policy_chain_name(CASES["deny_tcp_port"].policies[0], INGRESS)].rules
    assert rules[0].startswith("meta l4proto tcp th dport { 22, 2222-2224 } drop")
    assert rules[1].startswith("meta l4proto tcp th dport != 22 meta mark set")
    assert len(rules) == 2  # the rule whose only destination port is named never matches


def test_icmp_rules_only_in_their_ip_version() -> None:
    rs = render(CASES["icmp"])
    rules = rs.chains[policy_chain_name(CASES["icmp"].policies[0], INGRESS)].rules
    assert rules[0].startswith("meta nfproto ipv4 meta l4proto icmp icmp type 8 meta mark set")
    assert rules[1].startswith("meta nfproto ipv4 meta l4proto icmp icmp type 3 icmp code 1 drop")
    assert rules[2].startswith("meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 128 icmpv6 code 0 meta mark")
    assert "icmp type . icmp code != { 8 . 0 }" in rules[3]
    assert rules[4].startswith("meta nfproto ipv4 meta l4proto != icmp drop")
    assert len(rules) == 5


def test_rule_comments_name_policy_and_rule_index() -> None:
    rs = render(CASES["deny_tcp_port"])
    rules = rs.chains[policy_chain_name(CASES["deny_tcp_port"].policies[0], INGRESS)].rules
    assert rules[0].endswith('comment "np:default/no-ssh ingress[0] deny"')
    assert rules[1].endswith('comment "np:default/no-ssh ingress[1] allow"')


# ---------------------------------------------------------------- anti-spoof and NAT

def test_anti_spoof_set_holds_each_local_address_with_its_interface() -> None:
    rs = render(CASES["selector_namespace_selector"])
    assert rs.sets["wl-addrs"].elements == (f'"{DB.iface}" . 10.65.0.20', f'"{WEB.iface}" . 10.65.0.10')
    assert rs.sets["wl-addrs-v6"].elements == (f'"{WEB.iface}" . fd00:65::10',)
    spoof = [r for r in rs.chains["from-wl-dispatch"].rules if "@wl-addrs" in r]
    assert [r.split(" comment")[0] for r in spoof] == ["iifname . ip saddr != @wl-addrs drop",
                                                       "iifname . ip6 saddr != @wl-addrs-v6 drop"]


def test_nat_pools_and_masquerade() -> None:
    rs = render(CASES["nat_outgoing"])
    assert rs.sets["nat-pools"].elements == ("10.65.0.0/16",)
    assert rs.sets["all-pools"].elements == ("10.65.0.0/16", "10.66.0.0/16")
    assert rs.sets["nat-pools-v6"].elements == ("fd00:65::/64",)
    assert rs.chains["postrouting"].base.type == "nat"
    assert rs.chains["postrouting"].rules[0].startswith("ip saddr @nat-pools ip daddr != @all-pools masquerade")
    assert render(CASES["profile_only"]).sets["nat-pools"].elements == ()


# ---------------------------------------------------------------- sharing and size

def many(n: int) -> PolicyState:
    eps = tuple(wep(f"web-{i}", f"10.65.{i // 200}.{i % 200 + 1}", labels={"app": "web"}) for i in range(n))
    return state(eps, (
        *CASES["deny_tcp_port"].policies,
        np("default", "from-web", selector="all()",
           ingress=[{"action": "Allow", "source": {"selector": "app == 'web'"}}])))


def test_endpoints_with_one_signature_share_one_chain_per_direction() -> None:
    st = many(50)
    rs = render(st)
    assert len({t for _, t in rs.maps["to-wl"].elements}) == 1
    assert len({t for _, t in rs.maps["from-wl"].elements}) == 1
    assert len(rs.maps["to-wl"].elements) == len(rs.maps["from-wl"].elements) == 50
    assert len([n for n in rs.chains if n.startswith(("tw-", "fw-"))]) == 2


def test_rule_count_does_not_grow_with_endpoints() -> None:
    small, large = counts(render(many(5))), counts(render(many(500)))
    assert small["rules"] == large["rules"] and small["chains"] == large["chains"]
    assert large["map_elements"] == 1000 and large["set_elements"] > small["set_elements"]
    # the per-endpoint-chain layout grows by a fixed amount per endpoint (its chains and jumps)
    per_endpoint = iptables_equivalent(many(6)) - iptables_equivalent(many(5))
    assert per_endpoint > 0
    assert iptables_equivalent(many(500)) == iptables_equivalent(many(5)) + 495 * per_endpoint


def test_two_signatures_get_two_chains_and_share_policy_chains() -> None:
    st = CASES["two_signatures"]
    rs = render(st)
    assert ingress_chain(rs, WEB) != ingress_chain(rs, DB)
    assert egress_chain(rs, WEB) == egress_chain(rs, DB)
    all_out = policy_chain_name(st.policies[1], EGRESS)
    assert all_out in jumps(rs, egress_chain(rs, WEB))
    assert len([n for n in rs.chains if n.startswith("po-")]) == 1


def test_inactive_policies_render_nothing() -> None:
    unused = np("other", "unused", ingress=[{"action": "Allow", "source": {"selector": "x == 'y'"}}])
    assert render(state((WEB,), (unused,))) == render(state((WEB,)))


def test_counts() -> None:
    # chains: 3 base + 2 dispatch + one shared tw/fw pair + the profile's pri/pro = 9; rules:
    # forward 7, input 7, postrouting 2, dispatch 6 + 2, tw and fw 4 each, pri and pro 1 each = 34;
    # elements: wl-addrs 2 + wl-addrs-v6 1 + all-pools 1; each map has both interfaces
    c = counts(render(CASES["profile_only"]))
    assert c == {"rules": 34, "chains": 9, "sets": 6, "maps": 2, "set_elements": 4, "map_elements": 4}


def test_iptables_equivalent_formula() -> None:
    # one IPv4 endpoint, its profile allows both ways: 2 * (4 + 2) + (2 + 2) + (2 + 2) = 20
    one = state((DB,))
    assert iptables_equivalent(one) == 20
    # plus one policy with a Deny and an Allow on ingress: +2 +2 (tier start/end, jump/return), +1 +2
    with_policy = state((DB,), (np("default", "p", ingress=[{"action": "Deny"}, {"action": "Allow"}]),))
    assert iptables_equivalent(with_policy) == 20 + 4 + 3
    # an IPv6 address doubles it (ip6tables)
    assert iptables_equivalent(state((WEB,))) == 40


# ---------------------------------------------------------------- determinism and updates

def test_render_is_deterministic_whatever_the_input_order() -> None:
    st = CASES["selector_namespace_selector"]
    shuffled = dataclasses.replace(st, endpoints=st.endpoints[::-1], policies=st.policies[::-1])
    assert full_script(render(st)) == full_script(render(shuffled))


def test_update_script_empty_when_nothing_changed() -> None:
    rs = render(CASES["two_signatures"])
    assert update_script(rs, render(CASES["two_signatures"])) == ""


def test_update_for_selector_membership_touches_only_set_elements() -> None:
    before = CASES["selector_namespace_selector"]
    new_db = wep("db-3", "10.65.4.20", labels={"app": "db"}, local=False)
    script = update_script(render(before), render(dataclasses.replace(before, endpoints=(*before.endpoints, new_db))))
    lines = script.splitlines()
    assert lines and all(line.startswith("add element inet calico sel-") for line in lines)
    assert all("10.65.4.20" in line for line in lines)


def test_update_for_new_policy_adds_chains_and_leaves_kept_chains_alone() -> None:
    before = CASES["two_signatures"]
    deny = np("default", "db-deny", order=5, selector="app == 'db'", ingress=[{"action": "Deny", "protocol": "UDP"}])
    old, new = render(before), render(dataclasses.replace(before, policies=(*before.policies, deny)))
    script = update_script(old, new)
    assert "delete table" not in script
    assert f"add chain inet calico {policy_chain_name(deny, INGRESS)}" in script
    # DB's ingress signature changed: a new chain, the map repointed, the old chain emptied
    # (it jumps to the profile chain) and deleted; no kept chain is touched
    assert re.findall(r"^flush chain inet calico (\S+)$", script, re.M) == [ingress_chain(old, DB)]
    assert ingress_chain(old, DB) not in new.chains
    repoint = f'add element inet calico to-wl {{ "{DB.iface}" : goto {ingress_chain(new, DB)} }}'
    assert repoint in script.splitlines()
    assert re.search(rf"^delete chain inet calico {ingress_chain(old, DB)}$", script, re.M)


def test_update_for_changed_policy_rules_flushes_only_that_chain() -> None:
    before = CASES["two_signatures"]
    web_in = before.policies[0]
    changed = dataclasses.replace(web_in, spec=web_in.spec.model_copy(update={"ingress": [
        strictly(NetworkPolicySpec, {"ingress": [{"action": "Allow", "protocol": "UDP"}]}).ingress[0]]}))
    script = update_script(render(before), render(dataclasses.replace(before, policies=(changed, before.policies[1]))))
    assert re.findall(r"^flush chain inet calico (\S+)$", script, re.M) == [policy_chain_name(web_in, INGRESS)]
    assert "meta l4proto udp" in script


def test_update_falls_back_to_full_replacement_when_a_definition_changes() -> None:
    old = render(CASES["profile_only"])
    forward = old.chains["forward"]
    new = dataclasses.replace(old, chains={**old.chains, "forward": dataclasses.replace(forward, comment="x")})
    assert update_script(old, new) == full_script(new)


# ---------------------------------------------------------------- golden files

@pytest.mark.parametrize("case", sorted(CASES))
def test_full_script_matches_golden(case: str) -> None:
    text = full_script(render(CASES[case]))
    assert_matches_golden(golden_path(case), text)


def test_no_stale_golden_files() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.nft")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grouped_selection_equals_selection_endpoint_by_endpoint(case: str) -> None:
    """The renderer evaluates selectors once per (namespace, labels) group: same answers as one
    endpoint at a time, for every endpoint, direction and rule selector of every case."""
    st = CASES[case]
    selection = Selection(st)
    for ep in st.endpoints:
        for direction in (INGRESS, EGRESS):
            assert selection.applicable_policies(ep, direction) == applicable_policies(st, ep, direction)
    for policy in st.policies:
        for rule in (policy.spec.ingress or []) + (policy.spec.egress or []):
            for side in (rule.source, rule.destination):
                for sel in rule_selectors(side, policy.namespace):
                    if sel is not None:
                        one_by_one = [a for ep in st.endpoints if sel.matches(ep, st) for a in ep.addresses]
                        assert sorted(selection.addresses(sel)) == sorted(one_by_one)
