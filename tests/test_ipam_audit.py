"""ipam_audit (and the pure renderers of ctl/ipam.py): utilization, the check, the report. No datastore."""

from __future__ import annotations

import json
import re

import netaddr
import pytest

from cni_calico.allocation import audit as ipam_audit
from cni_calico.allocation.block import AllocationBlock
from cni_calico.ctl.ipam import check_text, usage_table
from cni_calico.model.v3 import (
    IPPool,
    IPPoolSpec,
    Node,
    NodeBGPSpec,
    NodeSpec,
    ObjectMeta,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
)
from cni_calico.tables import render_table


def pool(name: str, cidr: str, **spec: object) -> IPPool:
    return IPPool(metadata=ObjectMeta(name=name), spec=IPPoolSpec(cidr=cidr, **spec))


def node(name: str, tunnel: str | None = None) -> Node:
    return Node(metadata=ObjectMeta(name=name), spec=NodeSpec(bgp=NodeBGPSpec(ipv4IPIPTunnelAddr=tunnel)))


def wep(name: str, *addresses: str, namespace: str = "default", on: str = "n1") -> WorkloadEndpoint:
    return WorkloadEndpoint(metadata=ObjectMeta(name=name, namespace=namespace), spec=WorkloadEndpointSpec(
        orchestrator="cni", node=on, containerID=name, endpoint="eth0", interfaceName="cali0",
        ipNetworks=list(addresses)))


def block(cidr: str, host: str | None, *handles: str, node_attr: str | None = None) -> AllocationBlock:
    """A block with one address per handle, taken in order from its start."""
    b = AllocationBlock.new(netaddr.IPNetwork(cidr), host)
    for h in handles:
        b, _ = b.assign(1, h, {"node": node_attr or host or "x"})
    return b


# ------------------------------------------------------------------ utilization and the table

def test_utilization_groups_blocks_under_their_pool_and_orphans_last() -> None:
    pools = [pool("b-v6", "fd00::/64"), pool("a-v4", "10.65.0.0/16", disabled=True)]
    blocks = [block("10.65.1.0/26", "n2", "h3"), block("10.65.0.0/26", "n1", "h1", "h2"),
              block("10.99.0.0/26", "gone", "h4")]
    usage = ipam_audit.utilization(pools, blocks)
    assert [(u.name, str(u.cidr) if u.cidr else None, u.capacity, u.in_use) for u in usage] == [
        ("b-v6", "fd00::/64", 2 ** 64, 0), ("a-v4", "10.65.0.0/16", 65536, 3), (None, None, 64, 1)]
    assert [(str(b.cidr), b.in_use, b.node) for b in usage[1].blocks] == [
        ("10.65.0.0/26", 2, "n1"), ("10.65.1.0/26", 1, "n2")]  # by address, not by input order


def test_usage_table_matches_calicos_layout() -> None:
    usage = ipam_audit.utilization([pool("p4", "10.65.0.0/16"), pool("p6", "fd80:24e2:f998:72d6::/64")],
                                   [block("10.65.0.0/26", "n1", *[f"h{i}" for i in range(4)]),
                                    block("10.65.1.64/26", "n2", "h9")])
    assert usage_table(usage, show_blocks=False) == """\
+----------+--------------------------+------------+------------+-------------------+
| GROUPING |           CIDR           | IPS TOTAL  | IPS IN USE |     IPS FREE      |
+----------+--------------------------+------------+------------+-------------------+
| IP Pool  | 10.65.0.0/16             |      65536 | 5 (0%)     | 65531 (100%)      |
| IP Pool  | fd80:24e2:f998:72d6::/64 | 1.8447e+19 | 0 (0%)     | 1.8447e+19 (100%) |
+----------+--------------------------+------------+------------+-------------------+
"""
    assert usage_table(usage, show_blocks=True) == """\
+----------+--------------------------+------------+------------+-------------------+------+
| GROUPING |           CIDR           | IPS TOTAL  | IPS IN USE |     IPS FREE      | NODE |
+----------+--------------------------+------------+------------+-------------------+------+
| IP Pool  | 10.65.0.0/16             |      65536 | 5 (0%)     | 65531 (100%)      |      |
| Block    | 10.65.0.0/26             |         64 | 4 (6%)     | 60 (94%)          | n1   |
| Block    | 10.65.1.64/26            |         64 | 1 (2%)     | 63 (98%)          | n2   |
| IP Pool  | fd80:24e2:f998:72d6::/64 | 1.8447e+19 | 0 (0%)     | 1.8447e+19 (100%) |      |
+----------+--------------------------+------------+------------+-------------------+------+
"""


