"""A network's profile, from the document the plugin writes to the rules calico-node renders (pure).

The profile labels its endpoints `<network>` and admits ingress only from `has(<network>)`: the
agent merges labelsToApply into every endpoint's labels (local and remote), so the rule's set
holds the network's own addresses and no other network's, whatever dots and dashes the name has.
"""

from __future__ import annotations

import json

import pytest

from cni_calico.cni.profile import InvalidProfile, profile_to_write
from cni_calico.datastore import KeyValue
from cni_calico.model import keys
from cni_calico.model.v3 import allow_all_profile, network_profile, to_json
from cni_calico.node.cache import Cache
from cni_calico.node.policy.model import EGRESS, INGRESS, Selection, rule_selectors
from cni_calico.node.policy.render import profile_chain_name, render
from cni_calico.node.policy.view import policy_state

OLD_SHAPE = json.loads(to_json(allow_all_profile("net-a")))  # what versions before isolation stored


def cni_endpoint(node: str, container: str, ip: str, network: str) -> tuple[str, str]:
    """A plain CNI container's endpoint as the plugin writes it (labels of its own: none but Calico's)."""
    name = f"{node}-cni-{container}-eth0"
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
           "metadata": {"name": name, "namespace": "default",
                        "labels": {"projectcalico.org/namespace": "default", "projectcalico.org/orchestrator": "cni"}},
           "spec": {"orchestrator": "cni", "node": node, "containerID": container, "endpoint": "eth0",
                    "interfaceName": f"cali{container}", "ipNetworks": [f"{ip}/32"], "profiles": [network]}}
    return keys.resource("workloadendpoints", name, "default"), json.dumps(doc)


def cache_of(*items: tuple[str, str]) -> Cache:
    cache = Cache()
    cache.load([KeyValue(key, value, 1, 1) for key, value in items], 5)
    return cache


def stored_profile(network: str) -> tuple[str, str]:
    document = profile_to_write(None, network, lambda: network_profile(network))
    assert document is not None
    return keys.resource("profiles", network), document


@pytest.mark.parametrize("net_a, net_b", [("net-a", "net-b"), ("calico-k8s-network", "calico.k8s.network"),
                                          ("a", "a.b"), ("7", "a-b-c.d-e")])
def test_a_networks_ingress_rule_matches_its_own_endpoints_only(net_a: str, net_b: str) -> None:
    cache = cache_of(stored_profile(net_a), stored_profile(net_b),
                     cni_endpoint("h1", "a1", "10.65.0.1", net_a), cni_endpoint("h2", "a2", "10.65.1.1", net_a),
                     cni_endpoint("h1", "b1", "10.65.0.2", net_b), cni_endpoint("h2", "b2", "10.65.1.2", net_b))
    state = policy_state(cache, node="h1")
    assert set(state.profiles) == {net_a, net_b}  # both documents pass calico-node's validation
    labels = {e.key: e.labels for e in state.endpoints}
    assert labels["default/h2-cni-a2-eth0"][net_a] == "" and net_b not in labels["default/h2-cni-a2-eth0"]
    selection = Selection(state)
    for network, members in ((net_a, {"10.65.0.1/32", "10.65.1.1/32"}), (net_b, {"10.65.0.2/32", "10.65.1.2/32"})):
        (rule,) = state.profiles[network].ingress or []
        positive, negative = rule_selectors(rule.source, None)
        assert positive is not None and negative is None
        assert set(selection.addresses(positive)) == members  # remote ones too
        assert state.profiles[network].egress and state.profiles[network].egress[0].source is None


def test_the_rendered_profile_chains_admit_the_network_and_let_everything_out() -> None:
    cache = cache_of(stored_profile("net-a"), stored_profile("net-b"),
                     cni_endpoint("h1", "a1", "10.65.0.1", "net-a"), cni_endpoint("h1", "a2", "10.65.0.3", "net-a"),
                     cni_endpoint("h1", "b1", "10.65.0.2", "net-b"))
    rs = render(policy_state(cache, node="h1"))
    for network, members in (("net-a", ("10.65.0.1", "10.65.0.3")), ("net-b", ("10.65.0.2",))):
        v4, v6 = rs.chains[profile_chain_name(network, INGRESS)].rules  # nothing else is admitted
        for rule, family, elements in ((v4, "ip", members), (v6, "ip6", ())):
            assert rule.startswith(f"{family} saddr @sel-") and f"profile:{network} ingress[0] allow" in rule
            admitted = rs.sets[rule.split("@", 1)[1].split()[0]]
            assert (admitted.elements, admitted.comment) == (elements, f"selector: (has({network}))")
        (out,) = rs.chains[profile_chain_name(network, EGRESS)].rules
        assert out.startswith("meta mark set")  # no match: every destination


def test_the_old_shape_is_replaced_and_nothing_else_is() -> None:
    wanted = network_profile("net-a")
    upgraded = profile_to_write(json.dumps(OLD_SHAPE, indent=2), "net-a", lambda: wanted)  # spelling does not matter
    assert upgraded is not None and json.loads(upgraded)["spec"]["labelsToApply"] == {"net-a": ""}
    assert profile_to_write(to_json(wanted), "net-a", lambda: wanted) is None  # already Calico's
    assert profile_to_write("not json", "net-a", lambda: wanted) is None
    other_network = {**OLD_SHAPE, "metadata": {**OLD_SHAPE["metadata"], "name": "net-b"}}
    assert profile_to_write(json.dumps(other_network), "net-a", lambda: wanted) is None
    unchanged = profile_to_write(json.dumps(OLD_SHAPE), "net-a", lambda: allow_all_profile("net-a"))
    assert unchanged is None  # no change to make


@pytest.mark.parametrize("network", ["Net_A", "net_a", "a" * 64, "net a", "net/a", ".net"])
def test_a_network_name_calico_would_refuse_is_never_written(network: str) -> None:
    with pytest.raises(InvalidProfile):
        profile_to_write(None, network, lambda: network_profile(network))
