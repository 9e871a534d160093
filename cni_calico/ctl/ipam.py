"""`calicoctl ipam show | check | release | configure`: read the datastore, let allocation.audit judge, print.

The output follows Calico's calicoctl (show.go, check.go, release.go, configure.go). Where we
add to it, the docstring of the command says so. User errors raise CtlError (one line, exit 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Sequence, TextIO, TypeVar

import netaddr
from pydantic import BaseModel, ValidationError

from .. import __version__
from ..allocation import audit as ipam_audit
from ..allocation.block import AllocationBlock
from ..allocation.client import IpamClient, ReleaseOptions
from ..allocation.config import set_ipam_config
from ..datastore import Datastore, KeyValue
from ..model import keys
from ..model.keys import node_key
from ..model.v3 import IPPool, Node, WorkloadEndpoint
from ..tables import render_table
from .errors import CtlError

M = TypeVar("M", bound=BaseModel)
CALICO_PREFIX = "/calico/"  # resources and IPAM both live under it: one snapshot reads them together


# ------------------------------------------------------------------ show

def show(ds: Datastore, out: TextIO, *, show_blocks: bool = False, ip: str | None = None) -> int:
    """Usage per IP pool (every pool, v4 and v6) in Calico's table, or what one address is used for.

    `show_blocks` adds a row per block (GROUPING `Block`) after its pool, and - our addition - a
    final NODE column naming the node each block is affine to (`<none>` for an unaffine block;
    empty on pool rows). Without it the table is Calico's, column for column. Blocks that no pool
    contains any more are listed last, without a pool row, as Calico does.
    """
    if ip is not None:
        out.write(_show_ip(ds, _parse_ip(ip)))
        return 0
    pools = _read(ds, keys.resource_prefix("ippools"), IPPool)
    out.write(usage_table(ipam_audit.utilization(pools, _blocks(ds)), show_blocks))
    return 0


def _show_ip(ds: Datastore, address: netaddr.IPAddress) -> str:
    block = next((b for b in _blocks(ds, address.version) if address in b.network), None)
    ordinal = block.ordinal(address) if block else None
    index = None if block is None or ordinal is None else block.allocations[ordinal]
    if block is None or index is None:
        return f"IP {address} is not currently assigned\n"
    attr = block.attributes[index]
    attributes = dict(attr.secondary or {})
    if attr.handle_id:
        attributes["handle"] = attr.handle_id
    lines = [f"IP {address} is in use"]
    if attributes:
        lines += ["Attributes:"] + [f"  {k}: {v}" for k, v in sorted(attributes.items())]
    else:
        lines.append("No attributes defined")
    return "\n".join(lines) + "\n"


def usage_table(usage: Sequence[ipam_audit.PoolUsage], show_blocks: bool) -> str:
    header = ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"] + (["NODE"] if show_blocks else [])
    rows: list[list[str]] = []
    for pool in usage:
        if pool.cidr is not None:  # the group of blocks outside every pool has no row of its own
            row = _usage_row("IP Pool", str(pool.cidr), pool.in_use, pool.capacity)
            rows.append([*row, ""] if show_blocks else row)
        if show_blocks:
            rows += [[*_usage_row("Block", str(b.cidr), b.in_use, b.capacity), b.node or "<none>"]
                     for b in pool.blocks]
    return render_table(header, rows)


def _usage_row(grouping: str, cidr: str, in_use: int, capacity: int) -> list[str]:
    # Go's %.5g and %.f, as Calico formats them: an IPv6 pool's size reads 1.8447e+19.
    def with_percentage(n: int) -> str:
        return f"{_go_g5(n)} ({100 * n / capacity:.0f}%)"

    return [grouping, cidr, _go_g5(capacity), with_percentage(in_use), with_percentage(capacity - in_use)]


def _go_g5(n: int) -> str:
    return f"{float(n):.5g}"




# ------------------------------------------------------------------ check

def check(ds: Datastore, out: TextIO, *, report_path: str | None = None, show_problem_ips: bool = False) -> int:
    """Cross-check IPAM against the workload endpoints and nodes, in Calico's report layout.

    Returns 0 whatever it finds, as Calico's check does: the problems are the output. Beyond
    Calico it counts addresses with more than one owner and blocks affine to nodes with no Node
    resource. `report_path` writes the JSON report `release --from-report` acts on;
    `show_problem_ips` lists each problem address (Calico's --show-problem-ips).
    """
    state = _load(ds)
    try:
        result = ipam_audit.audit(state.blocks, state.pools, state.nodes, state.endpoints, state.handles)
    except ValueError as exc:
        raise CtlError(str(exc)) from None
    out.write(check_text(result, show_problem_ips))
    if report_path:
        report = ipam_audit.build_report(result, revision=state.revision, generated_by=f"calicoctl v{__version__}",
                                         timestamp=datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            with open(report_path, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
                f.write("\n")
        except OSError as exc:
            raise CtlError(f"cannot write report {report_path}: {exc.strerror}") from None
        out.write(f"Report written to {report_path}.\n")
    return 0


def check_text(result: ipam_audit.Audit, show_problem_ips: bool = False) -> str:
    lines = ["Checking IPAM for inconsistencies...", "", "Loading all IPAM blocks...",
             f"Found {len(result.blocks)} IPAM blocks."]
    lines += [f" IPAM block {cidr} affinity={affinity or '<none>'}:" for cidr, affinity in result.blocks]
    lines += [f"IPAM blocks record {len(result.allocations)} allocations.", "",
              "Loading all IPAM pools..."]
    lines += [f"  {cidr}" for cidr in result.active_pools]
    lines += [f"Found {len(result.active_pools)} active IP pools.", "",
              "Loading all nodes.", f"Found {result.node_ips} node tunnel IPs.", "",
              "Loading all workload endpoints.", f"Found {result.workload_ips} workload IPs.",
              f"Workloads and nodes are using {len(result.owners)} IPs.", "",
              "Loading all handles", "Looking for top (up to 20) nodes by allocations..."]
    by_node = result.allocations_by_node()
    lines += [f"  {node or '<none>'} has {count} allocations" for node, count in by_node[:20]]
    if by_node:
        lines.append(f"Node with most allocations has {by_node[0][1]}; median is {by_node[len(by_node) // 2][1]}")
    lines += ["", "Scanning for IPs that are allocated but not actually in use..."]
    if show_problem_ips:
        lines += [f"  {a.ip} leaked; attrs {_attr_string(a)}" for a in result.leaked]
    lines += [f"Found {len(result.leaked)} IPs that are allocated in IPAM but not actually in use.",
              "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."]
    if show_problem_ips:
        for ip in result.multiple_owners:
            lines.append(f"  {ip} has multiple owners.")
        for ip in result.not_in_pool:
            lines += [f"  {ip} in use by {o} is not in any active IP pool." for o in result.owners[ip]]
        for ip in result.unallocated:
            lines += [f"  {ip} in use by {o} and in active IPAM pool but has no IPAM allocation."
                      for o in result.owners[ip]]
    lines += [f"Found {len(result.not_in_pool)} in-use IPs that are not in active IP pools.",
              f"Found {len(result.unallocated)} in-use IPs that are in active IP pools but have no corresponding "
              "IPAM allocation.",
              f"Found {len(result.multiple_owners)} in-use IPs that are claimed by more than one workload or node.",
              "", "Scanning for IPAM handles with no matching IPs..."]
    if show_problem_ips:
        lines += [f"  {h.handle} doesn't have any active IPs." for h in result.leaked_handles]
    lines += [f"Found {len(result.leaked_handles)} handles with no matching IPs "
              f"(and {result.handles_matched} handles with matches).",
              "Scanning for IPs with missing handle..."]
    if show_problem_ips:
        lines += [f"  {h} is in use in a block but doesn't exist." for h in result.missing_handles]
    lines += [f"Found {len(result.missing_handles)} handles mentioned in blocks with no matching handle resource.",
              "Scanning for IPAM blocks affine to nodes that no longer exist..."]
    if not result.nodes_known:
        lines.append("  No Node resources exist: skipped (is calico-node running?).")
    if show_problem_ips:
        lines += [f"  {b.cidr} is affine to node {b.node}, which has no Node resource ({b.in_use} addresses in use)."
                  for b in result.orphan_blocks]
    lines += [f"Found {len(result.orphan_blocks)} IPAM blocks affine to nodes that no longer exist.",
              f"Check complete; found {result.problems} problems."]
    return "\n".join(lines) + "\n"


def _attr_string(a: ipam_audit.Allocation) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(a.attributes.items()))
    return f"Main:{a.handle or '<none>'} Extra:{extra}"


# ------------------------------------------------------------------ release

def release(ds: Datastore, out: TextIO, *, ips: Sequence[str] = (), from_report: str | None = None) -> int:
    """Release the given addresses, or what a `check -o` report found leaked.

    `ips`: each address is freed from its block and its handle decremented in one transaction;
    an address that is not assigned makes the command fail (exit 1) after the others are freed.
    `from_report`: every leaked allocation is re-checked first - one that a workload or node now
    claims, or that was released and handed out again since the report, is left alone - then
    the handles the report found empty (only if unchanged since) and the empty blocks of deleted
    nodes (block and affinity in one transaction) are removed.
    """
    if ips and from_report:
        raise CtlError("give either --ip or --from-report, not both")
    if from_report:
        return _release_from_report(ds, out, from_report)
    if not ips:
        raise CtlError("nothing to release: give --ip or --from-report")
    addresses = [_parse_ip(text) for text in ips]  # all valid before anything is released
    released, not_assigned = IpamClient(ds, "").release_addresses(ReleaseOptions(a) for a in addresses)
    for address in released:
        out.write(f"Successfully released IP address {address}\n")
    if not_assigned:
        listed = ", ".join(str(a) for a in not_assigned)
        raise CtlError(f"IP address {listed} is not assigned" if len(not_assigned) == 1
                       else f"IP addresses {listed} are not assigned")
    return 0


def _release_from_report(ds: Datastore, out: TextIO, path: str) -> int:
    report = _read_report(path)
    _release_leaked(ds, out, report.leakedAllocations)
    _release_handles(ds, out, report.leakedHandles)
    _release_orphan_blocks(ds, out, report.orphanBlocks)
    return 0


def _release_leaked(ds: Datastore, out: TextIO, leaked: Sequence[ipam_audit.ReportedAllocation]) -> None:
    if not leaked:
        out.write("Report didn't contain any leaked IPs to clean up.\n")
        return
    # Who claims what *now*: the report may be stale. Read just before the release to keep the
    # window small; the handle and sequence number guard against re-assignment in the meantime.
    state = _load(ds)
    try:
        owners, _, _ = ipam_audit.claimed_addresses(state.nodes, state.endpoints)
    except ValueError as exc:
        raise CtlError(str(exc)) from None
    live = {n.name for n in state.nodes}
    used: list[ipam_audit.ReportedAllocation] = []
    todo: list[ipam_audit.ReportedAllocation] = []
    for entry in leaked:
        (used if ipam_audit.in_use(entry.ip, entry.handle, owners, live) else todo).append(entry)
    out.write(f"Releasing {len(todo)} old IPs...\n")
    released, gone = IpamClient(ds, "").release_addresses(
        ReleaseOptions(netaddr.IPAddress(a.ip), a.handle, a.sequenceNumber) for a in todo)
    out.write(f"Released {len(released)} IPs successfully\n")
    if gone:
        out.write(f"{len(gone)} addresses marked as leaked in the report had already been cleaned up "
                  "(or were assigned again).\n")
    if used:
        out.write(f"{len(used)} addresses marked as leaked in the report are in use now; not released:\n")
        out.writelines(f"  {a.ip} ({', '.join(owners.get(a.ip, []) or ['tunnel address of ' + a.node])})\n"
                       for a in used)


def _release_handles(ds: Datastore, out: TextIO, handles: Sequence[ipam_audit.ReportedHandle]) -> None:
    if not handles:
        out.write("Report didn't contain any handles to clean up.\n")
        return
    out.write(f"Deleting {len(handles)} handles...\n")
    deleted = 0
    for h in handles:
        # Only an unchanged handle: one that gained an address since was written in that same transaction.
        kv = ds.get(keys.handle(h.handle))
        if kv is not None and kv.mod_revision == h.revision and ds.delete(kv.key, kv.mod_revision):
            deleted += 1
    out.write(f"Released {deleted} handles; {len(handles) - deleted} skipped; 0 errors.\n")


def _release_orphan_blocks(ds: Datastore, out: TextIO, blocks: Sequence[ipam_audit.ReportedBlock]) -> None:
    if not blocks:
        out.write("Report didn't contain any blocks of deleted nodes to clean up.\n")
        return
    out.write(f"Releasing {len(blocks)} blocks of deleted nodes...\n")
    released = 0
    for entry in blocks:
        outcome = _release_orphan_block(ds, entry)
        released += outcome is None
        out.write(f"  Released block {entry.cidr} of node {entry.node}\n" if outcome is None
                  else f"  Kept block {entry.cidr} of node {entry.node}: {outcome}\n")
    out.write(f"Released {released} blocks; {len(blocks) - released} kept.\n")


def _release_orphan_block(ds: Datastore, entry: ipam_audit.ReportedBlock) -> str | None:
    """An empty block of a node that is gone, with its affinity; None when released (or already
    gone), else why the block stays."""
    if ds.get(node_key(entry.node)) is not None:
        return "the node exists again"
    return IpamClient(ds, entry.node).release_block_if_empty(netaddr.IPNetwork(entry.cidr))


def _read_report(path: str) -> ipam_audit.CheckReport:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise CtlError(f"cannot read report {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CtlError(f"report {path} is not valid JSON: {exc}") from None
    try:
        return ipam_audit.parse_report(data)
    except ValueError as exc:
        raise CtlError(f"report {path}: {exc}") from None


# ------------------------------------------------------------------ configure

def configure(ds: Datastore, out: TextIO, *, strict_affinity: bool | None = None,
              max_blocks_per_host: int | None = None) -> int:
    """Change /calico/ipam/v2/config (Calico's `ipam configure --strictaffinity`; `max_blocks_per_host`
    is Calico's newer --max-blocks-per-host, 0 meaning no limit)."""
    if strict_affinity is None and max_blocks_per_host is None:
        raise CtlError("at least one configuration option must be specified")
    if max_blocks_per_host is not None and max_blocks_per_host < 0:
        raise CtlError(f"invalid value {max_blocks_per_host} for max-blocks-per-host: use a number >= 0")
    changes: dict[str, object] = {}
    if strict_affinity is not None:
        changes["strictAffinity"] = strict_affinity
    if max_blocks_per_host is not None:
        changes["maxBlocksPerHost"] = max_blocks_per_host
    set_ipam_config(ds, **changes)
    if strict_affinity is not None:
        out.write(f"Successfully set StrictAffinity to: {str(strict_affinity).lower()}\n")
    if max_blocks_per_host is not None:
        out.write(f"Successfully set MaxBlocksPerHost to: {max_blocks_per_host}\n")
    return 0


# ------------------------------------------------------------------ reading the datastore

@dataclass(frozen=True)
class _State:
    revision: int
    pools: list[IPPool]
    nodes: list[Node]
    endpoints: list[WorkloadEndpoint]
    blocks: list[AllocationBlock]
    handles: dict[str, int]  # handle id -> mod revision


def _load(ds: Datastore) -> _State:
    """Everything the check needs, read at one etcd revision so the records agree with each other."""
    rows, revision = ds.snapshot(CALICO_PREFIX)

    def under(prefix: str) -> list[KeyValue]:
        return [kv for kv in rows if kv.key.startswith(prefix)]

    return _State(
        revision=revision,
        pools=[_parse(kv, IPPool) for kv in under(keys.resource_prefix("ippools"))],
        nodes=[_parse(kv, Node) for kv in under(keys.resource_prefix("nodes"))],
        endpoints=[_parse(kv, WorkloadEndpoint) for kv in under(keys.resource_prefix("workloadendpoints"))],
        blocks=[_parse(kv, AllocationBlock) for v in (4, 6) for kv in under(keys.block_prefix(v))],
        handles={kv.key[len(keys.HANDLE_PREFIX):]: kv.mod_revision for kv in under(keys.HANDLE_PREFIX)},
    )


def _read(ds: Datastore, prefix: str, model: type[M]) -> list[M]:
    return [_parse(kv, model) for kv in ds.list(prefix)]


def _blocks(ds: Datastore, version: int | None = None) -> list[AllocationBlock]:
    return [b for v in ((version,) if version else (4, 6)) for b in _read(ds, keys.block_prefix(v), AllocationBlock)]


def _parse(kv: KeyValue, model: type[M]) -> M:
    try:
        return model.model_validate_json(kv.value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "value"
        raise CtlError(f"cannot read {kv.key}: {where}: {err['msg']}") from None


def _parse_ip(text: str) -> netaddr.IPAddress:
    try:
        return netaddr.IPAddress(text.strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise CtlError(f"invalid IP address {text!r}") from None
