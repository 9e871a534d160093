"""Calico v3 resources as stored in etcd: `{"kind","apiVersion","metadata","spec"}`.

Only what the running code reads is modelled strictly; unknown spec fields written by
other tools are kept (extra="allow") so a read-modify-write never loses data.
"""

from __future__ import annotations

import json
from typing import Any

import netaddr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION = "projectcalico.org/v3"
DEFAULT_POOL_NAME = "default-ipv4-ippool"
DEFAULT_POOL_CIDR = "192.168.0.0/16"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Metadata(_Open):
    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resourceVersion: str | None = None
    creationTimestamp: str | None = None
    uid: str | None = None


class IPPoolSpec(_Open):
    cidr: str
    blockSize: int | None = None
    ipipMode: str = "Never"
    vxlanMode: str = "Never"
    natOutgoing: bool = False
    disabled: bool = False
    nodeSelector: str = "all()"
    disableBGPExport: bool = False
    # Calico's defaults, stored as Calico stores them (clientv3 fills both on every write)
    allowedUses: list[str] = Field(default_factory=lambda: ["Workload", "Tunnel"])
    assignmentMode: str = "Automatic"

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str) -> str:
        try:
            net = netaddr.IPNetwork(value)
        except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid CIDR {value!r}") from exc
        return str(net.cidr)

    @model_validator(mode="after")
    def _block_fits(self) -> IPPoolSpec:
        net = self.network
        low, high = (20, 32) if net.version == 4 else (116, 128)
        if self.blockSize is not None and not low <= self.blockSize <= high:
            raise ValueError(f"blockSize {self.blockSize} out of range {low}-{high} for IPv{net.version}")
        if self.block_prefixlen < net.prefixlen:
            raise ValueError(f"blockSize {self.block_prefixlen} is larger than the pool {self.cidr}")
        for field, value in (("ipipMode", self.ipipMode), ("vxlanMode", self.vxlanMode)):
            if value not in ("Never", "Always", "CrossSubnet"):
                raise ValueError(f"{field} must be Never, Always or CrossSubnet, not {value!r}")
        return self

    @property
    def network(self) -> netaddr.IPNetwork:
        return netaddr.IPNetwork(self.cidr)

    @property
    def for_workloads(self) -> bool:
        return "Workload" in (self.allowedUses or ["Workload"])  # empty means Calico's default

    @property
    def automatic(self) -> bool:
        """A Manual pool gives addresses only to those who name it."""
        return self.assignmentMode != "Manual"

    @property
    def block_prefixlen(self) -> int:
        if self.blockSize is not None:
            return self.blockSize
        return 26 if self.network.version == 4 else 122


class IPPool(_Open):
    kind: str = "IPPool"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: IPPoolSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def network(self) -> netaddr.IPNetwork:
        return self.spec.network


class NodeBGPSpec(_Open):
    ipv4Address: str | None = None  # CIDR form, e.g. 192.0.2.11/24, as Calico stores it
    ipv6Address: str | None = None
    asNumber: int | None = Field(default=None, ge=1, le=4294967295)
    ipv4IPIPTunnelAddr: str | None = None

    @property
    def ipv4(self) -> str | None:
        """The bare BGP address (without the prefix length)."""
        return self.ipv4Address.split("/")[0] if self.ipv4Address else None


K8S_ORCHESTRATOR = "k8s"


class OrchRef(_Open):
    """The orchestrator's node this Calico Node is (`{nodeName, orchestrator: k8s}` under Kubernetes)."""

    nodeName: str | None = None
    orchestrator: str = ""


class NodeSpec(_Open):
    bgp: NodeBGPSpec | None = None
    orchRefs: list[OrchRef] | None = None


class Node(_Open):
    kind: str = "Node"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: NodeSpec = Field(default_factory=NodeSpec)

    @property
    def name(self) -> str:
        return self.metadata.name


DEFAULT_AS = 64512


class BGPConfigurationSpec(_Open):
    asNumber: int | None = Field(default=None, ge=1, le=4294967295)
    nodeToNodeMeshEnabled: bool | None = None
    logSeverityScreen: str | None = None


class BGPConfiguration(_Open):
    """Only the resource named `default` is global; `node.<name>` ones are per node (as Calico)."""

    kind: str = "BGPConfiguration"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: BGPConfigurationSpec = Field(default_factory=BGPConfigurationSpec)


class BGPPeerSpec(_Open):
    peerIP: str
    asNumber: int = Field(ge=1, le=4294967295)
    node: str | None = None  # set: only that node peers (a "node specific" peer)
    nodeSelector: str | None = None
    peerSelector: str | None = None

    @field_validator("peerIP")
    @classmethod
    def _valid_ip(cls, value: str) -> str:
        address = value.rsplit(":", 1)[0] if value.count(":") == 1 else value  # ip:port form
        try:
            netaddr.IPAddress(address.strip("[]"))
        except (netaddr.AddrFormatError, ValueError) as exc:
            raise ValueError(f"invalid peerIP {value!r}") from exc
        return value


class BGPPeer(_Open):
    kind: str = "BGPPeer"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: BGPPeerSpec


class ClusterInformationSpec(_Open):
    clusterGUID: str = ""
    clusterType: str = ""
    calicoVersion: str = ""
    datastoreReady: bool = True


class ClusterInformation(_Open):
    kind: str = "ClusterInformation"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: ClusterInformationSpec = Field(default_factory=ClusterInformationSpec)


class IPAMConfig(BaseModel):
    """`/calico/ipam/v2/config`, in Calico's own JSON spelling."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = Field(default=0, alias="maxBlocksPerHost", ge=0)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True))


def to_json(resource: BaseModel) -> str:
    """Stored form: without resourceVersion (the etcd mod revision is the resource version)."""
    data = resource.model_dump(exclude_none=True)
    data.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(data, sort_keys=True)







class WorkloadEndpointSpec(_Open):
    orchestrator: str
    workload: str = ""
    node: str
    containerID: str
    pod: str = ""
    endpoint: str
    interfaceName: str
    mac: str = ""
    ipNetworks: list[str] = Field(default_factory=list)
    profiles: list[str] = Field(default_factory=list)


class WorkloadEndpoint(_Open):
    kind: str = "WorkloadEndpoint"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: WorkloadEndpointSpec


class Profile(_Open):
    kind: str = "Profile"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: dict[str, Any] = Field(default_factory=dict)


def allow_all_profile(name: str) -> Profile:
    """A Kubernetes namespace's profile (`kns.<namespace>`) when none exists yet: all traffic is
    allowed, policies restrict it. Older versions also gave every network this shape."""
    return Profile(metadata=Metadata(name=name),
                   spec={"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})


def network_profile(name: str) -> Profile:
    """A network's profile, as Calico's CNI plugin creates it for non-Kubernetes workloads: its
    endpoints carry the label `<name>` (empty value) and accept traffic only from endpoints that
    have it, so two networks are isolated from each other; whatever they send is allowed."""
    return Profile(metadata=Metadata(name=name),
                   spec={"labelsToApply": {name: ""},
                         "ingress": [{"action": "Allow", "source": {"selector": f"has({name})"}}],
                         "egress": [{"action": "Allow"}]})
