"""The resource kinds calicoctl knows: names users type, where each lives in etcd, its table columns.

Resources are handled as plain dicts in their stored (v3 JSON) form; `v3.validate` is the gate
in front of every write. IPAMConfiguration is the odd one: Calico keeps it at
/calico/ipam/v2/config in the IPAM's own JSON, so it has an adapter instead of a resource key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from ..model import keys, v3
from .gotext import go_text, join

Row = dict[str, Any]


@dataclass(frozen=True)
class TableContext:
    """What a cell may need beyond its row: the AS number nodes inherit (Calico's template
    function `config "asnumber"`: BGPConfiguration default's, else 64512)."""

    default_as: str = str(v3.DEFAULT_AS)


Cell = Callable[[Row, TableContext], str]


def _get(data: Row, path: str, default: Any = None) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def field(path: str, default: Any = None) -> Cell:
    return lambda row, _: go_text(_get(row, path, default))


def either(path: str, fallback: str) -> Cell:
    """`{{if .X}}{{.X}}{{else}}fallback{{end}}`: the value unless it is unset, empty or zero."""
    return lambda row, _: go_text(_get(row, path)) if _get(row, path) not in (None, "", 0, False, [], {}) \
        else fallback


def _node_asn(row: Row, context: TableContext) -> str:
    if _get(row, "spec.bgp") is None:
        return ""
    asn = _get(row, "spec.bgp.asNumber")
    return str(asn) if asn else f"({context.default_as})"  # inherited: shown in ()


def _node_address(version: int) -> Cell:
    return lambda row, _: str(_get(row, f"spec.bgp.ipv{version}Address") or "")


def _peer_node(row: Row, _: TableContext) -> str:
    return _get(row, "spec.node") or _get(row, "spec.nodeSelector") or "(global)"


def _workload(row: Row, _: TableContext) -> str:
    return _get(row, "spec.workload") or _get(row, "spec.pod") or ""


_NAME = field("metadata.name", "")
_NAMESPACE = field("metadata.namespace", "")


@dataclass(frozen=True, eq=False)  # one instance per kind: identity is equality
class Kind:
    name: str  # Calico's spelling: "IPPool"
    plural: str  # the etcd key segment: "ippools"
    aliases: tuple[str, ...]
    headings: tuple[str, ...]  # the table's columns (`-o ps`), as Calico's resource manager lists them
    wide_headings: tuple[str, ...]  # `-o wide`
    cells: dict[str, Cell]  # heading -> its cell (NAMESPACE for the kinds that may show it)
    namespaced: bool = False
    read_only: bool = False
    immutable: tuple[str, ...] = ()  # spec fields that cannot change once created
    only_name: str | None = None  # a singleton: the one name it may have

    def table_headings(self, wide: bool, with_namespace: bool) -> tuple[str, ...]:
        """Calico's: NAMESPACE goes first when asked for (-n or -A) and the kind can show it."""
        headings = self.wide_headings if wide else self.headings
        return ("NAMESPACE", *headings) if with_namespace and "NAMESPACE" in self.cells else headings

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
            return v3.IPAMConfigurationSpec.model_validate(stored.get("spec", {})).ipam_json()
        return json.dumps(stored, sort_keys=True)

    def decode(self, value: str) -> Row:
        """A stored value as `get` shows it (and as a write compares against)."""
        data: Row = json.loads(value)
        if self.name == "IPAMConfiguration":
            spec = v3.IPAMConfigurationSpec.from_ipam_json(value)
            return {"apiVersion": v3.API_VERSION, "kind": self.name, "metadata": {"name": "default"},
                    "spec": spec.model_dump(include=set(v3.IPAMConfigurationSpec.model_fields))}
        if self.name == "IPPool" and isinstance(data.get("spec"), dict):
            data["spec"] = v3.pool_read_defaults(data["spec"])  # as Calico reads a pool
        return data


_POOL_ALIASES = ("ippool", "ippools", "ipp", "ipps", "pool", "pools")

KINDS = (
    Kind("IPPool", "ippools", _POOL_ALIASES,
         ("NAME", "CIDR", "SELECTOR"),
         ("NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT", "SELECTOR",
          "ASSIGNMENTMODE"),
         {"NAME": _NAME, "CIDR": field("spec.cidr", ""), "NAT": field("spec.natOutgoing", False),
          "IPIPMODE": either("spec.ipipMode", "Never"), "VXLANMODE": either("spec.vxlanMode", "Never"),
          "DISABLED": field("spec.disabled", False), "DISABLEBGPEXPORT": field("spec.disableBGPExport", False),
          "SELECTOR": field("spec.nodeSelector", ""), "ASSIGNMENTMODE": field("spec.assignmentMode")},
         immutable=("cidr", "blockSize")),
    Kind("Node", "nodes", ("node", "nodes", "no", "nos"),
         ("NAME",), ("NAME", "ASN", "IPV4", "IPV6"),
         {"NAME": _NAME, "ASN": _node_asn, "IPV4": _node_address(4), "IPV6": _node_address(6)}),
    Kind("BGPConfiguration", "bgpconfigurations",
         ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"),
         ("NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"), ("NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"),
         {"NAME": _NAME, "LOGSEVERITY": field("spec.logSeverityScreen", ""),
          "MESHENABLED": lambda row, _: "-" if _get(row, "spec.nodeToNodeMeshEnabled") is None
          else go_text(_get(row, "spec.nodeToNodeMeshEnabled")),
          "ASNUMBER": either("spec.asNumber", "-")}),
    Kind("BGPPeer", "bgppeers", ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"),
         ("NAME", "PEERIP", "NODE", "ASN"), ("NAME", "PEERIP", "NODE", "ASN"),
         {"NAME": _NAME, "PEERIP": field("spec.peerIP", ""), "NODE": _peer_node, "ASN": field("spec.asNumber", 0)}),
    Kind("Profile", "profiles", ("profile", "profiles", "pro", "pros"),
         ("NAME",), ("NAME", "LABELS"),
         {"NAME": _NAME, "LABELS": lambda row, _: join(_get(row, "spec.labelsToApply"))}),
    Kind("NetworkPolicy", "networkpolicies",
         ("networkpolicy", "networkpolicies", "policy", "policies", "np", "nps", "pol", "pols"),
         ("NAME", "TIER"), ("NAME", "TIER", "ORDER", "SELECTOR"),
         {"NAME": _NAME, "NAMESPACE": _NAMESPACE, "TIER": field("spec.tier", "default"),
          "ORDER": field("spec.order"), "SELECTOR": field("spec.selector", "")}, namespaced=True),
    Kind("GlobalNetworkPolicy", "globalnetworkpolicies",
         ("globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps", "globalpolicy", "globalpolicies"),
         ("NAME",), ("NAME", "ORDER", "SELECTOR"),
         {"NAME": _NAME, "ORDER": field("spec.order"), "SELECTOR": field("spec.selector", "")}),
    Kind("WorkloadEndpoint", "workloadendpoints", ("workloadendpoint", "workloadendpoints", "wep", "weps"),
         ("WORKLOAD", "NODE", "NETWORKS", "INTERFACE"),
         ("NAME", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "PROFILES", "NATS"),
         {"NAME": _NAME, "NAMESPACE": _NAMESPACE, "WORKLOAD": _workload, "NODE": field("spec.node", ""),
          "NETWORKS": lambda row, _: join(_get(row, "spec.ipNetworks")),
          "INTERFACE": field("spec.interfaceName", ""),
          "PROFILES": lambda row, _: join(_get(row, "spec.profiles")),
          "NATS": lambda row, _: join(_get(row, "spec.ipNATs"))}, namespaced=True),
    Kind("IPAMConfiguration", "ipamconfigurations",
         ("ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"),
         ("NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"),
         ("NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS", "MAXBLOCKSPERHOST"),
         {"NAME": _NAME, "STRICTAFFINITY": field("spec.strictAffinity", False),
          "AUTOALLOCATEBLOCKS": field("spec.autoAllocateBlocks", False),
          "MAXBLOCKSPERHOST": field("spec.maxBlocksPerHost", 0)}, only_name="default"),
    Kind("ClusterInformation", "clusterinformations",
         ("clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"),
         ("NAME", "CLUSTERGUID", "CLUSTERTYPE", "CALICOVERSION", "DATASTOREREADY"),
         ("NAME", "CLUSTERGUID", "CLUSTERTYPE", "CALICOVERSION", "DATASTOREREADY"),
         {"NAME": _NAME, "CLUSTERGUID": field("spec.clusterGUID", ""), "CLUSTERTYPE": field("spec.clusterType", ""),
          "CALICOVERSION": field("spec.calicoVersion", ""), "DATASTOREREADY": field("spec.datastoreReady")},
         read_only=True, only_name="default"),
)

_BY_ALIAS: dict[str, Kind] = {}
for _kind in KINDS:
    for _alias in (*_kind.aliases, _kind.name.lower()):
        _BY_ALIAS[_alias] = _kind
_BY_NAME = {kind.name: kind for kind in KINDS}


def by_alias(text: str) -> Kind | None:
    """`pool`, `IPPool`, `ippools`... (case-insensitive, as calicoctl's resource names are)."""
    return _BY_ALIAS.get(text.lower())


def by_kind(name: str) -> Kind | None:
    return _BY_NAME.get(name)


def known_kind(name: str) -> Kind:
    """One of KINDS, named by this program itself (an unknown name is a bug: KeyError)."""
    return _BY_NAME[name]
