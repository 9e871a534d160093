"""etcd key layout, identical to Calico v3's so `etcdctl get --prefix /calico` reads the same."""

from __future__ import annotations

import netaddr

RESOURCES = "/calico/resources/v3/projectcalico.org/"
IPAM = "/calico/ipam/v2/"
IPAM_CONFIG = IPAM + "config"


def resource(plural: str, name: str, namespace: str | None = None) -> str:
    return f"{RESOURCES}{plural}/{namespace}/{name}" if namespace else f"{RESOURCES}{plural}/{name}"


def resource_prefix(plural: str, namespace: str | None = None) -> str:
    return f"{RESOURCES}{plural}/{namespace}/" if namespace else f"{RESOURCES}{plural}/"


def cidr_segment(cidr: netaddr.IPNetwork) -> str:
    """`10.0.0.0/26` -> `10.0.0.0-26`, as Calico writes CIDRs into keys."""
    return f"{cidr.network}-{cidr.prefixlen}"


def cidr_from_segment(segment: str) -> netaddr.IPNetwork:
    address, _, prefix = segment.rpartition("-")
    return netaddr.IPNetwork(f"{address}/{prefix}")


def block_prefix(version: int) -> str:
    return f"{IPAM}assignment/ipv{version}/block/"


def block(cidr: netaddr.IPNetwork) -> str:
    return block_prefix(cidr.version) + cidr_segment(cidr)


def affinity_prefix(node: str, version: int) -> str:
    return f"{IPAM}host/{node}/ipv{version}/block/"


def affinity(node: str, cidr: netaddr.IPNetwork) -> str:
    return affinity_prefix(node, cidr.version) + cidr_segment(cidr)


def handle(handle_id: str) -> str:
    return f"{IPAM}handle/{handle_id}"


HANDLE_PREFIX = IPAM + "handle/"


# One resource's key, by kind.


def pool_key(name: str) -> str:
    return resource("ippools", name)


def node_key(name: str) -> str:
    return resource("nodes", name)


def bgp_peer_key(name: str) -> str:
    return resource("bgppeers", name)


def bgp_configuration_key(name: str = "default") -> str:
    return resource("bgpconfigurations", name)


def cluster_information_key() -> str:
    return resource("clusterinformations", "default")


def workload_endpoint_key(namespace: str, name: str) -> str:
    return resource("workloadendpoints", name, namespace)


def profile_key(name: str) -> str:
    return resource("profiles", name)
