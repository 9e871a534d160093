"""The policy dataplane at scale, for `make bench`: N local endpoints x M policies rendered and
loaded into a real kernel (a private network namespace made here and deleted after), then one
policy changed and one endpoint added incrementally. Prints times and the table's size beside what
Calico's per-endpoint-chain iptables layout would need for the same state.

The synthetic cluster: endpoints spread over 5 namespaces, labelled app=app<i % 20> and
role=r<i % 10>; policy j selects app<j % 20> (half of them NetworkPolicies in one namespace,
half global), with an ingress rule allowing TCP ports from role r<j % 10>, one denying a /24, and
an egress rule allowing UDP 53.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import subprocess
import time
import uuid
from typing import Any, Callable, TypeVar

from ..model import v3
from ..node.policy.apply import NftCommand, NftDataplane, NftLibrary
from ..node.policy.model import Endpoint, Policy, PolicyState
from ..node.policy.render import render
from ..node.policy.ruleset import counts
from .hosts import NETNS_DIR
from .iptables_estimate import iptables_equivalent

NAMESPACES = 5
T = TypeVar("T")


def endpoint(i: int) -> Endpoint:
    namespace = f"ns{i % NAMESPACES}"
    return Endpoint(key=f"{namespace}/wep{i}", namespace=namespace, iface=f"cali{i:011d}",
                    addresses=(f"10.{64 + i // 65536}.{i // 256 % 256}.{i % 256}/32",),
                    labels={"app": f"app{i % 20}", "role": f"r{i % 10}", "projectcalico.org/namespace": namespace},
                    profiles=(f"kns.{namespace}",), local=True)


def policy(j: int) -> Policy:
    spec = {"order": j, "selector": f"app == 'app{j % 20}'",
            "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": f"role == 'r{j % 10}'"},
                         "destination": {"ports": [80, 443, f"{8000 + j}:{8100 + j}"]}},
                        {"action": "Deny", "source": {"nets": [f"192.168.{j}.0/24"]}}],
            "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}]}
    if j % 2:
        return Policy("GlobalNetworkPolicy", None, f"gnp-{j}", v3.strictly(v3.GlobalNetworkPolicySpec, spec))
    return Policy("NetworkPolicy", "ns0", f"np-{j}", v3.strictly(v3.NetworkPolicySpec, spec))


def synthetic_state(endpoints: int, policies: int) -> PolicyState:
    allow_all = v3.strictly(v3.ProfileSpec, {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})
    return PolicyState(endpoints=tuple(endpoint(i) for i in range(endpoints)),
                       policies=tuple(policy(j) for j in range(policies)),
                       profiles={f"kns.ns{n}": allow_all for n in range(NAMESPACES)},
                       namespaces={f"ns{n}": {"projectcalico.org/name": f"ns{n}"} for n in range(NAMESPACES)},
                       nat_pools=("10.64.0.0/10",), all_pools=("10.64.0.0/10",))


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.monotonic()
    value = action()
    return time.monotonic() - started, value


def measure(endpoints: int = 1000, policies: int = 100, repeats: int = 5) -> dict[str, Any]:
    state = synthetic_state(endpoints, policies)
    netns = f"ccpolbench{os.getpid()}-{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    try:
        library = NftLibrary(f"{NETNS_DIR}/{netns}")  # as calico-node applies
        dataplane = NftDataplane(library)
        render_s, ruleset = _timed(lambda: render(state))
        full_s, how = _timed(lambda: dataplane.apply(ruleset))
        assert how == "full"

        def render_and_apply(state: PolicyState) -> str:
            return dataplane.apply(render(state))

        changes, additions = [], []
        for n in range(repeats):
            changed = list(state.policies)
            spec = changed[0].spec.model_copy(update={"order": 1000 + n})  # one policy moves to the end
            changed[0] = dataclasses.replace(changed[0], spec=spec)
            state = dataclasses.replace(state, policies=tuple(changed))
            changes.append(_timed(functools.partial(render_and_apply, state))[0])
            state = dataclasses.replace(state, endpoints=(*state.endpoints, endpoint(endpoints + n)))
            additions.append(_timed(functools.partial(render_and_apply, state))[0])
        dataplane.runner = NftCommand(["ip", "netns", "exec", netns, "nft"])  # the same, by the nft program
        by_program = []
        for n in range(repeats):
            state = dataclasses.replace(state, endpoints=(*state.endpoints, endpoint(endpoints + repeats + n)))
            by_program.append(_timed(functools.partial(render_and_apply, state))[0])
        library.close()
        return {"endpoints": endpoints, "policies": policies, "render_s": render_s, "full_apply_s": full_s,
                "policy_change_s": statistics.median(changes), "endpoint_add_s": statistics.median(additions),
                "endpoint_add_program_s": statistics.median(by_program),
                "counts": counts(ruleset), "iptables_rules": iptables_equivalent(synthetic_state(endpoints, policies))}
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def report(r: dict[str, Any]) -> str:
    c = r["counts"]
    return "\n".join([
        f"policy dataplane: {r['endpoints']} local endpoints x {r['policies']} policies (nftables, one table, "
        "applied through libnftables as calico-node does)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| render (pure) | {r['render_s'] * 1000:.0f} ms |",
        f"| full apply: one transaction | {r['full_apply_s'] * 1000:.0f} ms |",
        f"| one policy changed: render + incremental transaction (median) | {r['policy_change_s'] * 1000:.0f} ms |",
        f"| one endpoint added: render + incremental transaction (median) | {r['endpoint_add_s'] * 1000:.0f} ms |",
        f"| the same through the nft program instead of its library (median) | "
        f"{r['endpoint_add_program_s'] * 1000:.0f} ms |",
        f"| rules / chains | {c['rules']} / {c['chains']} |",
        f"| named sets / their elements | {c['sets']} / {c['set_elements']} |",
        f"| verdict-map elements (interface dispatch) | {c['map_elements']} |",
        f"| rules a per-endpoint-chain iptables layout would need | {r['iptables_rules']} |",
    ])
