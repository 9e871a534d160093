"""What `calicoctl ipam show` and `ipam check` compute, from records already read: pure, no I/O.

As in Calico's check, an allocation is in use when something claims its *address*: a
workload endpoint (its `ipNetworks`) or a node (its recorded IPIP tunnel address). We also
count an allocation under a live node's tunnel handle (`ipip-tunnel-addr-<node>`) as in use,
because calico-node records the tunnel address on the Node only once the Node has a BGP spec.

Beyond Calico's check we report addresses claimed by more than one owner and blocks still
affine to a node that has no Node resource (Calico leaves those to kube-controllers).

The report (`check -o FILE`) is a versioned JSON document that `release --from-report` reads
back; every entry in it is re-checked against the datastore before anything is released.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import netaddr
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..model.v3 import IPPool, Node, WorkloadEndpoint
from ..node.routing.ipip import handle_id as tunnel_handle
from .block import AllocationBlock

REPORT_KIND = "IPAMCheckReport"
REPORT_FORMAT_VERSION = 1


# ------------------------------------------------------------------ utilization (ipam show)

@dataclass(frozen=True)
class BlockUsage:
    cidr: netaddr.IPNetwork
    capacity: int
    in_use: int
    node: str | None


@dataclass(frozen=True)
class PoolUsage:
    """One pool and its blocks; `cidr` None groups the blocks no pool contains any more."""

    name: str | None
    cidr: netaddr.IPNetwork | None
    capacity: int
    in_use: int
    blocks: list[BlockUsage]


def utilization(pools: Sequence[IPPool], blocks: Iterable[AllocationBlock]) -> list[PoolUsage]:
    """Usage per pool, in the order given (Calico: the pool list order), every pool whether
    enabled or not; blocks sorted by address under the pool holding them, then the orphans."""
    grouped: dict[int, list[BlockUsage]] = {i: [] for i in range(len(pools) + 1)}
    for block in sorted(blocks, key=lambda b: (b.network.version, b.network.first)):
        usage = BlockUsage(block.network, len(block.allocations), block.in_use, block.host)
        index = next((i for i, p in enumerate(pools) if block.network in p.network), len(pools))
        grouped[index].append(usage)
    out = [PoolUsage(p.name, p.network, p.network.size, sum(b.in_use for b in grouped[i]), grouped[i])
           for i, p in enumerate(pools)]
    if grouped[len(pools)]:
        orphans = grouped[len(pools)]
        out.append(PoolUsage(None, None, sum(b.capacity for b in orphans), sum(b.in_use for b in orphans), orphans))
    return out


# ------------------------------------------------------------------ the check

@dataclass(frozen=True)
class Allocation:
    ip: str
    block: str
    handle: str | None
    node: str  # the node that asked for it, else the block's node, else ""
    block_node: str | None
    sequence_number: int
    attributes: Mapping[str, str]

    @property
    def borrowed(self) -> bool:
        return self.node != (self.block_node or "")


@dataclass(frozen=True)
class OrphanBlock:
    cidr: str
    node: str
    in_use: int


@dataclass(frozen=True)
class LeakedHandle:
    handle: str
    revision: int


@dataclass
class Audit:
    blocks: list[tuple[str, str | None]]  # (cidr, raw affinity)
    allocations: list[Allocation]
    active_pools: list[str]
    node_ips: int
    workload_ips: int
    owners: dict[str, list[str]]  # address -> who claims it ("Workload(ns/name)", "Node(name)")
    handles_matched: int
    leaked: list[Allocation] = field(default_factory=list)
    not_in_pool: list[str] = field(default_factory=list)  # claimed, outside every active pool
    unallocated: list[str] = field(default_factory=list)  # claimed, in an active pool, no allocation
    multiple_owners: list[str] = field(default_factory=list)
    leaked_handles: list[LeakedHandle] = field(default_factory=list)
    missing_handles: list[str] = field(default_factory=list)  # named in blocks, no handle record
    orphan_blocks: list[OrphanBlock] = field(default_factory=list)
    nodes_known: bool = True  # False: no Node resources at all, so orphan blocks were not judged

    @property
    def problems(self) -> int:
        # As Calico: a handle named in a block without a record is printed, not counted.
        return (len(self.leaked) + len(self.not_in_pool) + len(self.unallocated) + len(self.multiple_owners)
                + len(self.leaked_handles) + len(self.orphan_blocks))

    def allocations_by_node(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for a in self.allocations:
            counts[a.node] = counts.get(a.node, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def normalise_ip(text: str) -> str:
    """`10.65.0.5/32` or `10.65.0.5` -> `10.65.0.5`; ValueError for anything else."""
    try:
        return str(netaddr.IPNetwork(text.strip()).ip) if "/" in text else str(netaddr.IPAddress(text.strip()))
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError(f"invalid IP address {text!r}") from exc


def allocations_of(block: AllocationBlock) -> list[Allocation]:
    out = []
    for address, attr in block.allocated():
        ordinal = block.ordinal(address)
        attributes = dict(attr.secondary or {})
        out.append(Allocation(
            ip=str(address), block=str(block.network), handle=attr.handle_id,
            node=attributes.get("node") or block.host or "", block_node=block.host,
            sequence_number=block.sequenceNumberForAllocation.get(str(ordinal), 0), attributes=attributes))
    return out


def claimed_addresses(nodes: Iterable[Node], endpoints: Iterable[WorkloadEndpoint]
                      ) -> tuple[dict[str, list[str]], int, int]:
    """Address -> owners, and how many node and workload addresses were seen. ValueError names a
    resource with an address that does not parse (Calico's check stops there too)."""
    owners: dict[str, list[str]] = {}
    node_ips = workload_ips = 0
    for node in nodes:
        tunnel = node.spec.bgp.ipv4IPIPTunnelAddr if node.spec.bgp else None
        if tunnel:
            try:
                owners.setdefault(normalise_ip(tunnel), []).append(f"Node({node.name})")
            except ValueError as exc:
                raise ValueError(f"node {node.name}: {exc}") from None
            node_ips += 1
    for wep in endpoints:
        name = f"{wep.metadata.namespace}/{wep.metadata.name}"
        for text in wep.spec.ipNetworks or ():
            try:
                owners.setdefault(normalise_ip(text), []).append(f"Workload({name})")
            except ValueError as exc:
                raise ValueError(f"workload endpoint {name}: {exc}") from None
            workload_ips += 1
    return owners, node_ips, workload_ips


def in_use(ip: str, handle: str | None, owners: Mapping[str, Sequence[str]], live_nodes: Iterable[str]) -> bool:
    """Whether an allocation is used: its address is claimed, or it is a live node's tunnel address."""
    return ip in owners or (handle is not None and handle in {tunnel_handle(n) for n in live_nodes})


def audit(blocks: Sequence[AllocationBlock], pools: Sequence[IPPool], nodes: Sequence[Node],
          endpoints: Sequence[WorkloadEndpoint], handles: Mapping[str, int]) -> Audit:
    """Cross-check IPAM (blocks, handles: id -> mod revision) against what uses addresses."""
    owners, node_ips, workload_ips = claimed_addresses(nodes, endpoints)
    node_names = {n.name for n in nodes}
    allocations = [a for b in blocks for a in allocations_of(b)]
    active = [p for p in pools if not p.spec.disabled]
    used_handles = {a.handle for a in allocations if a.handle}
    result = Audit(blocks=[(b.cidr, b.affinity) for b in blocks], allocations=allocations,
                   active_pools=[str(p.network) for p in active], node_ips=node_ips, workload_ips=workload_ips,
                   owners=owners, handles_matched=sum(1 for h in handles if h in used_handles),
                   nodes_known=bool(nodes))
    tunnels = {tunnel_handle(n) for n in node_names}
    result.leaked = [a for a in allocations if a.ip not in owners and a.handle not in tunnels]
    allocated = {a.ip for a in allocations}
    for ip in sorted(owners, key=_ip_order):
        if len(owners[ip]) > 1:
            result.multiple_owners.append(ip)
        if ip in allocated:
            continue
        if any(netaddr.IPAddress(ip) in p.network for p in active):
            result.unallocated.append(ip)
        else:
            result.not_in_pool.append(ip)
    result.leaked_handles = [LeakedHandle(h, rev) for h, rev in sorted(handles.items()) if h not in used_handles]
    result.missing_handles = sorted(used_handles - set(handles))
    if nodes:  # with no Node resources at all (no calico-node yet), every block would look orphaned
        result.orphan_blocks = [OrphanBlock(b.cidr, b.host, b.in_use) for b in blocks
                                if b.host is not None and b.host not in node_names]
    return result


def _ip_order(ip: str) -> tuple[int, int]:
    address = netaddr.IPAddress(ip)
    return address.version, int(address)


# ------------------------------------------------------------------ the report file

def _block_cidr(value: str) -> str:
    try:
        return str(netaddr.IPNetwork(value).cidr)
    except (netaddr.AddrFormatError, ValueError) as exc:
        raise ValueError(f"invalid block {value!r}") from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReportedAllocation(_Strict):
    ip: str
    handle: str | None = None
    block: str
    node: str = ""
    sequenceNumber: int = 0
    attributes: dict[str, str] = {}

    @field_validator("ip")
    @classmethod
    def _valid_ip(cls, value: str) -> str:
        return normalise_ip(value)

    @field_validator("block")
    @classmethod
    def _valid_block(cls, value: str) -> str:
        return _block_cidr(value)


class ReportedBlock(_Strict):
    cidr: str
    node: str
    inUse: int = 0

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str) -> str:
        return _block_cidr(value)


