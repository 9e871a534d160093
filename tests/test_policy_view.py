"""What the agent hands the policy renderer, derived from its cache (pure)."""

from __future__ import annotations

import json

from cni_calico.datastore import KeyValue
from cni_calico.model import keys
from cni_calico.node.cache import Cache
from cni_calico.node.policy.view import affects_policy, policy_state


def doc(kind: str, name: str, spec: dict, namespace: str | None = None, **labels: str) -> dict:
    meta: dict = {"name": name, **({"namespace": namespace} if namespace else {}),
                  **({"labels": labels} if labels else {})}
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def wep(name: str, node: str, ip: str, namespace: str = "prod", profiles: tuple[str, ...] = ("kns.prod",),
        **labels: str) -> tuple[str, dict]:
    spec = {"orchestrator": "k8s", "node": node, "containerID": f"c-{name}", "pod": name, "endpoint": "eth0",
            "interfaceName": f"cali{name}", "ipNetworks": [f"{ip}/32"], "profiles": list(profiles)}
    return keys.resource("workloadendpoints", f"{node}-k8s-{name}-eth0", namespace), \
        doc("WorkloadEndpoint", f"{node}-k8s-{name}-eth0", spec, namespace,
            **{"projectcalico.org/namespace": namespace, **labels})


def cache_of(*items: tuple[str, object]) -> Cache:
    cache = Cache()
    cache.load([KeyValue(k, v if isinstance(v, str) else json.dumps(v), 1, 1) for k, v in items], 5)
    return cache


PROFILE = (keys.resource("profiles", "kns.prod"),
           doc("Profile", "kns.prod", {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                                       "labelsToApply": {"pcns.team": "shop", "tier": "from-profile",
                                                         "app": "profile-loses"}}))
POOLS = [(keys.resource("ippools", "nat"), doc("IPPool", "nat", {"cidr": "10.65.0.0/16", "natOutgoing": True})),
         (keys.resource("ippools", "plain"), doc("IPPool", "plain", {"cidr": "10.66.0.0/16"}))]


def test_endpoints_merge_profile_labels_under_their_own_and_know_where_they_live() -> None:
    state = policy_state(cache_of(PROFILE, wep("web", "h0", "10.65.0.1", app="web"),
                                  wep("db", "h1", "10.65.1.1", app="db")), node="h0")
    by_key = {e.key: e for e in state.endpoints}
    web = by_key["prod/h0-k8s-web-eth0"]
    assert web.local and not by_key["prod/h1-k8s-db-eth0"].local
    assert web.iface == "caliweb" and web.addresses == ("10.65.0.1/32",) and web.profiles == ("kns.prod",)
    assert web.labels["app"] == "web"  # the endpoint's own label wins over labelsToApply
    assert web.labels["tier"] == "from-profile" and web.labels["projectcalico.org/namespace"] == "prod"


def test_namespace_labels_come_from_the_kns_profile() -> None:
    state = policy_state(cache_of(PROFILE, (keys.resource("profiles", "net1"), doc("Profile", "net1", {}))), "h0")
    assert state.namespaces == {"prod": {"team": "shop", "projectcalico.org/name": "prod"}}
    assert set(state.profiles) == {"kns.prod", "net1"}


def test_policies_are_validated_with_defaults_and_bad_documents_are_skipped() -> None:
    np = doc("NetworkPolicy", "np1", {"ingress": [{"action": "Deny"}]}, "prod")
    gnp = doc("GlobalNetworkPolicy", "g1", {"order": 5, "egress": [{"action": "Allow"}]})
    bad = doc("GlobalNetworkPolicy", "bad", {"ingress": [{"action": "Maybe"}]})
    state = policy_state(cache_of((keys.resource("networkpolicies", "np1", "prod"), np),
                                  (keys.resource("globalnetworkpolicies", "g1"), gnp),
                                  (keys.resource("globalnetworkpolicies", "bad"), bad),
                                  (keys.resource("globalnetworkpolicies", "junk"), "{not json"),
                                  (keys.resource("workloadendpoints", "x", "prod"), {"spec": {}})), "h0")
    assert [(p.kind, p.namespace, p.name) for p in state.policies] == [
        ("NetworkPolicy", "prod", "np1"), ("GlobalNetworkPolicy", None, "g1")]
    np_spec = state.policies[0].spec
    assert np_spec.types == ["Ingress"] and np_spec.selector == "all()"  # Calico's defaults
    assert state.policies[1].spec.types == ["Egress"]
    assert state.endpoints == ()  # the malformed endpoint is skipped, not fatal


def test_pools_feed_nat_and_the_endpoint_to_host_action_passes_through() -> None:
    state = policy_state(cache_of(*POOLS), "h0", endpoint_to_host="Drop")
    assert state.nat_pools == ("10.65.0.0/16",)
    assert state.all_pools == ("10.65.0.0/16", "10.66.0.0/16")
    assert state.endpoint_to_host == "Drop"


def test_only_policy_inputs_wake_the_policy_dataplane() -> None:
    for plural in ("workloadendpoints", "profiles", "networkpolicies", "globalnetworkpolicies", "ippools"):
        assert affects_policy(keys.resource(plural, "x") + "/")
    for plural in ("nodes", "bgppeers", "bgpconfigurations"):
        assert not affects_policy(keys.resource(plural, "x"))
    assert not affects_policy("/calico/ipam/v2/host/h0/ipv4/block/10.65.0.0-26")
