"""Pure pool logic (cni_calico.allocation.pools) and reading a stored IPPool (cni_calico.model.v3)."""

from __future__ import annotations

import netaddr
import pytest
from pydantic import ValidationError

from cni_calico.allocation.pools import (
    block_containing,
    candidate_blocks,
    node_seed,
    pool_containing,
    usable_pools,
)
from cni_calico.errors import (
    ADDRESS_OUTSIDE_POOLS,
    INVALID_NETWORK_CONFIG,
    NO_POOLS,
    UNKNOWN_POOL,
    CniError,
)
from cni_calico.model.v3 import IPPool, IPPoolSpec, ObjectMeta

IP = netaddr.IPAddress
NET = netaddr.IPNetwork


def pool(name: str, cidr: str, **spec) -> IPPool:
    return IPPool(metadata=ObjectMeta(name=name), spec=IPPoolSpec(cidr=cidr, **spec))


DEFAULT = pool("default-ipv4-ippool", "192.168.0.0/16")
RACK1 = pool("rack1", "10.1.0.0/16", nodeSelector="rack == '1'")
RACK2 = pool("rack2", "10.2.0.0/16", nodeSelector="rack == '2'")
OFF = pool("off", "10.9.0.0/16", disabled=True)
EDGE = pool("edge", "10.3.0.0/24", blockSize=28, nodeSelector="has(edge)")
V6 = pool("default-ipv6-ippool", "fd00:10::/48")
V6_OFF = pool("v6-off", "fd00:20::/48", disabled=True)
ALL = [DEFAULT, RACK1, RACK2, OFF, EDGE, V6, V6_OFF]

RACK1_NODE = {"rack": "1"}
NO_LABELS: dict[str, str] = {}


def names(pools: list[IPPool]) -> list[str]:
    return [p.name for p in pools]


# ---------------------------------------------------------------- usable_pools

@pytest.mark.parametrize("pools, version, labels, requested, expected", [
    # nothing requested: every enabled pool of the version whose selector picks the node, by CIDR
    (ALL, 4, NO_LABELS, (), ["default-ipv4-ippool"]),
    (ALL, 4, RACK1_NODE, (), ["rack1", "default-ipv4-ippool"]),
    (ALL, 4, {"rack": "2", "edge": ""}, (), ["rack2", "edge", "default-ipv4-ippool"]),
    (ALL, 6, NO_LABELS, (), ["default-ipv6-ippool"]),
    (ALL, 6, RACK1_NODE, (), ["default-ipv6-ippool"]),
    ([RACK2, RACK1], 4, {"rack": "1"}, (), ["rack1"]),
    # requested by name, by CIDR, by a CIDR with host bits; in the requested order
    (ALL, 4, NO_LABELS, ("default-ipv4-ippool",), ["default-ipv4-ippool"]),
    (ALL, 4, NO_LABELS, ("192.168.0.0/16",), ["default-ipv4-ippool"]),
    (ALL, 4, NO_LABELS, ("192.168.7.7/16",), ["default-ipv4-ippool"]),
    (ALL, 4, RACK1_NODE, ("default-ipv4-ippool", "10.1.0.0/16"), ["default-ipv4-ippool", "rack1"]),
    (ALL, 4, RACK1_NODE, ("rack1", "192.168.0.0/16"), ["rack1", "default-ipv4-ippool"]),
    (ALL, 6, NO_LABELS, ("fd00:10::/48",), ["default-ipv6-ippool"]),
    # a requested pool still has to select the node: the others are dropped
    (ALL, 4, RACK1_NODE, ("rack1", "rack2"), ["rack1"]),
])
def test_usable_pools(pools, version, labels, requested, expected):
    assert names(usable_pools(pools, version, "node-a", labels, requested)) == expected


