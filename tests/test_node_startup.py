"""Agent start-up against real etcd: Node registration, ClusterInformation, default pool, IPIP address."""

from __future__ import annotations

import json
import threading

import netaddr
import pytest

from cni_calico.allocation.client import IpamClient
from cni_calico.allocation.config import set_ipam_config
from cni_calico.datastore import EtcdDatastore
from cni_calico.model import keys
from cni_calico.model.keys import cluster_information_key, node_key, pool_key
from cni_calico.model.v3 import ClusterInformation, IPPool, Node, to_json
from cni_calico.node import startup
from cni_calico.node.config import load
from cni_calico.node.routing import ipip

pytestmark = pytest.mark.etcd


def test_register_creates_then_updates_keeping_other_fields(etcd_store: EtcdDatastore) -> None:
    first = startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None)
    assert first.spec.bgp is not None and first.spec.bgp.ipv4Address == "192.0.2.11/24"
    kv = etcd_store.get(node_key("n1"))
    stored = Node.model_validate_json(kv.value)
    stored.metadata.labels["rack"] = "r1"  # written by someone else meanwhile
    etcd_store.update(kv.key, to_json(stored), kv.mod_revision)
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.21/24"), 65001)
    again = Node.model_validate_json(etcd_store.get(node_key("n1")).value)
    assert again.metadata.labels == {"rack": "r1"}
    assert again.spec.bgp is not None and (again.spec.bgp.ipv4Address, again.spec.bgp.asNumber) == \
        ("192.0.2.21/24", 65001)
    revision = etcd_store.get(node_key("n1")).mod_revision
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.21/24"), 65001)
    assert etcd_store.get(node_key("n1")).mod_revision == revision  # nothing changed, nothing written


def test_registration_keeps_the_fields_it_does_not_model(etcd_store: EtcdDatastore) -> None:
    """A Node as a newer Calico stores it: the read-modify-write of registration changes the BGP
    address and keeps every field it has no model for, at every level."""
    written_elsewhere = {
        "kind": "Node", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "n1", "uid": "u-1", "futureMeta": {"a": 1}},
        "spec": {"bgp": {"ipv4Address": "192.0.2.11/24", "futureBGP": "x"},
                 "orchRefs": [{"orchestrator": "k8s", "nodeName": "n1", "futureRef": True}],
                 "wireguard": {"interfaceIPv4Address": "10.0.0.1"}},
        "status": {"podCIDRs": ["10.244.0.0/24"]},
    }
    assert etcd_store.create(node_key("n1"), json.dumps(written_elsewhere))
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.21/24"), 65001)
    stored = json.loads(etcd_store.get(node_key("n1")).value)
    assert stored["spec"]["bgp"] == {"ipv4Address": "192.0.2.21/24", "asNumber": 65001, "futureBGP": "x"}
    assert stored["metadata"]["futureMeta"] == {"a": 1} and stored["metadata"]["uid"] == "u-1"
    assert stored["spec"]["orchRefs"] == written_elsewhere["spec"]["orchRefs"]
    assert stored["spec"]["wireguard"] == {"interfaceIPv4Address": "10.0.0.1"}
    assert stored["status"] == {"podCIDRs": ["10.244.0.0/24"]}


def test_ipam_configure_keeps_the_fields_it_does_not_model(etcd_store: EtcdDatastore) -> None:
    assert etcd_store.create(keys.IPAM_CONFIG, json.dumps({"strict_affinity": False, "future_setting": 7}))
    config = set_ipam_config(etcd_store, strictAffinity=True)
    assert config.strictAffinity is True and config.autoAllocateBlocks is True
    assert json.loads(etcd_store.get(keys.IPAM_CONFIG).value) == {
        "strict_affinity": True, "auto_allocate_blocks": True, "maxBlocksPerHost": 0, "future_setting": 7}


def test_an_address_another_node_holds_is_refused(etcd_store: EtcdDatastore) -> None:
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None)
    with pytest.raises(startup.StartupError, match="already in use by node n1"):
        startup.register_node(etcd_store, "n2", netaddr.IPNetwork("192.0.2.11/24"), None)
    assert etcd_store.get(node_key("n2")) is None


@pytest.mark.parametrize("name", ["Upper", "under_score", "-dash", "a" * 254])
def test_invalid_node_names_are_refused(name: str) -> None:
    with pytest.raises(startup.StartupError, match="not a valid DNS subdomain"):
        startup.node_name(load({"NODENAME": name}))


def test_cluster_information_is_created_once(etcd_store: EtcdDatastore) -> None:
    first = startup.ensure_cluster_information(etcd_store)
    second = startup.ensure_cluster_information(etcd_store)
    assert first.spec.clusterGUID == second.spec.clusterGUID and second.spec.datastoreReady is True
    stored = ClusterInformation.model_validate_json(etcd_store.get(cluster_information_key()).value)
    assert stored.spec.clusterGUID == first.spec.clusterGUID


def test_default_pool_from_calico_env_and_only_once_under_a_race(etcd: str) -> None:
    config = load({"CALICO_IPV4POOL_CIDR": "10.77.0.0/16", "CALICO_IPV4POOL_BLOCK_SIZE": "28",
                   "CALICO_IPV4POOL_IPIP": "Always", "CALICO_IPV4POOL_NAT_OUTGOING": "false"})
    created: list[object] = []

    def one_agent() -> None:
        with EtcdDatastore(etcd) as ds:
            created.append(startup.ensure_default_pool(ds, config))

    threads = [threading.Thread(target=one_agent) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for c in created if c is not None) == 1
    with EtcdDatastore(etcd) as ds:
        pools = [IPPool.model_validate_json(kv.value) for kv in ds.list(keys.resource_prefix("ippools"))]
    assert [(p.name, str(p.network), p.spec.blockSize, p.spec.ipipMode, p.spec.natOutgoing) for p in pools] == \
        [("default-ipv4-ippool", "10.77.0.0/16", 28, "Always", False)]


