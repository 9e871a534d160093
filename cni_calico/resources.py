"""Calico v3 resources as stored in etcd: `{"kind","apiVersion","metadata","spec"}`.

Only what the running code reads is modelled strictly; unknown spec fields written by
other tools are kept (extra="allow") so a read-modify-write never loses data.
"""

from __future__ import annotations

import json
from typing import Any

import netaddr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import keys

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


class NodeSpec(_Open):
    bgp: dict[str, Any] | None = None


class Node(_Open):
    kind: str = "Node"
    apiVersion: str = API_VERSION
    metadata: Metadata
    spec: NodeSpec = Field(default_factory=NodeSpec)


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


def pool_key(name: str) -> str:
    return keys.resource("ippools", name)


def node_key(name: str) -> str:
    return keys.resource("nodes", name)


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
    """The profile a network gets by default: every workload on it may talk to every other."""
    return Profile(metadata=Metadata(name=name),
                   spec={"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})


def workload_endpoint_key(namespace: str, name: str) -> str:
    return keys.resource("workloadendpoints", name, namespace)


def profile_key(name: str) -> str:
    return keys.resource("profiles", name)