def test_render_table_with_no_rows_and_odd_centring() -> None:
    assert render_table(["AB", "C"], []) == "+----+---+\n| AB | C |\n+----+---+\n+----+---+\n"
    assert render_table(["AB"], [["12345"]]).splitlines()[1] == "|  AB   |"  # odd space on the right


def test_unaffine_block_shows_none_as_node() -> None:
    usage = ipam_audit.utilization([pool("p", "10.0.0.0/24")], [block("10.0.0.0/26", None, "h")])
    assert "| Block    | 10.0.0.0/26 |        64 | 1 (2%)     | 63 (98%)   | <none> |" in usage_table(usage, True)
    assert "| IP Pool  | 10.0.0.0/24 |       256 | 1 (0%)     | 255 (100%) |        |" in usage_table(usage, True)


# ------------------------------------------------------------------ the check

def scenario() -> ipam_audit.Audit:
    blocks = [
        # n1: a (used by wep-a), b (leaked), the tunnel of n1 (handle only), shared (claimed by two weps)
        block("10.65.0.0/26", "n1", "net.a", "net.b", "ipip-tunnel-addr-n1", "net.shared"),
        block("10.65.9.0/26", "gone", "net.g", "ipip-tunnel-addr-gone"),  # node gone: both leaked
        block("10.65.5.0/26", "n2"),  # empty, node alive
    ]
    pools = [pool("p", "10.65.0.0/16"), pool("off", "10.77.0.0/16", disabled=True)]
    nodes = [node("n1"), node("n2", tunnel="10.65.5.9")]  # n2's tunnel address has no allocation
    endpoints = [wep("a", "10.65.0.0/32"), wep("s1", "10.65.0.3/32"), wep("s2", "10.65.0.3/32"),
                 wep("ghost", "10.65.7.7/32"), wep("outside", "192.0.2.1/32"), wep("off", "10.77.0.1/32")]
    handles = {"net.a": 5, "net.b": 6, "ipip-tunnel-addr-n1": 7, "net.shared": 8, "net.g": 9,
               "ipip-tunnel-addr-gone": 10, "net.empty": 11}  # net.empty: a record with no address
    return ipam_audit.audit(blocks, pools, nodes, endpoints, handles)


def test_audit_finds_each_kind_of_problem() -> None:
    result = scenario()
    assert sorted((a.ip, a.handle) for a in result.leaked) == [
        ("10.65.0.1", "net.b"), ("10.65.9.0", "net.g"), ("10.65.9.1", "ipip-tunnel-addr-gone")]
    assert result.unallocated == ["10.65.5.9", "10.65.7.7"]  # node tunnel and workload, in active pool
    assert result.not_in_pool == ["10.77.0.1", "192.0.2.1"]  # a disabled pool is not active
    assert result.multiple_owners == ["10.65.0.3"]
    assert result.owners["10.65.0.3"] == ["Workload(default/s1)", "Workload(default/s2)"]
    assert result.leaked_handles == [ipam_audit.LeakedHandle("net.empty", 11)]
    assert result.missing_handles == []
    assert result.orphan_blocks == [ipam_audit.OrphanBlock("10.65.9.0/26", "gone", 2)]
    assert result.problems == 3 + 2 + 2 + 1 + 1 + 1
    assert (result.node_ips, result.workload_ips, result.handles_matched) == (1, 6, 6)


def test_healthy_cluster_has_no_problems() -> None:
    b = block("10.65.0.0/26", "n1", "net.a", "ipip-tunnel-addr-n1")
    result = ipam_audit.audit([b], [pool("p", "10.65.0.0/16")], [node("n1")], [wep("a", "10.65.0.0/32")],
                              {"net.a": 1, "ipip-tunnel-addr-n1": 2})
    assert result.problems == 0 and result.leaked == [] and result.orphan_blocks == []


def test_tunnel_address_recorded_on_node_is_in_use_under_any_handle() -> None:
    b = block("10.65.0.0/26", "n1", "some-other-handle")
    result = ipam_audit.audit([b], [pool("p", "10.65.0.0/16")], [node("n1", tunnel="10.65.0.0")], [], {})
    assert result.leaked == [] and result.owners == {"10.65.0.0": ["Node(n1)"]}
    assert result.missing_handles == ["some-other-handle"] and result.problems == 0  # printed, not counted


def test_no_node_resources_means_orphan_blocks_are_not_judged() -> None:
    result = ipam_audit.audit([block("10.65.0.0/26", "n1")], [pool("p", "10.65.0.0/16")], [], [], {})
    assert result.orphan_blocks == [] and not result.nodes_known
    assert "No Node resources exist: skipped" in check_text(result)


