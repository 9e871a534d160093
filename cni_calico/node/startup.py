"""What calico-node does once when it starts: name itself, register the Node, prepare the cluster.

Every write is a compare-and-swap, so agents starting together on many hosts cannot clobber
each other (two of them creating the default pool: one wins, the other sees it exists).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import netaddr

from .. import __version__
from ..datastore import CONFLICT, Conflict, Datastore, retry_on_conflict
from ..model import keys
from ..model.keys import cluster_information_key, node_key, pool_key
from ..model.v3 import (
    DEFAULT_POOL_NAME,
    K8S_ORCHESTRATOR,
    ClusterInformation,
    ClusterInformationSpec,
    IPPool,
    IPPoolSpec,
    Node,
    NodeBGPSpec,
    NodeSpec,
    ObjectMeta,
    OrchRef,
    to_json,
)
from .config import AgentConfig

log = logging.getLogger(__name__)

_NODENAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class StartupError(Exception):
    """The agent cannot run on this host; the message says why in one line."""


def node_name(config: AgentConfig) -> str:
    """NODENAME, else the hostname (lower-cased, as Calico does)."""
    name = config.nodename or socket.gethostname().lower()
    if len(name) > 253 or not _NODENAME.match(name):
        raise StartupError(f"node name {name!r} is not a valid DNS subdomain (lowercase letters, digits, '-', '.')")
    return name


def write_nodename_file(path: str, name: str) -> None:
    """The CNI plugin reads this file to learn which node it runs on."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(name)
    tmp.replace(target)


def parse_ip(value: str) -> netaddr.IPNetwork:
    """`192.0.2.11` or `192.0.2.11/24` (Calico stores the address with the subnet's prefix)."""
    try:
        net = netaddr.IPNetwork(value if "/" in value else f"{value}/32")
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise StartupError(f"IP: {value!r} is not an IPv4 address") from exc
    if net.version != 4:
        raise StartupError(f"IP: {value!r} is not an IPv4 address")
    return net


def with_k8s_node_ref(node: Node, k8s_node: str | None) -> Node:
    """The Node standing for Kubernetes node `k8s_node` (CALICO_K8S_NODE_REF): its orchRefs become
    that one reference, as Calico's calico-node sets them; None leaves them as they are. Pure."""
    if not k8s_node:
        return node
    node.spec.orchRefs = [OrchRef(nodeName=k8s_node, orchestrator=K8S_ORCHESTRATOR)]
    return node


def register_node(ds: Datastore, name: str, address: netaddr.IPNetwork | None, as_number: int | None,
                  k8s_node_ref: str | None = None) -> Node:
    """Create or update our Node with the BGP address and AS (and the Kubernetes node it is, when
    given); refuses an address another node has. Every other field is kept as stored."""

    def attempt() -> Node | Conflict:
        if address is not None:
            _refuse_duplicate_address(ds, name, address)
        kv = ds.get(node_key(name))
        node = Node.model_validate_json(kv.value) if kv else Node(
            metadata=ObjectMeta(name=name, creationTimestamp=datetime.now(UTC).isoformat()), spec=NodeSpec())
        bgp = node.spec.bgp or NodeBGPSpec()
        if address is not None:
            bgp.ipv4Address = str(address)
        if as_number is not None:
            bgp.asNumber = as_number
        node.spec.bgp = bgp if (bgp.ipv4Address or bgp.asNumber) else None
        node = with_k8s_node_ref(node, k8s_node_ref)
        if kv and kv.value == to_json(node):
            return node
        if ds.txn({node_key(name): kv.mod_revision if kv else 0}, {node_key(name): to_json(node)}):
            log.info("registered node %s (BGP address %s, AS %s%s)", name, address, as_number or "default",
                     f", Kubernetes node {k8s_node_ref}" if k8s_node_ref else "")
            return node
        return CONFLICT

    return retry_on_conflict(attempt, f"registering node {name}")


def _refuse_duplicate_address(ds: Datastore, name: str, address: netaddr.IPNetwork) -> None:
    for kv in ds.list(keys.resource_prefix("nodes")):
        try:
            other = Node.model_validate_json(kv.value)
        except ValueError:
            continue
        if other.name != name and other.spec.bgp and other.spec.bgp.ipv4 == str(address.ip):
            raise StartupError(f"IP address {address.ip} is already in use by node {other.name}")


def ensure_cluster_information(ds: Datastore) -> ClusterInformation:
    """Create `default` with datastoreReady on first start; an existing one is left as it is."""
    key = cluster_information_key()
    info = ClusterInformation(metadata=ObjectMeta(name="default"),
                              spec=ClusterInformationSpec(clusterGUID=uuid.uuid4().hex, clusterType="bgp,cni",
                                                          calicoVersion=f"v{__version__}", datastoreReady=True))
    if ds.create(key, to_json(info)):
        return info
    kv = ds.get(key)
    return ClusterInformation.model_validate_json(kv.value) if kv else info


def datastore_ready(info: ClusterInformation) -> bool:
    return info.spec.datastoreReady is not False


def ensure_default_pool(ds: Datastore, config: AgentConfig) -> IPPool | None:
    """The default IPv4 pool when no IPv4 pool exists at all (unless NO_DEFAULT_POOLS)."""
    if config.no_default_pools:
        return None
    for kv in ds.list(keys.resource_prefix("ippools")):
        try:
            if IPPool.model_validate_json(kv.value).network.version == 4:
                return None
        except ValueError:
            continue
    try:
        pool = IPPool(metadata=ObjectMeta(name=DEFAULT_POOL_NAME, creationTimestamp=datetime.now(UTC).isoformat()),
                      spec=IPPoolSpec.model_validate({
                          "cidr": config.ipv4pool_cidr, "blockSize": config.ipv4pool_block_size,
                          "ipipMode": config.ipv4pool_ipip, "natOutgoing": config.ipv4pool_nat_outgoing}))
    except ValueError as exc:
        raise StartupError(f"CALICO_IPV4POOL_CIDR/BLOCK_SIZE: {str(exc).splitlines()[-1].strip()}") from None
    if pool.network.version != 4:
        raise StartupError(f"CALICO_IPV4POOL_CIDR: {config.ipv4pool_cidr} is not an IPv4 CIDR")
    if ds.create(pool_key(pool.name), to_json(pool)):
        log.info("created the default pool %s %s", pool.name, pool.network)
        return pool
    return None  # another node created it first


def enable_forwarding() -> None:
    """A host is a router. Written in the agent's own network namespace."""
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    except OSError as exc:
        raise StartupError(f"cannot enable IP forwarding: {exc}") from exc
