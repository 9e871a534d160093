"""Three simulated hosts, each with calico-node + BIRD, in a full BGP mesh: real routes, real packets.

One lab serves the module (starting it costs seconds); the tests run in file order and each leaves
the mesh healthy for the next, except the last, which deletes a node.
"""

from __future__ import annotations

import functools
import re
import signal
import subprocess
import time
from typing import Callable, Iterator

import pytest

from cni_calico.allocation.client import IpamClient, Request
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.cluster import Cluster, Host
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.model import keys
from cni_calico.model.keys import node_key

from .conftest import pooled_cluster

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]

POOL = "10.65.0.0/16"
Lab = tuple[Cluster, EtcdDatastore, dict[str, str]]  # the cluster, its datastore, each host's pod address


def eventually(what: str, check: Callable[[], bool], timeout: float = 30) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def established_peers(cluster: Cluster, host: Host) -> list[str]:
    out = cluster.calicoctl(host, "node", "status").stdout
    return sorted(m.group(1)
                  for m in re.finditer(r"\| (\S+)\s+\| node-to-node mesh \| up\s+\| \S+\s+\| Established", out))


def peered_with(cluster: Cluster, host: Host, wanted: list[str]) -> bool:
    return established_peers(cluster, host) == wanted


def block_of(ds: EtcdDatastore, host: Host) -> list[str]:
    return sorted(str(keys.cidr_from_segment(kv.key.rsplit("/", 1)[1]))
                  for kv in ds.list(keys.affinity_prefix(host.name, 4)))


def routed_everywhere(cluster: Cluster, owner: Host, cidr: str) -> bool:
    for host in cluster.hosts:
        table = cluster.routes(host)
        want = f"blackhole {cidr} proto bird" if host is owner else f"{cidr} via {owner.ip} dev eth0 proto bird"
        if want not in table:
            return False
    return True


def unrouted_on(cluster: Cluster, host: Host, cidr: str) -> bool:
    return f"{cidr} " not in cluster.routes(host)


def routed_nowhere(cluster: Cluster, cidr: str) -> bool:
    return all(f"{cidr} " not in cluster.routes(h) for h in cluster.hosts)


@pytest.fixture(scope="module")
def lab(etcd_server: PrivateEtcd) -> Iterator[Lab]:
    with pooled_cluster(etcd_server, "lab-pool", POOL, hosts=3) as (cluster, ds):
        try:
            yield cluster, ds, {host.name: cluster.add_pod(host, "p1") for host in cluster.hosts}
        finally:
            outputs = {h.name: cluster.agent_output(h)[-3000:] for h in cluster.hosts}
            print("\n".join(f"--- {name}\n{text}" for name, text in outputs.items()))


def test_full_mesh_reaches_established_and_pods_reach_each_other(lab: Lab) -> None:
    cluster, ds, pods = lab
    for host in cluster.hosts:
        others = sorted(h.ip for h in cluster.hosts if h is not host)
        eventually(f"{host.name} Established with {others}", functools.partial(peered_with, cluster, host, others))
        assert cluster.readiness(host)[0] == 200
    for host in cluster.hosts:
        block = block_of(ds, host)
        assert len(block) == 1
        eventually(f"{block[0]} routed everywhere", functools.partial(routed_everywhere, cluster, host, block[0]))
    for src in cluster.hosts:
        for dst in cluster.hosts:
            if src is not dst:
                assert cluster.ping(src, "p1", pods[dst.name]), f"{src.name}/p1 -> {dst.name}/p1 {pods[dst.name]}"


