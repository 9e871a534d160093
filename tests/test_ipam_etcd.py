"""calico-ipam executed as a runtime would, against a real etcd: allocation behaviour and etcd layout."""

from __future__ import annotations

import json
from typing import Any

import netaddr
import pytest

from cni_calico.allocation.block import AllocationBlock
from cni_calico.allocation.config import set_ipam_config
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.model import keys
from cni_calico.model.keys import node_key
from cni_calico.model.v3 import Node, ObjectMeta, to_json

from .conftest import run_cni

pytestmark = pytest.mark.etcd


def conf(etcd: str, node: str = "n1", **ipam: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "net1", "type": "calico-ipam", "etcd_endpoints": etcd,
            "nodename": node, "ipam_lock_file": "", "ipam": {"type": "calico-ipam", **ipam}}


def add(config: dict[str, Any], cid: str, args: str = "") -> netaddr.IPNetwork:
    status, out, err = run_cni("calico-ipam", "ADD", config, container_id=cid, args=args)
    assert status == 0, (out, err)
    assert out is not None
    return netaddr.IPNetwork(out["ips"][0]["address"])


def blocks(ds: EtcdDatastore, version: int = 4) -> dict[str, AllocationBlock]:
    return {b.cidr: b for b in (AllocationBlock.from_json(kv.value) for kv in ds.list(keys.block_prefix(version)))}


