"""Pure pool logic: which pools a node may use, and where a node looks for a new block."""

from __future__ import annotations

import hashlib
import logging
from typing import Iterator, Mapping, Sequence

import netaddr

from ..errors import (
    ADDRESS_OUTSIDE_POOLS,
    INVALID_NETWORK_CONFIG,
    NO_POOLS,
    UNKNOWN_POOL,
    CniError,
)
from ..model import selector
from ..model.v3 import IPPool

log = logging.getLogger(__name__)


def _names(pool: IPPool) -> tuple[str, str]:
    return pool.name, str(pool.network.cidr)


def _find(pools: Sequence[IPPool], wanted: str) -> IPPool | None:
    try:
        wanted_cidr = str(netaddr.IPNetwork(wanted).cidr) if "/" in wanted else None
    except (netaddr.AddrFormatError, ValueError):
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid pool CIDR {wanted!r} in ipam pools") from None
    for pool in pools:
        if pool.name == wanted or (wanted_cidr and str(pool.network.cidr) == wanted_cidr):
            return pool
    return None


def usable_pools(pools: Sequence[IPPool], version: int, node: str, node_labels: Mapping[str, str],
                 requested: Sequence[str] = ()) -> list[IPPool]:
    """The pools of `version` this node may allocate from, in preference order.

    Requested pools (CIDR or name) must exist and be enabled; otherwise every enabled pool for
    workloads (allowedUses) with assignmentMode Automatic whose nodeSelector selects the node is
    used, sorted by CIDR for a stable order.
    """
    if requested:
        chosen = []
        for wanted in requested:
            pool = _find(pools, wanted)
            if pool is None or pool.network.version != version:
                raise CniError(UNKNOWN_POOL, f"the requested IPv{version} pool {wanted!r} does not exist",
                               f"create it (calicoctl create -f pool.yaml) or fix ipam.ipv{version}_pools")
            if pool.spec.disabled:
                raise CniError(UNKNOWN_POOL, f"the requested pool {wanted!r} is disabled")
            chosen.append(pool)
    else:
        # As Calico: a Manual pool serves only those who name it, and only Workload pools serve pods
        chosen = sorted((p for p in pools if p.network.version == version and not p.spec.disabled
                         and p.spec.for_workloads and p.spec.automatic),
                        key=lambda p: (p.network.first, p.network.prefixlen))
    selected = [p for p in chosen if selects_node(p, node_labels)]
    if not selected:
        which = ", ".join(requested) if requested else f"enabled IPv{version} pools"
        raise CniError(NO_POOLS, f"no IPv{version} pool is usable by node {node!r}",
                       f"checked: {which or 'none configured'}; create a pool or fix its nodeSelector")
    return selected


def selects_node(pool: IPPool, node_labels: Mapping[str, str]) -> bool:
    """Whether the pool's nodeSelector selects a node with these labels (an invalid one: no)."""
    try:
        return selector.matches(pool.spec.nodeSelector, node_labels)
    except selector.SelectorError as exc:  # a pool written past validation must not break every ADD
        log.warning("ignoring pool %s: invalid nodeSelector %r: %s", pool.name, pool.spec.nodeSelector, exc)
        return False


def node_seed(node: str) -> int:
    """A stable per-node number: nodes starting from different blocks rarely race for the same one."""
    return int.from_bytes(hashlib.sha256(node.encode()).digest()[:8], "big")


def candidate_blocks(pool: IPPool, node: str) -> Iterator[netaddr.IPNetwork]:
    """Every block of the pool, starting at a node-seeded pseudo-random block and wrapping around."""
    network = pool.network
    prefixlen = pool.spec.block_prefixlen
    count = 1 << (prefixlen - network.prefixlen)
    step = 1 << ((32 if network.version == 4 else 128) - prefixlen)
    start = node_seed(node) % count
    for i in range(count):
        first = network.first + ((start + i) % count) * step
        yield netaddr.IPNetwork(f"{netaddr.IPAddress(first, network.version)}/{prefixlen}")


def pool_containing(pools: Sequence[IPPool], address: netaddr.IPAddress) -> IPPool:
    for pool in pools:
        if address in pool.network:
            return pool
    raise CniError(ADDRESS_OUTSIDE_POOLS, f"{address} is not in any configured IP pool",
                   "request an address inside a pool, or create a pool that contains it")


def block_containing(pool: IPPool, address: netaddr.IPAddress) -> netaddr.IPNetwork:
    return netaddr.IPNetwork(f"{address}/{pool.spec.block_prefixlen}").cidr
