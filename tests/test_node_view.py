"""The agent's pure parts: cache, what it derives for BIRD, address autodetection, config, metrics."""

from __future__ import annotations

import json

import netaddr
import pytest

from cni_calico.datastore import KeyValue, WatchEvent
from cni_calico.model import keys
from cni_calico.model.keys import bgp_configuration_key, bgp_peer_key, node_key, pool_key
from cni_calico.model.v3 import (
    BGPConfiguration,
    BGPConfigurationSpec,
    BGPPeer,
    BGPPeerSpec,
    IPPool,
    IPPoolSpec,
    Node,
    NodeBGPSpec,
    NodeSpec,
    ObjectMeta,
    to_json,
)
from cni_calico.node.cache import Cache
from cni_calico.node.config import ConfigError, load
from cni_calico.node.metrics import Registry
from cni_calico.node.routing import view
from cni_calico.node.routing.autodetect import AutodetectError, choose
from cni_calico.node.routing.bird_config import (
    PEER_GLOBAL,
    PEER_MESH,
    PEER_NODE,
    Peer,
    Pool,
)


def node(name: str, ip: str | None, asn: int | None = None, **labels: str) -> tuple[str, str]:
    bgp = NodeBGPSpec(ipv4Address=f"{ip}/24", asNumber=asn) if ip else None
    return node_key(name), to_json(Node(metadata=ObjectMeta(name=name, labels=labels), spec=NodeSpec(bgp=bgp)))


def pool(name: str, cidr: str, **spec: object) -> tuple[str, str]:
    return pool_key(name), to_json(IPPool(metadata=ObjectMeta(name=name), spec=IPPoolSpec(cidr=cidr, **spec)))


def affinity(node_name: str, cidr: str, state: str = "confirmed") -> tuple[str, str]:
    return keys.affinity(node_name, netaddr.IPNetwork(cidr)), json.dumps({"state": state, "deleted": False})


def peer(name: str, ip: str, asn: int, **spec: str) -> tuple[str, str]:
    return bgp_peer_key(name), to_json(BGPPeer(metadata=ObjectMeta(name=name),
                                               spec=BGPPeerSpec(peerIP=ip, asNumber=asn, **spec)))


def cache_of(*items: tuple[str, str]) -> Cache:
    cache = Cache()
    cache.load([KeyValue(k, v, 1, 1) for k, v in items], 7)
    return cache


def test_cache_ignores_blocks_and_handles_and_reports_changes() -> None:
    cache = cache_of(node("a", "192.0.2.11"))
    block_key = keys.block(netaddr.IPNetwork("10.65.0.0/26"))
    assert not cache.apply([WatchEvent(block_key, "{}", 8), WatchEvent(keys.handle("h"), "{}", 8)])
    assert cache.revision == 8 and block_key not in cache.values
    key, value = node("b", "192.0.2.12")
    assert cache.apply([WatchEvent(key, value, 9)]) == {key}
    assert not cache.apply([WatchEvent(key, value, 10)])  # the same value again is no change
    assert cache.apply([WatchEvent(key, None, 11)]) == {key}
    assert not cache.apply([WatchEvent(key, None, 12)])  # deleting what is absent is no change
    assert key not in cache.values


def test_only_routing_keys_trigger_a_resync() -> None:
    from cni_calico.model.keys import workload_endpoint_key
    from cni_calico.node.cache import affects_routing
    assert affects_routing(node_key("a")) and affects_routing(pool_key("p"))
    assert affects_routing(keys.affinity("a", netaddr.IPNetwork("10.0.0.0/26")))
    assert not affects_routing(workload_endpoint_key("default", "a-cni-c1-eth0"))
    assert not affects_routing(keys.resource("profiles", "net1"))


def test_bird_input_for_a_three_node_mesh() -> None:
    cache = cache_of(node("a", "192.0.2.11"), node("b", "192.0.2.12"), node("c", "192.0.2.13", asn=65001),
                     pool("p", "10.65.0.0/16"), affinity("a", "10.65.1.0/26"), affinity("a", "10.65.0.64/26"),
                     affinity("a", "10.65.2.0/26", state="pending"), affinity("b", "10.65.3.0/26"))
    inp = view.bird_input(cache, "a", "/tmp/bird.log")
    assert inp is not None
    assert inp.router_id == "192.0.2.11" and inp.as_number == 64512
    assert inp.peers == (Peer("192.0.2.12", 64512, PEER_MESH, "b"), Peer("192.0.2.13", 65001, PEER_MESH, "c"))
    assert inp.blocks == ("10.65.0.64/26", "10.65.1.0/26")  # sorted; the pending claim owns nothing
    assert inp.pools == (Pool("10.65.0.0/16"),)


def test_bird_input_needs_a_registered_address() -> None:
    assert view.bird_input(cache_of(node("a", None)), "a") is None
    assert view.bird_input(cache_of(node("b", "192.0.2.12")), "a") is None


def test_cluster_as_mesh_switch_and_explicit_peers() -> None:
    config = (bgp_configuration_key(), to_json(BGPConfiguration(
        metadata=ObjectMeta(name="default"), spec=BGPConfigurationSpec(asNumber=65000, nodeToNodeMeshEnabled=False))))
    cache = cache_of(config, node("a", "192.0.2.11", rack="r1"), node("b", "192.0.2.12", rack="r2"),
                     peer("tor", "192.0.2.254", 65100), peer("mine", "192.0.2.201", 65101, node="a"),
                     peer("theirs", "192.0.2.202", 65102, node="b"),
                     peer("by-label", "192.0.2.203", 65103, nodeSelector="rack == 'r1'"),
                     peer("to-nodes", "0.0.0.0", 65000, peerSelector="rack == 'r2'"))
    inp = view.bird_input(cache, "a")
    assert inp is not None and inp.as_number == 65000
    assert sorted(inp.peers, key=lambda p: p.ip) == [
        Peer("192.0.2.12", 65000, PEER_NODE, "to-nodes"),
        Peer("192.0.2.201", 65101, PEER_NODE, "mine"),
        Peer("192.0.2.203", 65103, PEER_NODE, "by-label"),
        Peer("192.0.2.254", 65100, PEER_GLOBAL, "tor"),
    ]