@pytest.mark.parametrize("pools, version, labels, requested, code, text", [
    (ALL, 4, NO_LABELS, ("nope",), UNKNOWN_POOL, "'nope' does not exist"),
    (ALL, 4, NO_LABELS, ("10.200.0.0/16",), UNKNOWN_POOL, "'10.200.0.0/16' does not exist"),
    (ALL, 4, NO_LABELS, ("192.168.0.0/24",), UNKNOWN_POOL, "does not exist"),  # a different prefix
    (ALL, 4, NO_LABELS, ("default-ipv4-ippool", "nope"), UNKNOWN_POOL, "'nope'"),
    (ALL, 4, NO_LABELS, ("default-ipv6-ippool",), UNKNOWN_POOL, "IPv4 pool"),     # wrong family
    (ALL, 6, NO_LABELS, ("192.168.0.0/16",), UNKNOWN_POOL, "IPv6 pool"),
    (ALL, 4, NO_LABELS, ("off",), UNKNOWN_POOL, "'off' is disabled"),
    (ALL, 4, NO_LABELS, ("10.9.0.0/16",), UNKNOWN_POOL, "is disabled"),
    (ALL, 6, NO_LABELS, ("v6-off",), UNKNOWN_POOL, "is disabled"),
    (ALL, 4, NO_LABELS, ("10.0.0.0/33",), INVALID_NETWORK_CONFIG, "invalid pool CIDR '10.0.0.0/33'"),
    (ALL, 4, NO_LABELS, ("not/a-cidr",), INVALID_NETWORK_CONFIG, "invalid pool CIDR"),
    (ALL, 4, NO_LABELS, ("default-ipv4-ippool", "300.1.0.0/16"), INVALID_NETWORK_CONFIG, "300.1.0.0/16"),
    ([], 4, NO_LABELS, (), NO_POOLS, "no IPv4 pool is usable by node 'node-a'"),
    ([OFF], 4, NO_LABELS, (), NO_POOLS, "no IPv4 pool"),
    ([DEFAULT, OFF], 6, NO_LABELS, (), NO_POOLS, "no IPv6 pool"),
    ([V6_OFF], 6, NO_LABELS, (), NO_POOLS, "no IPv6 pool"),
    ([RACK1, RACK2], 4, {"rack": "3"}, (), NO_POOLS, "no IPv4 pool"),
    (ALL, 4, NO_LABELS, ("rack1",), NO_POOLS, "no IPv4 pool"),  # requested but not for this node
])
def test_usable_pools_errors(pools, version, labels, requested, code, text):
    with pytest.raises(CniError) as info:
        usable_pools(pools, version, "node-a", labels, requested)
    assert info.value.code == code
    assert text in info.value.msg


def test_no_usable_pool_details_say_what_was_checked():
    with pytest.raises(CniError) as info:
        usable_pools([RACK1], 4, "node-a", NO_LABELS, ("rack1",))
    assert "rack1" in info.value.details
    with pytest.raises(CniError) as info:
        usable_pools([], 4, "node-a", NO_LABELS)
    assert "enabled IPv4 pools" in info.value.details


# ---------------------------------------------------------------- candidate_blocks

@pytest.mark.parametrize("p, count, prefixlen", [
    (pool("p", "10.0.0.0/24"), 4, 26),
    (pool("p", "10.0.0.0/20"), 64, 26),
    (pool("p", "10.0.0.0/24", blockSize=28), 16, 28),
    (pool("p", "10.0.0.0/24", blockSize=24), 1, 24),
    (pool("p", "10.0.0.0/28", blockSize=32), 16, 32),
    (pool("p", "fd00::/116"), 64, 122),
    (pool("p", "fd00:1:2::/112", blockSize=120), 256, 120),
    (pool("p", "fd00::/126", blockSize=128), 4, 128),
])
@pytest.mark.parametrize("node", ["node-a", "node-b", "worker-17"])
def test_candidate_blocks_cover_every_block_exactly_once(p, count, prefixlen, node):
    blocks = list(candidate_blocks(p, node))
    assert len(blocks) == count
    assert len(set(blocks)) == count
    assert all(b.prefixlen == prefixlen for b in blocks)
    assert all(b.version == p.network.version for b in blocks)
    assert all(b == b.cidr for b in blocks), "a block must be aligned on its size"
    assert all(b in p.network for b in blocks)
    assert sum(b.size for b in blocks) == p.network.size
    assert sorted(blocks) == list(p.network.subnet(prefixlen))


def test_candidate_blocks_wrap_around_from_a_node_seeded_start():
    p = pool("p", "10.0.0.0/20")
    every = list(p.network.subnet(26))
    for node in ("node-a", "node-b"):
        blocks = list(candidate_blocks(p, node))
        start = node_seed(node) % len(every)
        assert blocks[0] == every[start]
        assert blocks == every[start:] + every[:start]


