"""calicoctl ipam show / check / release / configure against a real etcd, with addresses
allocated by the real calico-ipam plugin (exec'd as a runtime would) and WorkloadEndpoint
records written the way the calico plugin writes them."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Callable

import netaddr
import pytest

from cni_calico.allocation.block import AllocationBlock
from cni_calico.allocation.client import IpamClient, ReleaseOptions, Request
from cni_calico.cni.identity import (
    Workload,
    endpoint_name,
    endpoint_namespace,
    host_veth_name,
)
from cni_calico.ctl import ipam
from cni_calico.ctl.errors import CtlError
from cni_calico.datastore import Datastore, EtcdDatastore, KeyValue, MemoryDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.model import keys
from cni_calico.model.keys import node_key, workload_endpoint_key
from cni_calico.model.v3 import Node, ObjectMeta, WorkloadEndpoint, WorkloadEndpointSpec, to_json

from .conftest import run_cni

POOL = "10.65.0.0/16"
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx"


def conf(etcd: str, node: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "net1", "type": "calico-ipam", "etcd_endpoints": etcd,
            "nodename": node, "ipam_lock_file": "", "ipam": {"type": "calico-ipam"}}


def add(etcd: str, node: str, cid: str, args: str = "") -> netaddr.IPNetwork:
    status, out, err = run_cni("calico-ipam", "ADD", conf(etcd, node), container_id=cid, args=args)
    assert status == 0, (out, err)
    assert out is not None
    return netaddr.IPNetwork(out["ips"][0]["address"])


def write_endpoint(ds: Datastore, node: str, cid: str, *addresses: netaddr.IPNetwork | str, pod: str = "") -> str:
    """The WorkloadEndpoint the calico plugin writes after a successful ADD."""
    workload = Workload(cid, "default", pod) if pod else Workload(cid)
    namespace, name = endpoint_namespace(workload), endpoint_name(node, workload, "eth0")
    wep = WorkloadEndpoint(
        metadata=ObjectMeta(name=name, namespace=namespace, labels={
            "projectcalico.org/namespace": namespace, "projectcalico.org/orchestrator": workload.orchestrator}),
        spec=WorkloadEndpointSpec(
            orchestrator=workload.orchestrator, workload=pod or cid, pod=pod, node=node, containerID=cid,
            endpoint="eth0", interfaceName=host_veth_name(workload), mac="0a:58:0a:41:00:05",
            ipNetworks=[f"{netaddr.IPNetwork(str(a)).ip}/32" for a in addresses], profiles=["net1"]))
    key = workload_endpoint_key(namespace, name)
    assert ds.create(key, to_json(wep))
    return key


def register_node(ds: Datastore, name: str) -> None:
    assert ds.create(node_key(name), to_json(Node(metadata=ObjectMeta(name=name))))


def run(command: Callable[..., int], ds: Datastore, **kwargs: Any) -> str:
    out = io.StringIO()
    assert command(ds, out, **kwargs) == 0
    return out.getvalue()


def table_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert lines[0].startswith("+-") and lines[2] == lines[0] and lines[-1] == lines[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[3:-1]]


def allocated(ds: Datastore) -> dict[str, str | None]:
    """Every allocated address -> its handle."""
    return {str(ip): attr.handle_id for v in (4, 6) for kv in ds.list(keys.block_prefix(v))
            for ip, attr in AllocationBlock.from_json(kv.value).allocated()}


def stored(ds: Datastore, key: str) -> KeyValue:
    kv = ds.get(key)
    assert kv is not None, f"{key} is not stored"
    return kv


def dump(ds: Datastore) -> list[tuple[str, int]]:
    return [(kv.key, kv.mod_revision) for kv in ds.list("/calico/")]


def line_with(text: str, start: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(start)]
    assert len(found) == 1, (start, text)
    return found[0]


# ------------------------------------------------------------------ release_addresses (in memory, fast)

def test_release_addresses_frees_exactly_those_and_keeps_handles_consistent() -> None:
    ds = MemoryDatastore()
    create_pool(ds, "p", POOL)
    client = IpamClient(ds, "n1")
    first, second = client.auto_assign(Request("h2", {"node": "n1"}, num_v4=2))
    (other,) = client.auto_assign(Request("h1", {"node": "n1"}))
    released, skipped = client.release_addresses(
        [ReleaseOptions(first.ip), ReleaseOptions(first.ip), ReleaseOptions(netaddr.IPAddress("10.65.255.1"))])
    assert released == [first.ip] and skipped == [netaddr.IPAddress("10.65.255.1")]
    assert set(allocated(ds)) == {str(second.ip), str(other.ip)}
    assert json.loads(ds.get(keys.handle("h2")).value)["block"] == {str(first.cidr): 1}  # decremented

    # A guard that no longer matches (another handle, another sequence number) leaves it alone.
    assert client.release_addresses([ReleaseOptions(second.ip, handle_id="h1")]) == ([], [second.ip])
    assert client.release_addresses([ReleaseOptions(second.ip, "h2", sequence_number=999)]) == ([], [second.ip])
    assert client.release_addresses([ReleaseOptions(second.ip, "h2")]) == ([second.ip], [])
    assert ds.get(keys.handle("h2")) is None  # its last address: the handle goes too
    assert client.release_addresses([ReleaseOptions(second.ip)]) == ([], [second.ip])  # twice: not assigned


# ------------------------------------------------------------------ show

@pytest.mark.etcd
def test_show_numbers_match_what_was_allocated(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "default-ipv4-ippool", POOL)
    create_pool(etcd_store, "v6", "fd80:24e2:f998:72d6::/64")
    for name in ("n1", "n2"):
        register_node(etcd_store, name)
    n1 = [add(etcd, "n1", f"c{i}") for i in range(4)]
    n2 = add(etcd, "n2", "c9")
    for i, address in enumerate(n1):
        write_endpoint(etcd_store, "n1", f"c{i}", address)
    write_endpoint(etcd_store, "n2", "c9", n2)

    assert table_rows(run(ipam.show, etcd_store)) == [
        ["IP Pool", POOL, "65536", "5 (0%)", "65531 (100%)"],
        ["IP Pool", "fd80:24e2:f998:72d6::/64", "1.8447e+19", "0 (0%)", "1.8447e+19 (100%)"]]

    rows = table_rows(run(ipam.show, etcd_store, show_blocks=True))
    assert rows[0] == ["IP Pool", POOL, "65536", "5 (0%)", "65531 (100%)", ""]
    blocks = {n1[0].cidr: ["4 (6%)", "60 (94%)", "n1"], n2.cidr: ["1 (2%)", "63 (98%)", "n2"]}
    assert {n.cidr for n in n1} == {n1[0].cidr} and n2.cidr != n1[0].cidr
    assert sorted(rows[1:3], key=lambda r: netaddr.IPNetwork(r[1]).first) == [
        ["Block", str(cidr), "64", *cells] for cidr, cells in sorted(blocks.items(), key=lambda i: i[0].first)]
    assert rows[3][:2] == ["IP Pool", "fd80:24e2:f998:72d6::/64"] and len(rows) == 4


@pytest.mark.etcd
def test_show_ip(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p", POOL)
    address = add(etcd, "n1", "pod1", POD_ARGS)
    lines = run(ipam.show, etcd_store, ip=str(address.ip)).splitlines()
    assert lines[:6] == [f"IP {address.ip} is in use", "Attributes:", "  handle: net1.pod1",
                         "  namespace: default", "  node: n1", "  pod: nginx"]
    assert lines[6].startswith("  timestamp: 20") and len(lines) == 7

    free_in_block = address.ip + 1
    assert run(ipam.show, etcd_store, ip=str(free_in_block)) == f"IP {free_in_block} is not currently assigned\n"
    assert run(ipam.show, etcd_store, ip="10.99.0.1") == "IP 10.99.0.1 is not currently assigned\n"  # no block
    with pytest.raises(CtlError, match=re.escape("invalid IP address '10.65.0'")):
        ipam.show(etcd_store, io.StringIO(), ip="10.65.0")


# ------------------------------------------------------------------ check and release --from-report

@pytest.mark.etcd
def test_check_finds_the_planted_problems_and_release_from_report_fixes_them(
        etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    ds = etcd_store
    create_pool(ds, "p", POOL)
    register_node(ds, "n1")
    register_node(ds, "n2")
    # Healthy: three workloads on n1 (one a pod), one on n2, and n1's IPIP tunnel address.
    healthy = {cid: add(etcd, node, cid, POD_ARGS if cid == "pod" else "")
               for node, cid in (("n1", "a"), ("n1", "b"), ("n1", "pod"), ("n2", "c"))}
    endpoint_keys = {cid: write_endpoint(ds, "n1" if cid != "c" else "n2", cid, address,
                                         pod="nginx" if cid == "pod" else "")
                     for cid, address in healthy.items()}
    tunnel_request = Request("ipip-tunnel-addr-n1", {"node": "n1", "type": "ipipTunnelAddress"})
    (tunnel,) = IpamClient(ds, "n1").auto_assign(tunnel_request)
    # Planted: (a) an allocation nobody uses; (c) a block of a node that has no Node resource,
    # whose only address is leaked too; (b) an endpoint whose address has no allocation;
    # (d) a second endpoint claiming a healthy workload's address.
    leaked = add(etcd, "n1", "leak1")
    gone = add(etcd, "gone", "g1")
    ghost_ip = netaddr.IPAddress("10.65.250.250")
    assert str(ghost_ip) not in allocated(ds)
    write_endpoint(ds, "n2", "ghost", f"{ghost_ip}/32")
    write_endpoint(ds, "n2", "dup", healthy["a"])
    report_path = tmp_path / "report.json"

    text = run(ipam.check, ds, report_path=str(report_path))
    assert line_with(text, "IPAM blocks record") == "IPAM blocks record 7 allocations."
    assert line_with(text, "Found 6 workload IPs.") and line_with(text, "Workloads and nodes are using 5 IPs.")
    assert line_with(text, "Found 2 IPs that are allocated")
    assert line_with(text, "Found 1 in-use IPs that are in active IP pools but have no corresponding")
    assert line_with(text, "Found 0 in-use IPs that are not in active IP pools.")
    assert line_with(text, "Found 1 in-use IPs that are claimed by more than one")
    assert line_with(text, "Found 0 handles with no matching IPs (and 7 handles with matches).")
    assert line_with(text, "Found 1 IPAM blocks affine to nodes that no longer exist.")
    assert text.splitlines()[-2:] == ["Check complete; found 5 problems.", f"Report written to {report_path}."]

    report = json.loads(report_path.read_text())
    assert report["formatVersion"] == 1 and report["problems"] == 5
    assert {(a["ip"], a["handle"], a["block"], a["node"]) for a in report["leakedAllocations"]} == {
        (str(leaked.ip), "net1.leak1", str(leaked.cidr), "n1"), (str(gone.ip), "net1.g1", str(gone.cidr), "gone")}
    assert report["orphanBlocks"] == [{"cidr": str(gone.cidr), "node": "gone", "inUse": 1}]
    assert report["inUseButNotAllocated"] == [{"ip": str(ghost_ip), "owners": ["Workload(default/n2-cni-ghost-eth0)"]}]
    assert report["multipleOwners"][0]["ip"] == str(healthy["a"].ip)

    healthy_before = {k: stored(ds, k).mod_revision for k in endpoint_keys.values()}
    text = run(ipam.release, ds, from_report=str(report_path))
    assert "Releasing 2 old IPs...\nReleased 2 IPs successfully\n" in text
    assert f"  Released block {gone.cidr} of node gone\n" in text
    after = allocated(ds)
    assert str(leaked.ip) not in after and str(gone.ip) not in after
    assert ds.get(keys.handle("net1.leak1")) is None and ds.get(keys.handle("net1.g1")) is None
    assert ds.get(keys.block(gone.cidr)) is None and ds.list(keys.affinity_prefix("gone", 4)) == []
    # The healthy allocations, their handles and their endpoints are untouched.
    assert {after[str(a.ip)] for a in healthy.values()} == {f"net1.{cid}" for cid in healthy}
    assert after[str(tunnel.ip)] == "ipip-tunnel-addr-n1"
    assert all(ds.get(keys.handle(f"net1.{cid}")) for cid in healthy)
    assert {k: stored(ds, k).mod_revision for k in endpoint_keys.values()} == healthy_before

    # What release cannot fix (the endpoints themselves) is still reported ...
    assert run(ipam.check, ds).splitlines()[-1] == "Check complete; found 2 problems."
    # ... until those endpoints are dealt with.
    for name in ("n2-cni-ghost-eth0", "n2-cni-dup-eth0"):
        key = workload_endpoint_key("default", name)
        kv = ds.get(key)
        assert kv is not None and ds.delete(key, kv.mod_revision)
    assert run(ipam.check, ds).splitlines()[-1] == "Check complete; found 0 problems."


@pytest.mark.etcd
def test_release_from_a_stale_report_leaves_addresses_that_are_used_again(
        etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    ds = etcd_store
    create_pool(ds, "p", POOL)
    register_node(ds, "n1")
    adopted, reassigned, still_leaked = (add(etcd, "n1", cid) for cid in ("c1", "c2", "c3"))
    report_path = tmp_path / "report.json"
    run(ipam.check, ds, report_path=str(report_path))
    assert len(json.loads(report_path.read_text())["leakedAllocations"]) == 3

    # Since the report: c1's address got its endpoint (a slow ADD finishing); c2's address was
    # released and handed to another container, which has no endpoint yet either.
    write_endpoint(ds, "n1", "c1", adopted)
    assert "Successfully released" in run(ipam.release, ds, ips=[str(reassigned.ip)])
    assert add(etcd, "n1", "c4", f"IP={reassigned.ip}").ip == reassigned.ip

    text = run(ipam.release, ds, from_report=str(report_path))
    assert "Releasing 2 old IPs...\nReleased 1 IPs successfully\n" in text
    assert "1 addresses marked as leaked in the report had already been cleaned up (or were assigned again).\n" in text
    assert f"  {adopted.ip} (Workload(default/n1-cni-c1-eth0))\n" in text
    after = allocated(ds)
    assert after == {str(adopted.ip): "net1.c1", str(reassigned.ip): "net1.c4"}
    assert str(still_leaked.ip) not in after and ds.get(keys.handle("net1.c3")) is None


@pytest.mark.etcd
def test_orphan_block_still_in_use_is_kept_and_leaked_handles_are_deleted(
        etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    ds = etcd_store
    create_pool(ds, "p", POOL)
    register_node(ds, "n1")
    used, leaked = add(etcd, "gone", "g1"), add(etcd, "gone", "g2")
    write_endpoint(ds, "gone", "g1", used)  # the endpoint outlived its node
    for handle in ("empty1", "empty2"):  # handle records with no address (a crashed tool's leftovers)
        assert ds.create(keys.handle(handle), json.dumps({"handleID": handle, "block": {}, "deleted": False}))
    report_path = tmp_path / "r.json"
    text = run(ipam.check, ds, report_path=str(report_path))
    assert line_with(text, "Found 2 handles with no matching IPs (and 2 handles with matches).")
    assert text.splitlines()[-2] == "Check complete; found 4 problems."  # 1 leaked IP, 2 handles, 1 block

    kv = ds.get(keys.handle("empty2"))
    assert kv is not None and ds.update(kv.key, kv.value, kv.mod_revision)  # changed since the report

    text = run(ipam.release, ds, from_report=str(report_path))
    assert "Released 1 IPs successfully\n" in text
    assert "Deleting 2 handles...\nReleased 1 handles; 1 skipped; 0 errors.\n" in text
    assert f"  Kept block {used.cidr} of node gone: it still holds 1 addresses in use\n" in text
    assert allocated(ds) == {str(used.ip): "net1.g1"} and str(leaked.ip) not in allocated(ds)
    assert ds.get(keys.handle("empty1")) is None and ds.get(keys.handle("empty2")) is not None
    assert ds.get(keys.block(used.cidr)) is not None


@pytest.mark.etcd
def test_release_from_a_malformed_report_names_the_file(etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    before = dump(etcd_store)
    cases = {"missing.json": None, "garbage.json": "{not json", "other.json": json.dumps({"kind": "Pod"}),
             "future.json": json.dumps({"kind": "IPAMCheckReport", "formatVersion": 7})}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(CtlError, match=f"report {path}"):
            ipam.release(etcd_store, io.StringIO(), from_report=str(path))
    assert dump(etcd_store) == before


# ------------------------------------------------------------------ release --ip

@pytest.mark.etcd
def test_release_ip_allocated_and_not_allocated(etcd: str, etcd_store: EtcdDatastore) -> None:
    ds = etcd_store
    create_pool(ds, "p", POOL)
    first, second, kept = (add(etcd, "n1", cid) for cid in ("c1", "c2", "c3"))

    assert run(ipam.release, ds, ips=[str(first.ip)]) == f"Successfully released IP address {first.ip}\n"
    assert str(first.ip) not in allocated(ds) and ds.get(keys.handle("net1.c1")) is None
    assert AllocationBlock.from_json(stored(ds, keys.block(first.cidr)).value).affinity == "host:n1"

    before = dump(ds)
    for bad in ([str(first.ip)], ["10.99.0.1"]):  # freed in its block; in no block at all
        with pytest.raises(CtlError, match=f"IP address {bad[0]} is not assigned"):
            ipam.release(ds, io.StringIO(), ips=bad)
    with pytest.raises(CtlError, match="invalid IP address 'nonsense'"):
        ipam.release(ds, io.StringIO(), ips=[str(second.ip), "nonsense"])  # validated before releasing
    assert dump(ds) == before

    out = io.StringIO()
    with pytest.raises(CtlError, match=f"IP address {first.ip} is not assigned"):
        ipam.release(ds, out, ips=[str(second.ip), str(first.ip)])
    assert out.getvalue() == f"Successfully released IP address {second.ip}\n"
    assert allocated(ds) == {str(kept.ip): "net1.c3"}
    with pytest.raises(CtlError, match="either --ip or --from-report"):
        ipam.release(ds, io.StringIO(), ips=[str(kept.ip)], from_report="r.json")


# ------------------------------------------------------------------ configure

@pytest.mark.etcd
def test_configure(etcd_store: EtcdDatastore) -> None:
    ds = etcd_store
    assert run(ipam.configure, ds, strict_affinity=True) == "Successfully set StrictAffinity to: true\n"
    assert run(ipam.configure, ds, max_blocks_per_host=4) == "Successfully set MaxBlocksPerHost to: 4\n"
    assert run(ipam.configure, ds, strict_affinity=False) == "Successfully set StrictAffinity to: false\n"
    config = json.loads(stored(ds, keys.IPAM_CONFIG).value)
    assert (config["strict_affinity"], config["maxBlocksPerHost"], config["auto_allocate_blocks"]) == (False, 4, True)
    before = dump(ds)
    with pytest.raises(CtlError, match="at least one configuration option"):
        ipam.configure(ds, io.StringIO())
    with pytest.raises(CtlError, match="max-blocks-per-host"):
        ipam.configure(ds, io.StringIO(), max_blocks_per_host=-1)
    assert dump(ds) == before
