"""Rules that need the datastore's other resources, and what deleting a pool or node also cleans up."""

from __future__ import annotations

import logging
from typing import Any

import netaddr

from ..allocation.block import AllocationBlock
from ..allocation.client import IpamClient, ReleaseOptions
from ..datastore import Datastore
from ..model import keys
from .kinds import known_kind
from .store import Ref, field_error, list_all

log = logging.getLogger(__name__)
Row = dict[str, Any]


def check_pool_overlap(ds: Datastore, stored: Row) -> None:
    """Calico refuses a pool overlapping another pool (of the same name it is an update)."""
    mine = netaddr.IPNetwork(stored["spec"]["cidr"])
    rows, _ = list_all(ds, known_kind("IPPool"), None)
    for row in rows:
        if row["metadata"]["name"] == stored["metadata"]["name"]:
            continue
        try:
            other = netaddr.IPNetwork(row["spec"]["cidr"])
        except (KeyError, netaddr.AddrFormatError, ValueError):
            continue
        if other.version == mine.version and (mine in other or other in mine):
            raise field_error("IPPool.Spec.CIDR", stored["spec"]["cidr"],
                              f"IPPool({stored['metadata']['name']}) CIDR overlaps with "
                              f"IPPool({row['metadata']['name']}) CIDR {row['spec']['cidr']}")


def release_pool_blocks(ds: Datastore, pool: Row) -> tuple[int, int]:
    """After a pool is deleted: drop its empty blocks with their affinities (Calico releases the pool's
    affinities); blocks still holding addresses stay for `ipam check`/`release`. Returns
    (blocks released, addresses still allocated)."""
    cidr = netaddr.IPNetwork(pool["spec"]["cidr"])
    released = in_use = 0
    for kv in ds.list(keys.block_prefix(cidr.version)):
        block = AllocationBlock.from_json(kv.value)
        if block.network not in cidr:
            continue
        if not block.is_empty():
            in_use += block.in_use
        elif block.host is None:  # never claimed by a node: nothing to keep consistent with it
            released += ds.delete(kv.key, kv.mod_revision)
        else:
            released += IpamClient(ds, block.host).release_block_if_empty(block.network) is None
    return released, in_use


def clean_up_node(ds: Datastore, node: str) -> list[str]:
    """What Calico does when a node is deleted: its workload endpoints go, their addresses and the
    node's tunnel address are released, then its (now empty) blocks. Returns warnings."""
    from ..node.routing.ipip import handle_id as tunnel_handle

    warnings = []
    client = IpamClient(ds, node)
    weps, _ = list_all(ds, known_kind("WorkloadEndpoint"), None)
    for wep in weps:
        spec = wep.get("spec", {})
        if spec.get("node") != node:
            continue
        client.release_addresses([ReleaseOptions(netaddr.IPNetwork(n).ip) for n in spec.get("ipNetworks", [])])
        ref = Ref(known_kind("WorkloadEndpoint"), wep["metadata"]["name"], wep["metadata"].get("namespace"))
        kv = ds.get(ref.key)
        if kv is not None:
            ds.delete(ref.key, kv.mod_revision)
    client.release_handle(tunnel_handle(node))
    client.release_empty_blocks()
    for version in (4, 6):
        left = ds.list(keys.affinity_prefix(node, version))
        if left:
            warnings.append(f"node {node} still owns {len(left)} IPv{version} block(s) with addresses allocated "
                            "outside its workloads (see calicoctl ipam check)")
    return warnings