def test_candidate_blocks_start_differs_between_nodes_and_is_stable():
    p = pool("p", "10.0.0.0/16")  # 1024 blocks
    firsts = {node: next(candidate_blocks(p, node)) for node in ("node-a", "node-b", "node-c", "node-d")}
    assert len(set(firsts.values())) == 4
    assert next(candidate_blocks(p, "node-a")) == firsts["node-a"]  # the same node always starts there


def test_candidate_blocks_in_a_large_ipv6_pool_are_122s():
    p = pool("p", "fd00:10::/48")
    gen = candidate_blocks(p, "node-a")
    first, second = next(gen), next(gen)
    assert first.prefixlen == second.prefixlen == 122
    assert first in p.network and second in p.network
    assert int(second.first) - int(first.first) in (64, -(p.network.size - 64))
    assert next(candidate_blocks(p, "node-b")) != first


def test_node_seed_is_stable_and_spreads():
    assert node_seed("node-a") == node_seed("node-a")
    assert len({node_seed(f"node-{i}") for i in range(50)}) == 50


# ---------------------------------------------------------------- pool_containing / block_containing

@pytest.mark.parametrize("address, expected", [
    ("192.168.0.1", "default-ipv4-ippool"),
    ("192.168.255.255", "default-ipv4-ippool"),
    ("10.1.200.3", "rack1"),
    ("10.9.0.1", "off"),  # containment does not care about disabled
    ("fd00:10::5", "default-ipv6-ippool"),
])
def test_pool_containing(address, expected):
    assert pool_containing(ALL, IP(address)).name == expected


@pytest.mark.parametrize("address", ["192.169.0.1", "10.4.0.1", "8.8.8.8", "fd00:30::1", "::1"])
def test_pool_containing_outside_every_pool_is_104(address):
    with pytest.raises(CniError) as info:
        pool_containing(ALL, IP(address))
    assert info.value.code == ADDRESS_OUTSIDE_POOLS
    assert address in info.value.msg


@pytest.mark.parametrize("p, address, block", [
    (DEFAULT, "192.168.0.1", "192.168.0.0/26"),
    (DEFAULT, "192.168.3.200", "192.168.3.192/26"),
    (EDGE, "10.3.0.37", "10.3.0.32/28"),
    (pool("p", "10.0.0.0/24", blockSize=32), "10.0.0.9", "10.0.0.9/32"),
    (V6, "fd00:10::1:7f", "fd00:10::1:40/122"),
    (pool("p", "fd00::/64", blockSize=120), "fd00::1234", "fd00::1200/120"),
])
def test_block_containing(p, address, block):
    found = block_containing(p, IP(address))
    assert found == NET(block)
    assert str(found) == block
    assert IP(address) in found
    assert found.prefixlen == p.spec.block_prefixlen
    assert found in p.network


# ---------------------------------------------------------------- IPPoolSpec validation

