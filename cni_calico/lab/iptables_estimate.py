"""What Calico's per-endpoint iptables layout would need for a policy state: an estimate that
`make bench` prints beside the nftables table's own figures (it is not used by calico-node)."""

from __future__ import annotations

from ..model.v3 import Rule
from ..node.policy.model import EGRESS, INGRESS, PolicyState, Selection, policy_id
from ..node.policy.render import host_addresses, local_endpoints


def _iptables_rule_cost(rules: list[Rule] | None) -> int:
    # Allow and Pass: set a mark bit, then return; Deny and Log: one rule
    return sum(2 if r.action in ("Allow", "Pass") else 1 for r in rules or ())


def iptables_equivalent(state: PolicyState) -> int:
    """Rules Calico's per-endpoint iptables layout would need for `state` (an estimate).

        F * ( sum over local endpoints e and directions d of
                  4 + (2 + 2*P(e,d) if P(e,d) > 0 else 0) + 2*R(e)
              + 2*E + 2
              + sum over active policies p and directions d of cost(rules of p in d)
              + sum over active profiles r and directions d of cost(rules of r in d) )

    F: IP versions with a local endpoint address (at least 1; iptables and ip6tables are
    separate tables); E: local endpoints; P(e,d): policies applying to e in d; R(e): e's
    profiles. Per endpoint chain: conntrack accept, conntrack invalid drop, clear marks and the
    final drop (4); per tier a start rule and an end-of-tier drop (2); a jump and an
    accept-check per policy and per profile (2 each). Dispatch: one goto per endpoint and
    direction plus a drop per dispatch chain. cost: 2 per Allow or Pass rule (set mark,
    return), 1 per Deny or Log. Active: applying to at least one local endpoint."""
    endpoints = local_endpoints(state)
    selection = Selection(state)
    families = {ip.version for ep in endpoints for ip in host_addresses(ep)} or {4}
    total = 2 * len(endpoints) + 2
    active_policies: set[tuple[str, str]] = set()
    active_profiles: set[str] = set()
    for ep in endpoints:
        for direction in (INGRESS, EGRESS):
            policies = selection.applicable_policies(ep, direction)
            total += 4 + (2 + 2 * len(policies) if policies else 0) + 2 * len(ep.profiles)
            active_policies.update((policy_id(p), direction) for p in policies)
        active_profiles.update(p for p in ep.profiles if p in state.profiles)
    by_id = {policy_id(p): p for p in state.policies}
    for pid, direction in active_policies:
        spec = by_id[pid].spec
        total += _iptables_rule_cost(spec.ingress if direction == INGRESS else spec.egress)
    for name in active_profiles:
        profile = state.profiles[name]
        total += _iptables_rule_cost(profile.ingress) + _iptables_rule_cost(profile.egress)
    return len(families) * total
