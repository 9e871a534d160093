"""IPIP: the node's tunnel address (allocated from an IPIP pool) and the tunl0 device.

Calico gives each node one address from an IPIP pool, under the handle
`ipip-tunnel-addr-<node>`, records it on the Node (`spec.bgp.ipv4IPIPTunnelAddr`) and puts it
on tunl0, so traffic the host itself sends through the tunnel has a routable source.
"""

from __future__ import annotations

import logging
from typing import Mapping

import netaddr

from ...allocation.client import IpamClient, Request
from ...allocation.pools import selects_node
from ...datastore import Datastore, read_modify_write
from ...model.keys import node_key
from ...model.v3 import IPPool, Node, to_json

log = logging.getLogger(__name__)

TUNNEL_DEVICE = "tunl0"


def handle_id(node: str) -> str:
    return f"ipip-tunnel-addr-{node}"


def ipip_pools(pools: list[IPPool], node_labels: Mapping[str, str]) -> list[IPPool]:
    """The enabled IPv4 IPIP pools that may give tunnel addresses (allowedUses holds Tunnel, as by
    default) and whose nodeSelector selects this node: Calico gives a node a tunnel address only
    from those."""
    return [p for p in pools if p.network.version == 4 and p.spec.ipipMode != "Never" and not p.spec.disabled
            and "Tunnel" in (p.spec.allowedUses or ["Tunnel"]) and selects_node(p, node_labels)]


def ensure_tunnel_address(ds: Datastore, node: str, pools: list[IPPool],
                          node_labels: Mapping[str, str]) -> netaddr.IPAddress | None:
    """The node's tunnel address while an IPIP pool selects this node; released (and cleared)
    when none does."""
    client = IpamClient(ds, node)
    wanted = ipip_pools(pools, node_labels)
    held = client.addresses_of(handle_id(node))
    if held and not any(held[0].ip in p.network for p in wanted):
        client.release_handle(handle_id(node))  # its pool stopped being an IPIP pool
        held = []
    if not wanted:
        _record(ds, node, None)
        return None
    if not held:
        held = client.auto_assign(Request(handle_id(node), {"node": node, "type": "ipipTunnelAddress"},
                                          pools_v4=[p.name for p in wanted]))
    address = held[0].ip
    _record(ds, node, str(address))
    return address


def _record(ds: Datastore, node: str, address: str | None) -> None:
    """The tunnel address on the Node resource (spec.bgp.ipv4IPIPTunnelAddr), at the revision read."""

    changed = False

    def change(current: str | None) -> str | None:
        nonlocal changed
        changed = False
        if current is None:
            return None  # no Node: nothing to record on
        found = Node.model_validate_json(current)
        if found.spec.bgp is None or found.spec.bgp.ipv4IPIPTunnelAddr == address:
            return current
        found.spec.bgp.ipv4IPIPTunnelAddr = address
        changed = True
        return to_json(found)

    read_modify_write(ds, node_key(node), change, f"recording node {node}'s tunnel address")
    if changed:
        log.info("node %s: IPIP tunnel address %s", node, address or "removed")