class ReportedHandle(_Strict):
    handle: str
    revision: int


class CheckReport(_Strict):
    kind: Literal["IPAMCheckReport"]
    formatVersion: int
    generatedBy: str = ""
    timestamp: str = ""
    revision: int = 0
    problems: int = 0
    leakedAllocations: list[ReportedAllocation] = []
    orphanBlocks: list[ReportedBlock] = []
    leakedHandles: list[ReportedHandle] = []
    # Informational: `release` cannot fix these (they need the workloads looked at).
    inUseButNotAllocated: list[dict[str, Any]] = []
    multipleOwners: list[dict[str, Any]] = []


def build_report(result: Audit, *, revision: int, timestamp: str, generated_by: str) -> dict[str, Any]:
    return {
        "kind": REPORT_KIND,
        "formatVersion": REPORT_FORMAT_VERSION,
        "generatedBy": generated_by,
        "timestamp": timestamp,
        "revision": revision,
        "problems": result.problems,
        "leakedAllocations": [
            {"ip": a.ip, "handle": a.handle, "block": a.block, "node": a.node,
             "sequenceNumber": a.sequence_number, "attributes": dict(sorted(a.attributes.items()))}
            for a in sorted(result.leaked, key=lambda a: _ip_order(a.ip))],
        "orphanBlocks": [{"cidr": b.cidr, "node": b.node, "inUse": b.in_use} for b in result.orphan_blocks],
        "leakedHandles": [{"handle": h.handle, "revision": h.revision} for h in result.leaked_handles],
        "inUseButNotAllocated": [{"ip": ip, "owners": result.owners[ip]}
                                 for ip in result.unallocated + result.not_in_pool],
        "multipleOwners": [{"ip": ip, "owners": result.owners[ip]} for ip in result.multiple_owners],
    }


def parse_report(data: object) -> CheckReport:
    """The report `build_report` wrote; ValueError with a one-line reason otherwise."""
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise ValueError(f"not an IPAM check report (expected kind {REPORT_KIND})")
    if data.get("formatVersion") != REPORT_FORMAT_VERSION:
        raise ValueError(f"report format version {data.get('formatVersion')!r} is not supported "
                         f"(this calicoctl reads version {REPORT_FORMAT_VERSION})")
    try:
        return CheckReport.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise ValueError(f"{where}: {err['msg']}") from None
