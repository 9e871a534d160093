"""What the agent derives from its cache: the BIRD input and the routes to program. Pure.

A resource that fails validation is skipped with a warning rather than stopping the node:
one bad document written by hand must not take routing down on every host.
"""

from __future__ import annotations

import json
import logging
from typing import TypeVar

import netaddr
from pydantic import BaseModel, ValidationError

from ...model import keys, selector
from ...model.v3 import DEFAULT_AS, BGPConfiguration, BGPPeer, IPPool, Node
from ..cache import Cache
from .bird_config import PEER_GLOBAL, PEER_MESH, PEER_NODE, BirdInput, Peer, Pool

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)


def _resources(cache: Cache, plural: str, model: type[Model]) -> list[Model]:
    out = []
    for key, value in sorted(cache.under(keys.resource_prefix(plural)).items()):
        try:
            out.append(model.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            log.warning("ignoring %s: %s", key, str(exc).splitlines()[0])
    return out


def nodes(cache: Cache) -> dict[str, Node]:
    return {node.name: node for node in _resources(cache, "nodes", Node)}


def pools(cache: Cache) -> list[IPPool]:
    return _resources(cache, "ippools", IPPool)


def bgp_configuration(cache: Cache, name: str = "default") -> BGPConfiguration | None:
    for config in _resources(cache, "bgpconfigurations", BGPConfiguration):
        if config.metadata.name == name:
            return config
    return None


def default_as(cache: Cache) -> int:
    config = bgp_configuration(cache)
    return (config.spec.asNumber if config else None) or DEFAULT_AS


def mesh_enabled(cache: Cache) -> bool:
    config = bgp_configuration(cache)
    return config is None or config.spec.nodeToNodeMeshEnabled is not False


def node_as(node: Node, fallback: int) -> int:
    return (node.spec.bgp.asNumber if node.spec.bgp else None) or fallback


def affine_blocks(cache: Cache, node: str, version: int = 4) -> list[str]:
    """This node's confirmed blocks: a pending affinity owns nothing, so it gets no route."""
    out = []
    for key, value in cache.under(keys.affinity_prefix(node, version)).items():
        try:
            state = json.loads(value).get("state")
        except (ValueError, AttributeError):
            continue
        if state == "confirmed":
            out.append(str(keys.cidr_from_segment(key.rsplit("/", 1)[1])))
    return sorted(out, key=netaddr.IPNetwork)


def _ipv4(node: Node) -> str | None:
    return node.spec.bgp.ipv4 if node.spec.bgp else None


def bgp_peers(cache: Cache, me: Node) -> list[Peer]:
    """Mesh peers (every other node with an IPv4 address), then node-specific and global BGPPeers."""
    fallback = default_as(cache)
    all_nodes = nodes(cache)
    out: list[Peer] = []
    if mesh_enabled(cache):
        for node in all_nodes.values():
            ip = _ipv4(node)
            if node.name != me.name and ip:
                out.append(Peer(ip, node_as(node, fallback), PEER_MESH, node.name))
    for resource in _resources(cache, "bgppeers", BGPPeer):
        spec = resource.spec
        if spec.node and spec.node != me.name:
            continue
        if spec.nodeSelector and not selector.matches(spec.nodeSelector, me.metadata.labels or {}):
            continue
        kind = PEER_NODE if spec.node or spec.nodeSelector else PEER_GLOBAL
        if spec.peerSelector:  # peers are the nodes the selector picks
            for node in all_nodes.values():
                ip = _ipv4(node)
                if node.name != me.name and ip and selector.matches(spec.peerSelector, node.metadata.labels or {}):
                    out.append(Peer(ip, node_as(node, fallback), PEER_NODE, resource.metadata.name))
        elif spec.peerIP and spec.asNumber is not None:
            out.append(Peer(spec.peerIP.split(":")[0] if spec.peerIP.count(":") == 1 else spec.peerIP,
                            spec.asNumber, kind, resource.metadata.name))
        else:
            log.warning("ignoring BGPPeer %s: it has neither a peerSelector nor a peerIP with an AS number",
                        resource.metadata.name)
    return out


def bird_input(cache: Cache, node_name: str, log_file: str = "") -> BirdInput | None:
    """None while this node has no IPv4 BGP address registered (nothing to route yet)."""
    me = nodes(cache).get(node_name)
    router_id = _ipv4(me) if me else None
    if me is None or router_id is None:
        return None
    ipv4_pools = [p for p in pools(cache) if p.network.version == 4]
    return BirdInput(
        node_name=node_name,
        router_id=router_id,
        as_number=node_as(me, default_as(cache)),
        peers=tuple(bgp_peers(cache, me)),
        pools=tuple(Pool(str(p.network), ipip=p.spec.ipipMode != "Never",
                         disable_bgp_export=bool(p.spec.disableBGPExport)) for p in ipv4_pools),
        blocks=tuple(affine_blocks(cache, node_name)),
        log_file=log_file,
    )
