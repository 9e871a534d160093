"""calico-node tells an unreachable etcd apart from every other failure of a sync.

An IPIP pool that this node may not use, or that is full, is a problem of IPIP's: routing
goes on being derived and applied, readiness names the problem, and the datastore error
counter stays where it was (it counts only failures to reach etcd).
"""

from __future__ import annotations

import re
import time
from typing import Callable, Iterator

import netaddr
import pytest

from cni_calico.allocation.client import IpamClient, Request
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import admin
from cni_calico.lab.cluster import Cluster
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.model import keys

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]


@pytest.fixture
def cluster(etcd_server: PrivateEtcd, etcd: str) -> Iterator[Cluster]:
    with Cluster(etcd_server.port, hosts=1) as lab:
        yield lab


def _datastore_errors(cluster: Cluster) -> int:
    metrics = cluster.readiness(cluster.hosts[0], "/metrics")[1]
    found = re.search(r"^calico_node_datastore_errors_total (\d+)", metrics, re.M)
    return int(found.group(1)) if found else 0


def _wait_for(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def test_an_ipip_pool_that_does_not_select_this_node_is_not_an_etcd_failure(cluster: Cluster, etcd: str) -> None:
    host = cluster.hosts[0]
    with EtcdDatastore(etcd) as ds:
        admin.create_pool(ds, "plain", "10.65.0.0/16")
        admin.create_pool(ds, "elsewhere", "10.67.0.0/16", ipipMode="Always", nodeSelector="rack == 'b'")
    cluster.start_agent(host)  # ready: in sync, nothing wrong (no tunnel address is wanted here)
    address = cluster.add_pod(host, "p1")
    block = netaddr.IPNetwork(f"{address}/26").cidr
    config = host.run_dir / "bird.cfg"
    assert _wait_for(lambda: f"route {block} blackhole" in config.read_text()), \
        "routing was not re-rendered for the new block"
    code, body = cluster.readiness(host)
    assert code == 200, body
    assert _datastore_errors(cluster) == 0
    with EtcdDatastore(etcd) as ds:
        assert ds.get(keys.handle(f"ipip-tunnel-addr-{host.name}")) is None


def test_an_exhausted_ipip_pool_is_named_on_readiness_and_routing_carries_on(cluster: Cluster, etcd: str) -> None:
    host = cluster.hosts[0]
    with EtcdDatastore(etcd) as ds:
        admin.create_pool(ds, "plain", "10.65.0.0/16")
        admin.create_pool(ds, "tiny", "10.67.0.0/32", ipipMode="Always", blockSize=32)
        IpamClient(ds, "someone-else").auto_assign(Request("holder", {}, pools_v4=["tiny"]))
    cluster.start_agent(host, wait=False)
    assert _wait_for(lambda: "IPIP" in cluster.readiness(host)[1]), cluster.readiness(host)
    code, body = cluster.readiness(host)
    assert code == 503 and body.startswith("IPIP: no tunnel address: "), body
    assert "not in sync" not in body
    block = netaddr.IPNetwork(f"{cluster.add_pod(host, 'p1')}/26").cidr
    config = host.run_dir / "bird.cfg"
    assert _wait_for(lambda: config.exists() and f"route {block} blackhole" in config.read_text()), \
        "routing was not derived while IPIP had a problem"
    assert _datastore_errors(cluster) == 0