def test_add_check_del_round_trip_in_calico_layout(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx"
    address = add(conf(etcd), "abc123", args)
    assert address.prefixlen == 26 and address in netaddr.IPNetwork("10.100.0.0/16")
    block_cidr = address.cidr

    # Block, confirmed affinity and handle, under Calico's keys.
    block = AllocationBlock.from_json(etcd_store.get(keys.block(block_cidr)).value)
    assert block.affinity == "host:n1"
    assert block.addresses_of("net1.abc123") == [address.ip]
    (_, attr), = block.allocated()
    assert attr.secondary is not None
    assert {k: attr.secondary[k] for k in ("node", "namespace", "pod")} == \
        {"node": "n1", "namespace": "default", "pod": "nginx"}
    assert "timestamp" in attr.secondary
    affinity_key = f"/calico/ipam/v2/host/n1/ipv4/block/{block_cidr.network}-26"
    assert json.loads(etcd_store.get(affinity_key).value)["state"] == "confirmed"
    handle = json.loads(etcd_store.get("/calico/ipam/v2/handle/net1.abc123").value)
    assert handle["block"] == {str(block_cidr): 1}

    status, out, err = run_cni("calico-ipam", "CHECK", conf(etcd), container_id="abc123")
    assert (status, out) == (0, None), err

    status, out, err = run_cni("calico-ipam", "DEL", conf(etcd), container_id="abc123")
    assert (status, out) == (0, None), err
    assert etcd_store.get("/calico/ipam/v2/handle/net1.abc123") is None
    assert blocks(etcd_store)[str(block_cidr)].in_use == 0
    # The block stays affine to the node (it keeps routing it), ready for the next pod.
    assert json.loads(etcd_store.get(affinity_key).value)["state"] == "confirmed"

    status, out, _ = run_cni("calico-ipam", "CHECK", conf(etcd), container_id="abc123")
    assert status == 1 and out is not None and out["code"] == 105


def test_add_twice_with_same_handle_returns_the_same_address(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    first = add(conf(etcd), "c1")
    second = add(conf(etcd), "c1")
    assert str(first) == str(second)  # netaddr's == compares only the network
    assert sum(b.in_use for b in blocks(etcd_store).values()) == 1


def test_del_is_idempotent_and_del_of_unknown_container_succeeds(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    add(conf(etcd), "c1")
    for cid in ("c1", "c1", "never-added"):
        status, out, err = run_cni("calico-ipam", "DEL", conf(etcd), container_id=cid)
        assert (status, out) == (0, None), err
    assert etcd_store.list(keys.HANDLE_PREFIX) == []


def test_released_address_is_not_reused_at_once(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    first = add(conf(etcd), "c1")
    run_cni("calico-ipam", "DEL", conf(etcd), container_id="c1")
    second = add(conf(etcd), "c2")
    assert second.cidr == first.cidr and second.ip != first.ip


def test_result_in_every_cni_version(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    for n, version in enumerate(("0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")):
        status, out, err = run_cni("calico-ipam", "ADD", {**conf(etcd), "cniVersion": version}, container_id=f"v{n}")
        assert status == 0, err
        assert out is not None and out["cniVersion"] == version
        if version < "0.3.0":
            assert netaddr.IPNetwork(out["ip4"]["ip"]).prefixlen == 26
        elif version < "1.0.0":
            assert out["ips"][0]["version"] == "4"
        else:
            assert "version" not in out["ips"][0]


def test_requested_ip_free_taken_and_outside(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    got = add(conf(etcd), "c1", "IP=10.100.7.9")
    assert str(got) == "10.100.7.9/32"
    # The block of a requested address is claimed for the node, two-phase, like any other.
    assert blocks(etcd_store)["10.100.7.0/26"].affinity == "host:n1"

    status, out, _ = run_cni("calico-ipam", "ADD", conf(etcd), container_id="c2", args="IP=10.100.7.9")
    assert status == 1 and out is not None and out["code"] == 103
    assert etcd_store.get(keys.handle("net1.c2")) is None

    status, out, _ = run_cni("calico-ipam", "ADD", conf(etcd), container_id="c3", args="IP=172.31.0.1")
    assert status == 1 and out is not None and out["code"] == 104


@pytest.mark.parametrize("wanted", ["second", "10.200.0.0/16"])
def test_pool_selection_by_name_and_by_cidr(etcd: str, etcd_store: EtcdDatastore, wanted: str) -> None:
    create_pool(etcd_store, "first", "10.100.0.0/16")
    create_pool(etcd_store, "second", "10.200.0.0/16")
    assert add(conf(etcd, ipv4_pools=[wanted]), "c1") in netaddr.IPNetwork("10.200.0.0/16")
    # Without a choice, a node with no block yet claims from the pools in address order ...
    assert add(conf(etcd, node="n2"), "c2") in netaddr.IPNetwork("10.100.0.0/16")
    # ... and a node uses the blocks it already holds first, whichever pool they are in.
    assert add(conf(etcd), "c3") in netaddr.IPNetwork("10.200.0.0/16")


def test_disabled_pool_and_node_selector(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "off", "10.100.0.0/16", disabled=True)
    create_pool(etcd_store, "zone-a", "10.200.0.0/16", nodeSelector="zone == 'a'")
    node = Node(metadata=ObjectMeta(name="n1", labels={"zone": "a"}))
    etcd_store.create(node_key("n1"), to_json(node))
    assert add(conf(etcd, node="n1"), "c1") in netaddr.IPNetwork("10.200.0.0/16")
    status, out, _ = run_cni("calico-ipam", "ADD", conf(etcd, node="n2"), container_id="c2")
    assert status == 1 and out is not None and out["code"] == 101


def test_nodes_get_different_blocks_and_borrow_when_at_their_limit(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "small", "10.50.0.0/24", blockSize=30)
    set_ipam_config(etcd_store, maxBlocksPerHost=1)
    n2_address = add(conf(etcd, node="n2"), "n2-c1")
    n1_addresses = [add(conf(etcd, node="n1"), f"n1-c{i}") for i in range(4)]
    n1_block = n1_addresses[0].cidr
    assert {a.cidr for a in n1_addresses} == {n1_block} and n1_block != n2_address.cidr

    borrowed = add(conf(etcd, node="n1"), "n1-c4")  # n1 may hold no second block: it borrows
    assert borrowed.cidr == n2_address.cidr
    blk = blocks(etcd_store)[str(n2_address.cidr)]
    assert blk.affinity == "host:n2"  # borrowing does not move the block
    attrs = {str(ip): a.secondary["node"] for ip, a in blk.allocated() if a.secondary}
    assert attrs[str(borrowed.ip)] == "n1"
    assert len(etcd_store.list(keys.affinity_prefix("n1", 4))) == 1


def test_strict_affinity_refuses_to_borrow(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "small", "10.50.0.0/29", blockSize=30)  # two blocks of 4
    set_ipam_config(etcd_store, strictAffinity=True, maxBlocksPerHost=1)
    add(conf(etcd, node="n2"), "n2-c1")
    for i in range(4):
        add(conf(etcd, node="n1"), f"n1-c{i}")
    status, out, _ = run_cni("calico-ipam", "ADD", conf(etcd, node="n1"), container_id="n1-c4")
    assert status == 1 and out is not None and out["code"] == 102
    assert "strict affinity" in out.get("details", "")


def test_pool_exhausted_is_a_clear_error_and_leaves_nothing(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "tiny", "10.60.0.0/30", blockSize=30)
    for i in range(4):
        add(conf(etcd), f"c{i}")
    before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
    status, out, err = run_cni("calico-ipam", "ADD", conf(etcd), container_id="c4")
    assert status == 1 and out is not None and out["code"] == 102, err
    assert "tiny" in out["msg"] and "Traceback" not in err
    assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before


def test_dual_stack_assigns_both_or_nothing(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "v4", "10.100.0.0/16")
    status, out, _ = run_cni("calico-ipam", "ADD", conf(etcd, assign_ipv6="true"), container_id="ds1")
    assert status == 1 and out is not None and out["code"] == 101  # no IPv6 pool
    assert etcd_store.get(keys.handle("net1.ds1")) is None
    assert all(b.in_use == 0 for b in blocks(etcd_store).values())  # the IPv4 address was given back

    create_pool(etcd_store, "v6", "fd80:24e2:f998:72d6::/64")
    status, out, err = run_cni("calico-ipam", "ADD", conf(etcd, assign_ipv6="true"), container_id="ds2")
    assert status == 0, err
    assert out is not None
    got = sorted((netaddr.IPNetwork(ip["address"]) for ip in out["ips"]), key=lambda n: n.version)
    assert [(n.version, n.prefixlen) for n in got] == [(4, 26), (6, 122)]
    assert got[1] in netaddr.IPNetwork("fd80:24e2:f998:72d6::/64")
    assert blocks(etcd_store, 6)[str(got[1].cidr)].affinity == "host:n1"
    run_cni("calico-ipam", "DEL", conf(etcd, assign_ipv6="true"), container_id="ds2")
    assert etcd_store.list(keys.HANDLE_PREFIX) == []


def test_interrupted_claims_are_recovered(etcd: str, etcd_store: EtcdDatastore) -> None:
    from cni_calico.allocation import pools as pool_logic
    from cni_calico.model.v3 import IPPool

    pool = create_pool(etcd_store, "p1", "10.100.0.0/16")
    first: IPPool = pool
    own, other = list(pool_logic.candidate_blocks(first, "n1"))[:2]
    # A claim of n1 that crashed after phase 1 (pending, no block) ...
    etcd_store.create(keys.affinity("n1", own), json.dumps({"state": "pending"}))
    # ... and a stale pending claim of n1 on a block n2 owns.
    etcd_store.create(keys.affinity("n1", other), json.dumps({"state": "pending"}))
    etcd_store.create(keys.block(other), AllocationBlock.new(other, "n2").to_json())

    address = add(conf(etcd), "c1")
    assert address.cidr == own  # the half-done claim was completed, not leaked
    assert json.loads(etcd_store.get(keys.affinity("n1", own)).value)["state"] == "confirmed"
    add(conf(etcd), "c2")  # the next ADD walks the affinities again and drops the stale one
    assert etcd_store.get(keys.affinity("n1", other)) is None


def test_gc_releases_only_this_nodes_vanished_attachments(etcd: str, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    for cid in ("keep", "gone1", "gone2"):
        add(conf(etcd), cid)
    add(conf(etcd, node="n2"), "other-node")
    gc_conf = {**conf(etcd), "cniVersion": "1.1.0",
               "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    status, out, err = run_cni("calico-ipam", "GC", gc_conf)
    assert (status, out) == (0, None), err
    handles = sorted(kv.key.rsplit("/", 1)[1] for kv in etcd_store.list(keys.HANDLE_PREFIX))
    assert handles == ["net1.keep", "net1.other-node"]


def test_etcd_unreachable_mid_test_is_code_11_and_writes_nothing(etcd: str, etcd_store: EtcdDatastore,
                                                                 etcd_server: Any) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    add(conf(etcd), "c1")
    before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
    etcd_server.pause()
    try:
        status, out, err = run_cni("calico-ipam", "ADD", conf(etcd), container_id="c2")
    finally:
        etcd_server.resume()
    assert status == 1 and out is not None and out["code"] == 11, err
    assert "Traceback" not in err
    assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before