def test_a_new_block_reaches_the_other_kernels_and_release_withdraws_it(lab: Lab) -> None:
    cluster, ds, _ = lab
    a = cluster.hosts[0]
    before = set(block_of(ds, a))
    client = IpamClient(ds, a.name)
    claimed = time.monotonic()
    client.auto_assign(Request("filler", {"node": a.name}, num_v4=16))  # more than the first /28 has left
    new = sorted(set(block_of(ds, a)) - before)
    assert len(new) == 1
    took = eventually(f"{new[0]} on every host", lambda: routed_everywhere(cluster, a, new[0]))
    print(f"block claimed on {a.name} routed on all hosts after {time.monotonic() - claimed:.2f} s (poll {took:.2f})")
    assert took < 10
    client.release_handle("filler")
    assert [str(c) for c in client.release_empty_blocks()] == new
    eventually(f"{new[0]} withdrawn everywhere", lambda: routed_nowhere(cluster, new[0]))
    assert set(block_of(ds, a)) == before  # the block with the pod stays, and its routes
    assert all(routed_everywhere(cluster, a, b) for b in before)


def test_bird_killed_is_restarted_and_routes_return(lab: Lab) -> None:
    cluster, ds, pods = lab
    b = cluster.hosts[1]
    old = cluster.bird_pid(b)
    assert old is not None
    subprocess.run(["kill", "-9", str(old)], check=True)
    eventually("a new BIRD on " + b.name, lambda: cluster.bird_pid(b) not in (None, old), timeout=10)
    others = sorted(h.ip for h in cluster.hosts if h is not b)
    eventually("sessions back", lambda: established_peers(cluster, b) == others)
    for host in cluster.hosts:
        for cidr in block_of(ds, host):
            eventually(f"{cidr} routed", functools.partial(routed_everywhere, cluster, host, cidr))
    assert cluster.ping(b, "p1", pods[cluster.hosts[0].name])
    metrics = cluster.readiness(b, "/metrics")[1]
    assert re.search(r"^calico_node_bird_restarts_total 1\.0$", metrics, re.M), metrics


def test_agent_restart_does_not_flap_routes(lab: Lab) -> None:
    cluster, ds, pods = lab
    a = cluster.hosts[0]
    watched = {h.name: subprocess.Popen(["ip", "-n", h.netns, "monitor", "route"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True) for h in cluster.hosts}
    try:
        time.sleep(0.3)  # let the monitors subscribe
        cluster.stop_agent(a)  # SIGTERM: BIRD goes down in graceful-restart mode
        assert cluster.bird_pid(a) is None
        cluster.start_agent(a)
        others = sorted(h.ip for h in cluster.hosts if h is not a)
        eventually("sessions back", lambda: established_peers(cluster, a) == others)
        for host in cluster.hosts[1:]:
            assert cluster.ping(a, "p1", pods[host.name]), f"{a.name}/p1 -> {host.name}/p1"
        time.sleep(3)  # past BIRD's kernel scan: a late flush would show now
    finally:
        for proc in watched.values():
            proc.send_signal(signal.SIGTERM)
        events = {name: proc.communicate(timeout=5)[0] for name, proc in watched.items()}
    blocks = [cidr for h in cluster.hosts for cidr in block_of(ds, h)]
    for name, text in events.items():
        deleted = [line for line in text.splitlines() if line.startswith("Deleted") and
                   any(cidr in line for cidr in blocks)]
        assert deleted == [], f"{name} lost block routes during the agent restart: {deleted}"


def test_removing_a_node_removes_its_peer_and_routes_everywhere(lab: Lab) -> None:
    cluster, ds, _ = lab
    c = cluster.hosts[2]
    c_blocks = block_of(ds, c)
    cluster.stop_agent(c, signal.SIGKILL)  # the host is gone: its agent does not say goodbye
    pid = cluster.bird_pid(c)
    if pid is not None:
        subprocess.run(["kill", "-9", str(pid)], check=True)
    kv = ds.get(node_key(c.name))
    assert kv is not None and ds.delete(kv.key, kv.mod_revision)
    survivors = [h for h in cluster.hosts if h is not c]
    for host in survivors:
        want = sorted(h.ip for h in survivors if h is not host)
        eventually(f"{host.name} without {c.name}'s peer", functools.partial(peered_with, cluster, host, want))
        status = cluster.calicoctl(host, "node", "status").stdout
        assert c.ip not in status
        for cidr in c_blocks:
            eventually(f"{cidr} gone from {host.name}", functools.partial(unrouted_on, cluster, host, cidr))