def test_no_default_pool_when_one_exists_or_when_asked(etcd_store: EtcdDatastore) -> None:
    assert startup.ensure_default_pool(etcd_store, load({"NO_DEFAULT_POOLS": "true"})) is None
    assert etcd_store.list(keys.resource_prefix("ippools")) == []
    from cni_calico.lab import admin
    admin.create_pool(etcd_store, "mine", "10.78.0.0/16")
    assert startup.ensure_default_pool(etcd_store, load({})) is None
    assert [kv.key for kv in etcd_store.list(keys.resource_prefix("ippools"))] == [pool_key("mine")]


def test_bad_default_pool_settings_are_one_line_errors(etcd_store: EtcdDatastore) -> None:
    with pytest.raises(startup.StartupError, match="CALICO_IPV4POOL"):
        startup.ensure_default_pool(etcd_store, load({"CALICO_IPV4POOL_CIDR": "10.0.0.0/8",
                                                      "CALICO_IPV4POOL_BLOCK_SIZE": "7"}))
    assert etcd_store.list(keys.resource_prefix("ippools")) == []


def test_ipip_tunnel_address_is_allocated_recorded_and_released(etcd_store: EtcdDatastore) -> None:
    from cni_calico.lab import admin
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None)
    plain = admin.create_pool(etcd_store, "plain", "10.80.0.0/16")
    assert ipip.ensure_tunnel_address(etcd_store, "n1", [plain], {}) is None
    tunnel = admin.create_pool(etcd_store, "tun", "10.81.0.0/16", ipipMode="Always")
    address = ipip.ensure_tunnel_address(etcd_store, "n1", [plain, tunnel], {})
    assert address is not None and address in tunnel.network
    assert ipip.ensure_tunnel_address(etcd_store, "n1", [plain, tunnel], {}) == address  # stable
    node = Node.model_validate_json(etcd_store.get(node_key("n1")).value)
    assert node.spec.bgp is not None and node.spec.bgp.ipv4IPIPTunnelAddr == str(address)
    client = IpamClient(etcd_store, "n1")
    assert [a.ip for a in client.addresses_of(ipip.handle_id("n1"))] == [address]
    assert ipip.ensure_tunnel_address(etcd_store, "n1", [plain], {}) is None  # no IPIP pool left
    assert client.addresses_of(ipip.handle_id("n1")) == []
    node = Node.model_validate_json(etcd_store.get(node_key("n1")).value)
    assert node.spec.bgp is not None and node.spec.bgp.ipv4IPIPTunnelAddr is None


def test_release_empty_blocks_keeps_blocks_in_use(etcd_store: EtcdDatastore) -> None:
    from cni_calico.allocation.client import Request
    from cni_calico.lab import admin
    admin.create_pool(etcd_store, "p", "10.82.0.0/16", blockSize=30)
    client = IpamClient(etcd_store, "n1")
    kept = client.auto_assign(Request("keep", {}, num_v4=1))
    client.auto_assign(Request("drop", {}, num_v4=4))  # fills the rest of block 1 and opens block 2
    assert len(etcd_store.list(keys.affinity_prefix("n1", 4))) == 2
    client.release_handle("drop")
    released = client.release_empty_blocks()
    assert len(released) == 1 and kept[0].ip not in released[0]
    assert [kv.key for kv in etcd_store.list(keys.affinity_prefix("n1", 4))] == \
        [keys.affinity("n1", netaddr.IPNetwork(f"{kept[0].ip}/30"))]
    assert etcd_store.get(keys.block(released[0])) is None
    assert client.release_empty_blocks() == []


def test_the_kubernetes_node_reference_is_written_as_calico_node_writes_it(etcd_store: EtcdDatastore) -> None:
    assert load({"CALICO_K8S_NODE_REF": "worker-1.example"}).k8s_node_ref == "worker-1.example"
    assert load({}).k8s_node_ref is None
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None)
    assert "orchRefs" not in json.loads(etcd_store.get(node_key("n1")).value)["spec"]  # unset: none written
    kv = etcd_store.get(node_key("n1"))
    stored = json.loads(kv.value)
    stored["metadata"]["labels"] = {"rack": "r1"}  # written by someone else meanwhile
    stored["spec"]["orchRefs"] = [{"nodeName": "old-name", "orchestrator": "k8s"}, {"orchestrator": "mesos"}]
    stored["spec"]["custom"] = {"kept": True}
    etcd_store.update(kv.key, json.dumps(stored), kv.mod_revision)
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None, k8s_node_ref="worker-1")
    again = json.loads(etcd_store.get(node_key("n1")).value)
    # Calico sets the list to the one reference; every other field stays as stored.
    assert again["spec"]["orchRefs"] == [{"nodeName": "worker-1", "orchestrator": "k8s"}]
    assert again["metadata"]["labels"] == {"rack": "r1"} and again["spec"]["custom"] == {"kept": True}
    assert again["spec"]["bgp"] == {"ipv4Address": "192.0.2.11/24"}
    revision = etcd_store.get(node_key("n1")).mod_revision
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None, k8s_node_ref="worker-1")
    startup.register_node(etcd_store, "n1", netaddr.IPNetwork("192.0.2.11/24"), None)  # unset: left as it is
    assert etcd_store.get(node_key("n1")).mod_revision == revision