def test_ipip_and_export_flags_reach_the_pools() -> None:
    cache = cache_of(node("a", "192.0.2.11"), pool("tun", "10.70.0.0/16", ipipMode="Always"),
                     pool("quiet", "10.71.0.0/16", disableBGPExport=True), pool("v6", "fd00::/48"))
    inp = view.bird_input(cache, "a")
    assert inp is not None
    assert inp.pools == (Pool("10.71.0.0/16", disable_bgp_export=True), Pool("10.70.0.0/16", ipip=True))


def test_a_broken_resource_is_skipped_not_fatal() -> None:
    cache = cache_of(node("a", "192.0.2.11"), (node_key("bad"), '{"metadata": {}}'), node("b", "192.0.2.12"))
    inp = view.bird_input(cache, "a")
    assert inp is not None and [p.name for p in inp.peers] == ["b"]


IFACES = [("lo", netaddr.IPNetwork("127.0.0.1/8")), ("cali123", netaddr.IPNetwork("169.254.9.9/32")),
          ("docker0", netaddr.IPNetwork("172.17.0.1/16")), ("eth0", netaddr.IPNetwork("192.0.2.11/24")),
          ("eth1", netaddr.IPNetwork("198.51.100.7/24"))]


@pytest.mark.parametrize("method, expected", [
    ("first-found", "192.0.2.11/24"),
    ("interface=eth1", "198.51.100.7/24"),
    ("interface=nope,eth.*", "192.0.2.11/24"),
    ("skip-interface=eth0", "198.51.100.7/24"),
    ("cidr=198.51.100.0/24", "198.51.100.7/24"),
])
def test_autodetection_methods(method: str, expected: str) -> None:
    assert str(choose(method, IFACES)) == expected


@pytest.mark.parametrize("method", ["interface=wlan.*", "cidr=203.0.113.0/24", "can-reach=8.8.8.8", "cidr=bad"])
def test_autodetection_failures_are_clear(method: str) -> None:
    with pytest.raises(AutodetectError, match="IP_AUTODETECTION_METHOD"):
        choose(method, IFACES)


def test_config_from_calico_environment_names() -> None:
    config = load({"NODENAME": "n1", "AS": "65010", "CALICO_IPV4POOL_IPIP": "always", "CALICO_IPV4POOL_CIDR":
                   "10.9.0.0/16", "CALICO_IPV4POOL_NAT_OUTGOING": "false", "CALICO_NETWORKING_BACKEND": "none",
                   "UNRELATED": "x"}, {"nodename": "n2"})
    assert (config.nodename, config.as_number, config.ipv4pool_ipip, config.ipv4pool_cidr) == \
        ("n2", 65010, "Always", "10.9.0.0/16")
    assert config.ipv4pool_nat_outgoing is False and config.backend == "none"
    assert (config.policy_dataplane, config.endpoint_to_host_action) == ("nftables", "Accept")  # defaults


def test_policy_settings_take_felix_spellings() -> None:
    config = load({"FELIX_DEFAULTENDPOINTTOHOSTACTION": "DROP", "CALICO_POLICY_DATAPLANE": "None"})
    assert (config.endpoint_to_host_action, config.policy_dataplane) == ("Drop", "none")
    assert load({"FELIX_DEFAULTENDPOINTTOHOSTACTION": "return"}).endpoint_to_host_action == "Return"


@pytest.mark.parametrize("env, named", [({"AS": "seven"}, "AS"), ({"CALICO_IPV4POOL_IPIP": "sometimes"},
                                        "CALICO_IPV4POOL_IPIP"), ({"CALICO_NETWORKING_BACKEND": "gobgp"},
                                                                  "CALICO_NETWORKING_BACKEND"),
                                        ({"FELIX_DEFAULTENDPOINTTOHOSTACTION": "Maybe"},
                                         "FELIX_DEFAULTENDPOINTTOHOSTACTION"),
                                        ({"CALICO_POLICY_DATAPLANE": "iptables"}, "CALICO_POLICY_DATAPLANE")])
def test_config_errors_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"^{named}:"):
        load(env)


def test_metrics_render_prometheus_text() -> None:
    registry = Registry(process=False)
    registry.declare("x_total", "counter", "things")
    registry.declare("peers", "gauge", "sessions", ("state",))
    registry.inc("x_total")
    registry.inc("x_total", 2)
    registry.replace("peers", {(("state", "Established"),): 2, (("state", 'we"ird'),): 1})
    registry.replace("peers", {(("state", "Established"),): 3, (("state", 'we"ird'),): 1})
    assert registry.value("x_total") == 3 and registry.value("peers", state="Established") == 3
    assert registry.render() == ('# HELP x_total things\n# TYPE x_total counter\nx_total 3.0\n'
                                 '# HELP peers sessions\n# TYPE peers gauge\npeers{state="Established"} 3.0\n'
                                 'peers{state="we\\"ird"} 1.0\n')
    registry.replace("peers", {})  # sessions gone: their series go too
    assert "peers{" not in registry.render()


def test_metrics_include_the_process_collector() -> None:
    text = Registry().render()
    assert "process_open_fds " in text and "process_resident_memory_bytes " in text
