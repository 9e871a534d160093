"""The resource kinds calicoctl knows: names users type, where each lives in etcd, its table columns.

Resources are handled as plain dicts in their stored (v3 JSON) form; `v3.validate` is the gate
in front of every write. IPAMConfiguration is the odd one: Calico keeps it at
/calico/ipam/v2/config in the IPAM's own JSON, so it has an adapter instead of a resource key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from .. import keys
from ..resources import DEFAULT_AS

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def _get(data: Row, path: str, default: Any = "") -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def col(header: str, path: str, default: Any = "") -> Column:
    return header, lambda row: _text(_get(row, path, default))


def _node_asn(row: Row) -> str:
    asn = _get(row, "spec.bgp.asNumber", None)
    return str(asn) if asn else f"({DEFAULT_AS})" if _get(row, "spec.bgp", None) else ""  # inherited: shown in ()


def _node_ipv4(row: Row) -> str:
    return _text(_get(row, "spec.bgp.ipv4Address"))


@dataclass(frozen=True)
class Kind:
    name: str  # Calico's spelling: "IPPool"
    plural: str  # the etcd key segment: "ippools"
    aliases: tuple[str, ...]
    columns: tuple[Column, ...]
    wide: tuple[Column, ...]
    namespaced: bool = False
    read_only: bool = False
    immutable: tuple[str, ...] = ()  # spec fields that cannot change once created
    only_name: str | None = None  # a singleton: the one name it may have

    def key(self, name: str, namespace: str | None = None) -> str:
        if self.name == "IPAMConfiguration":
            return keys.IPAM_CONFIG
        return keys.resource(self.plural, name, namespace if self.namespaced else None)

    def prefix(self, namespace: str | None = None) -> str:
        if self.name == "IPAMConfiguration":
            return keys.IPAM_CONFIG
        return keys.resource_prefix(self.plural, namespace if self.namespaced else None)

    def encode(self, stored: Row) -> str:
        """The value written to etcd for a stored-form resource."""
        if self.name == "IPAMConfiguration":
            spec = stored.get("spec", {})
            return json.dumps({"strict_affinity": spec.get("strictAffinity", False),
                               "auto_allocate_blocks": spec.get("autoAllocateBlocks", True),
                               "maxBlocksPerHost": spec.get("maxBlocksPerHost", 0)})
        return json.dumps(stored, sort_keys=True)

    def decode(self, value: str) -> Row:
        data = json.loads(value)
        if self.name == "IPAMConfiguration":
            return {"apiVersion": "projectcalico.org/v3", "kind": self.name, "metadata": {"name": "default"},
                    "spec": {"strictAffinity": bool(data.get("strict_affinity", False)),
                             "maxBlocksPerHost": int(data.get("maxBlocksPerHost", 0) or 0),
                             "autoAllocateBlocks": bool(data.get("auto_allocate_blocks", True))}}
        return data


_NAME = col("NAME", "metadata.name")
_NAMESPACE = col("NAMESPACE", "metadata.namespace")

KINDS = (
    Kind("IPPool", "ippools", ("ippool", "ippools", "ipp", "ipps", "pool", "pools"),
         (_NAME, col("CIDR", "spec.cidr"), col("SELECTOR", "spec.nodeSelector", "all()")),
         (_NAME, col("CIDR", "spec.cidr"), col("NAT", "spec.natOutgoing", False),
          col("IPIPMODE", "spec.ipipMode", "Never"), col("VXLANMODE", "spec.vxlanMode", "Never"),
          col("DISABLED", "spec.disabled", False), col("SELECTOR", "spec.nodeSelector", "all()")),
         immutable=("cidr", "blockSize")),
    Kind("Node", "nodes", ("node", "nodes", "no", "nos"),
         (_NAME,),
         (_NAME, ("ASN", _node_asn), ("IPV4", _node_ipv4), col("IPV6", "spec.bgp.ipv6Address"))),
    Kind("BGPConfiguration", "bgpconfigurations",
         ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"),
         (_NAME, col("LOGSEVERITY", "spec.logSeverityScreen"), col("MESHENABLED", "spec.nodeToNodeMeshEnabled"),
          col("ASNUMBER", "spec.asNumber")),
         (_NAME, col("LOGSEVERITY", "spec.logSeverityScreen"), col("MESHENABLED", "spec.nodeToNodeMeshEnabled"),
          col("ASNUMBER", "spec.asNumber"))),
    Kind("BGPPeer", "bgppeers", ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"),
         (_NAME, col("PEERIP", "spec.peerIP"), col("NODE", "spec.node", "(global)"), col("ASN", "spec.asNumber")),
         (_NAME, col("PEERIP", "spec.peerIP"), col("NODE", "spec.node", "(global)"), col("ASN", "spec.asNumber"),
          col("NODESELECTOR", "spec.nodeSelector"), col("PEERSELECTOR", "spec.peerSelector"))),
    Kind("Profile", "profiles", ("profile", "profiles", "pro", "pros"),
         (_NAME,), (_NAME, col("LABELS", "spec.labelsToApply"))),
    Kind("NetworkPolicy", "networkpolicies",
         ("networkpolicy", "networkpolicies", "policy", "policies", "np", "nps", "pol", "pols"),
         (_NAME,), (_NAME, col("ORDER", "spec.order"), col("SELECTOR", "spec.selector", "all()")), namespaced=True),
    Kind("GlobalNetworkPolicy", "globalnetworkpolicies",
         ("globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps", "globalpolicy", "globalpolicies"),
         (_NAME,), (_NAME, col("ORDER", "spec.order"), col("SELECTOR", "spec.selector", "all()"))),
    Kind("WorkloadEndpoint", "workloadendpoints", ("workloadendpoint", "workloadendpoints", "wep", "weps"),
         (col("WORKLOAD", "spec.workload"), col("NODE", "spec.node"), col("NETWORKS", "spec.ipNetworks"),
          col("INTERFACE", "spec.interfaceName")),
         (_NAME, col("WORKLOAD", "spec.workload"), col("NODE", "spec.node"), col("NETWORKS", "spec.ipNetworks"),
          col("INTERFACE", "spec.interfaceName"), col("PROFILES", "spec.profiles")), namespaced=True),
    Kind("IPAMConfiguration", "ipamconfigurations",
         ("ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"),
         (_NAME, col("STRICTAFFINITY", "spec.strictAffinity"), col("MAXBLOCKSPERHOST", "spec.maxBlocksPerHost")),
         (_NAME, col("STRICTAFFINITY", "spec.strictAffinity"), col("MAXBLOCKSPERHOST", "spec.maxBlocksPerHost"),
          col("AUTOALLOCATEBLOCKS", "spec.autoAllocateBlocks")), only_name="default"),
    Kind("ClusterInformation", "clusterinformations",
         ("clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"),
         (_NAME, col("CALICOVERSION", "spec.calicoVersion"), col("DATASTOREREADY", "spec.datastoreReady")),
         (_NAME, col("CLUSTERGUID", "spec.clusterGUID"), col("CLUSTERTYPE", "spec.clusterType"),
          col("CALICOVERSION", "spec.calicoVersion"), col("DATASTOREREADY", "spec.datastoreReady")),
         read_only=True, only_name="default"),
)

_BY_ALIAS: dict[str, Kind] = {}
for _kind in KINDS:
    for _alias in _kind.aliases + (_kind.name.lower(),):
        _BY_ALIAS[_alias] = _kind
_BY_NAME = {kind.name: kind for kind in KINDS}


def by_alias(text: str) -> Kind | None:
    """`pool`, `IPPool`, `ippools`... (case-insensitive, as calicoctl's resource names are)."""
    return _BY_ALIAS.get(text.lower())


def by_kind(name: str) -> Kind | None:
    return _BY_NAME.get(name)


def names() -> str:
    return ", ".join(k.aliases[0] for k in KINDS)