@pytest.mark.parametrize("spec, cidr, block_prefixlen", [
    ({"cidr": "192.168.0.0/16"}, "192.168.0.0/16", 26),
    ({"cidr": "192.168.3.4/16"}, "192.168.0.0/16", 26),  # host bits dropped
    ({"cidr": "10.0.0.0/8", "blockSize": 20}, "10.0.0.0/8", 20),
    ({"cidr": "10.0.0.0/24", "blockSize": 32}, "10.0.0.0/24", 32),
    ({"cidr": "10.0.0.0/26", "blockSize": 26}, "10.0.0.0/26", 26),
    ({"cidr": "fd00::/48"}, "fd00::/48", 122),
    ({"cidr": "fd00::/48", "blockSize": 116}, "fd00::/48", 116),
    ({"cidr": "fd00::/120", "blockSize": 128}, "fd00::/120", 128),
    ({"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "Never"}, "10.0.0.0/16", 26),
    ({"cidr": "10.0.0.0/16", "ipipMode": "CrossSubnet"}, "10.0.0.0/16", 26),
])
def test_valid_pool_specs(spec, cidr, block_prefixlen):
    parsed = IPPoolSpec(**spec)
    assert parsed.cidr == cidr
    assert parsed.block_prefixlen == block_prefixlen


@pytest.mark.parametrize("spec, message", [
    ({"cidr": "not-a-cidr"}, "invalid CIDR 'not-a-cidr'"),
    ({"cidr": "10.0.0.0/33"}, "invalid CIDR"),
    ({"cidr": "10.0.0"}, "invalid CIDR"),
    ({"cidr": ""}, "invalid CIDR"),
    ({"cidr": "fd00::/129"}, "invalid CIDR"),
    ({"cidr": "10.0.0.0/8", "blockSize": 19}, "blockSize 19 out of range 20-32 for IPv4"),
    ({"cidr": "10.0.0.0/8", "blockSize": 33}, "out of range 20-32"),
    ({"cidr": "10.0.0.0/8", "blockSize": 122}, "out of range 20-32"),
    ({"cidr": "fd00::/48", "blockSize": 115}, "blockSize 115 out of range 116-128 for IPv6"),
    ({"cidr": "fd00::/48", "blockSize": 129}, "out of range 116-128"),
    ({"cidr": "fd00::/48", "blockSize": 26}, "out of range 116-128"),
    ({"cidr": "10.0.0.0/28", "blockSize": 26}, "blockSize 26 is larger than the pool 10.0.0.0/28"),
    ({"cidr": "10.0.0.0/28"}, "blockSize 26 is larger than the pool"),  # the default does not fit either
    ({"cidr": "fd00::/124"}, "blockSize 122 is larger than the pool"),
    ({"cidr": "10.0.0.0/16", "ipipMode": "always"}, "ipipMode\n  Input should be 'Never', 'Always' or 'CrossSubnet'"),
    ({"cidr": "10.0.0.0/16", "ipipMode": "true"}, "ipipMode\n  Input should be"),
    ({"cidr": "10.0.0.0/16", "ipipMode": ""}, "ipipMode\n  Input should be"),
    ({"cidr": "10.0.0.0/16", "vxlanMode": "Sometimes"}, "vxlanMode\n  Input should be"),
])
def test_invalid_pool_specs(spec, message):
    with pytest.raises(ValidationError) as info:
        IPPoolSpec(**spec)
    assert message in str(info.value)


def test_ippool_keeps_the_calico_shape_and_unknown_fields():
    p = IPPool.model_validate({
        "kind": "IPPool", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "p1", "uid": "u"},
        "spec": {"cidr": "10.5.0.0/16", "natOutgoing": True, "allowedUses": ["Workload"]},
    })
    assert p.name == "p1"
    assert p.network == NET("10.5.0.0/16")
    assert p.spec.natOutgoing is True
    assert p.spec.nodeSelector == "all()"
    assert p.model_dump()["spec"]["allowedUses"] == ["Workload"]


MANUAL = pool("manual", "10.20.0.0/16", assignmentMode="Manual")
TUNNELS = pool("tunnels", "10.21.0.0/16", allowedUses=["Tunnel"])
LOAD_BALANCERS = pool("lbs", "10.22.0.0/16", allowedUses=["LoadBalancer"])


def test_automatic_assignment_uses_workload_pools_in_automatic_mode_only() -> None:
    """As Calico: a Manual pool serves only those who name it; Tunnel or LoadBalancer pools serve
    no pods."""
    assert names(usable_pools([DEFAULT, MANUAL, TUNNELS, LOAD_BALANCERS], 4, "n1", NO_LABELS)) == \
        ["default-ipv4-ippool"]
    assert names(usable_pools([DEFAULT, MANUAL], 4, "n1", NO_LABELS, ["manual"])) == ["manual"]
    with pytest.raises(CniError) as caught:
        usable_pools([MANUAL, TUNNELS], 4, "n1", NO_LABELS)
    assert caught.value.code == NO_POOLS


def test_pools_default_to_calicos_uses_and_mode() -> None:
    assert (DEFAULT.spec.allowedUses, DEFAULT.spec.assignmentMode) == (["Workload", "Tunnel"], "Automatic")
    assert DEFAULT.spec.for_workloads and DEFAULT.spec.automatic
    assert not TUNNELS.spec.for_workloads and not MANUAL.spec.automatic


def test_tunnel_addresses_come_from_ipip_pools_for_tunnels() -> None:
    from cni_calico.node.routing.ipip import ipip_pools

    ipip = pool("ipip", "10.30.0.0/16", ipipMode="Always")
    workloads_only = pool("ipip-pods", "10.31.0.0/16", ipipMode="Always", allowedUses=["Workload"])
    assert [p.name for p in ipip_pools([ipip, workloads_only, DEFAULT], {})] == ["ipip"]