def test_ipv6_addresses_are_normalised_before_matching() -> None:
    b = block("fd00::/122", "n1", "net.a")
    result = ipam_audit.audit([b], [pool("p", "fd00::/64")], [node("n1")], [wep("a", "fd00:0:0:0::0/128")],
                              {"net.a": 1})
    assert result.leaked == [] and result.problems == 0


def test_endpoint_with_a_malformed_address_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("workload endpoint default/bad: invalid IP address '10.1/99'")):
        ipam_audit.audit([], [], [], [wep("bad", "10.1/99")], {})


def test_check_text_has_calicos_lines_and_ours() -> None:
    text = check_text(scenario(), show_problem_ips=True)
    lines = text.splitlines()
    assert lines[:4] == ["Checking IPAM for inconsistencies...", "", "Loading all IPAM blocks...",
                         "Found 3 IPAM blocks."]
    for expected in (" IPAM block 10.65.9.0/26 affinity=host:gone:",
                     "IPAM blocks record 6 allocations.",
                     "Found 1 active IP pools.",
                     "Found 1 node tunnel IPs.",
                     "Found 6 workload IPs.",
                     "Workloads and nodes are using 6 IPs.",
                     "  n1 has 4 allocations",
                     "Node with most allocations has 4; median is 2",
                     "  10.65.0.1 leaked; attrs Main:net.b Extra:node=n1",
                     "Found 3 IPs that are allocated in IPAM but not actually in use.",
                     "  10.65.0.3 has multiple owners.",
                     "  192.0.2.1 in use by Workload(default/outside) is not in any active IP pool.",
                     "  10.65.7.7 in use by Workload(default/ghost) and in active IPAM pool "
                     "but has no IPAM allocation.",
                     "Found 2 in-use IPs that are not in active IP pools.",
                     "Found 2 in-use IPs that are in active IP pools but have no corresponding IPAM allocation.",
                     "Found 1 in-use IPs that are claimed by more than one workload or node.",
                     "Found 1 handles with no matching IPs (and 6 handles with matches).",
                     "Found 0 handles mentioned in blocks with no matching handle resource.",
                     "Found 1 IPAM blocks affine to nodes that no longer exist."):
        assert expected in lines, expected
    assert lines[-1] == "Check complete; found 10 problems."
    quiet = check_text(scenario())
    assert "leaked; attrs" not in quiet and quiet.splitlines()[-1] == lines[-1]


# ------------------------------------------------------------------ the report

def test_report_round_trip_keeps_what_release_needs() -> None:
    result = scenario()
    data = json.loads(json.dumps(ipam_audit.build_report(result, revision=42, timestamp="t", generated_by="x")))
    assert data["formatVersion"] == ipam_audit.REPORT_FORMAT_VERSION and data["kind"] == "IPAMCheckReport"
    report = ipam_audit.parse_report(data)
    assert [(a.ip, a.handle, a.block, a.node) for a in report.leakedAllocations] == [
        ("10.65.0.1", "net.b", "10.65.0.0/26", "n1"), ("10.65.9.0", "net.g", "10.65.9.0/26", "gone"),
        ("10.65.9.1", "ipip-tunnel-addr-gone", "10.65.9.0/26", "gone")]
    assert all(a.sequenceNumber > 0 for a in report.leakedAllocations)
    assert [(b.cidr, b.node, b.inUse) for b in report.orphanBlocks] == [("10.65.9.0/26", "gone", 2)]
    assert [(h.handle, h.revision) for h in report.leakedHandles] == [("net.empty", 11)]
    assert report.problems == 10 and report.revision == 42
    assert {e["ip"] for e in data["multipleOwners"]} == {"10.65.0.3"}


@pytest.mark.parametrize("data, message", [
    ([], "not an IPAM check report"),
    ({"kind": "Other"}, "not an IPAM check report"),
    ({"kind": "IPAMCheckReport", "formatVersion": 2}, "format version 2 is not supported"),
    ({"kind": "IPAMCheckReport", "formatVersion": 1, "leakedAllocations": [{"ip": "10.1", "block": "10.0.0.0/26"}]},
     "leakedAllocations.0.ip"),
    ({"kind": "IPAMCheckReport", "formatVersion": 1, "orphanBlocks": [{"cidr": "nope", "node": "n"}]},
     "orphanBlocks.0.cidr"),
    ({"kind": "IPAMCheckReport", "formatVersion": 1, "leakedHandles": [{"handle": "h"}]},
     "leakedHandles.0.revision"),
])
def test_malformed_reports_are_refused_with_a_reason(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ipam_audit.parse_report(data)
