"""Two networks on one host are isolated from each other by their profiles, proved with real packets.

One simulated host runs calico-node (its nftables policy, BIRD). Plain CNI containers (no
K8S_POD_* args) join network `net-a` or `net-b`; the plugin creates each network's profile as
Calico does (labelsToApply `<network>`, ingress only from `has(<network>)`). Every test runs the
plugin standalone and through calico-node's fast path. Each test removes its pods and the two
profiles, so the next one creates them again.
"""

from __future__ import annotations

import itertools
import json
from typing import Iterator

import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.cluster import Cluster, Host
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.lab.hosts import NETNS_DIR
from cni_calico.model.keys import profile_key
from cni_calico.model.v3 import allow_all_profile, to_json

from .conftest import pooled_cluster
from .packets import eventually

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]

POOL = "10.67.0.0/16"
NETWORKS = ("net-a", "net-b")
PATHS = [pytest.param("off", id="standalone"), pytest.param("only", id="fast-path")]
_TESTS = itertools.count(1)  # pod namespaces outlive their test (until the module's end): new names each test


class Host1:
    """The one host, with the pods a test made (DEL'd at its end)."""

    def __init__(self, cluster: Cluster, ds: EtcdDatastore, fast_path: str) -> None:
        self.cluster, self.ds, self.fast_path = cluster, ds, fast_path
        self.tag = f"{fast_path}{next(_TESTS)}"
        self.host: Host = cluster.hosts[0]
        self.ips: dict[str, str] = {}
        self.networks: dict[str, str] = {}

    def add(self, pod: str, network: str) -> str:
        name = f"{pod}-{self.tag}"
        self.networks[pod] = network
        self.ips[pod] = self.cluster.add_pod(self.host, name, conf_extra=self.conf(network))
        return self.ips[pod]

    def conf(self, network: str) -> dict[str, str]:
        return {"name": network, "fast_path": self.fast_path}

    def ping(self, src: str, dst: str) -> bool:
        return self.cluster.ping(self.host, f"{src}-{self.tag}", self.ips[dst])

    def reaches(self, src: str, dst: str, within: float = 10) -> bool:
        return eventually(lambda: self.ping(src, dst), True, within=within) is not None

    def profile(self, network: str) -> dict:
        kv = self.ds.get(profile_key(network))
        assert kv is not None, f"no profile {network}"
        return json.loads(kv.value)

    def remove_all(self) -> None:
        for pod, network in self.networks.items():
            name = f"{pod}-{self.tag}"
            netns = f"{NETNS_DIR}/{self.cluster.pod_netns(self.host, name)}"
            self.cluster.cni(self.host, "DEL", self.host.pods[name], netns, conf_extra=self.conf(network))
        for network in NETWORKS:
            kv = self.ds.get(profile_key(network))
            if kv is not None:
                self.ds.delete(kv.key, kv.mod_revision)


@pytest.fixture(scope="module")
def one_host(etcd_server: PrivateEtcd) -> Iterator[tuple[Cluster, EtcdDatastore]]:
    with pooled_cluster(etcd_server, "isolation-pool", POOL, hosts=1) as lab:
        yield lab


@pytest.fixture(params=PATHS)
def host1(request: pytest.FixtureRequest, one_host: tuple[Cluster, EtcdDatastore]) -> Iterator[Host1]:
    lab = Host1(*one_host, fast_path=request.param)
    try:
        yield lab
    finally:
        lab.remove_all()


def test_each_network_reaches_itself_and_not_the_other(host1: Host1) -> None:
    for pod, network in (("a1", "net-a"), ("a2", "net-a"), ("b1", "net-b"), ("b2", "net-b")):
        host1.add(pod, network)
    assert host1.profile("net-a")["spec"] == {
        "labelsToApply": {"net-a": ""}, "ingress": [{"action": "Allow", "source": {"selector": "has(net-a)"}}],
        "egress": [{"action": "Allow"}]}
    # Both networks' endpoints are in force once each reaches its own (so a failure below is policy)
    assert host1.reaches("a1", "a2") and host1.reaches("a2", "a1")
    assert host1.reaches("b1", "b2") and host1.reaches("b2", "b1")
    assert not host1.ping("a1", "b1")
    assert not host1.ping("b1", "a1")
    assert not host1.ping("a2", "b2")


def test_an_old_allow_all_profile_is_upgraded_by_the_next_add_and_then_isolates(host1: Host1) -> None:
    host1.add("a1", "net-a")
    host1.add("b1", "net-b")
    # net-a's profile as versions before network isolation wrote it: net-b gets in (which also
    # shows both endpoints in force, so the failure below is policy)
    kv = host1.ds.get(profile_key("net-a"))
    assert host1.ds.update(kv.key, to_json(allow_all_profile("net-a")), kv.mod_revision)
    assert host1.reaches("b1", "a1"), "the old profile did not let net-b in"
    host1.add("a2", "net-a")  # the next ADD on the network upgrades its profile
    assert host1.profile("net-a")["spec"]["labelsToApply"] == {"net-a": ""}
    assert eventually(lambda: host1.ping("b1", "a1"), False, within=10) is not None, "net-b still gets in"
    assert host1.reaches("a2", "a1") and host1.reaches("a1", "a2")
    assert not host1.ping("b1", "a2")
