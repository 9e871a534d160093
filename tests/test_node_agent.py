"""calico-node and `calicoctl node run/status` on simulated hosts: start, health, bad input, IPIP."""

from __future__ import annotations

import functools
import re
import subprocess
import time
import uuid
from typing import Iterator

import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import admin, binaries
from cni_calico.lab.cluster import Cluster, Host
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.model import keys
from cni_calico.model.keys import node_key
from cni_calico.model.v3 import Node
from cni_calico.procs import running

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]


@pytest.fixture
def cluster(etcd_server: PrivateEtcd, etcd: str) -> Iterator[Cluster]:
    with Cluster(etcd_server.port, hosts=2) as lab:
        yield lab


def calicoctl(cluster: Cluster, host: Host, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    full = {**cluster.agent_env(host), **(env or {})}
    for name in ("NODENAME", "IP"):  # node run must take them from its flags
        full.pop(name, None)
    return subprocess.run(["ip", "netns", "exec", host.netns, *binaries.command("calicoctl"), *args],
                          capture_output=True, text=True, env=full, timeout=60)


def test_node_run_starts_the_agent_and_node_status_reports_it(cluster: Cluster, etcd: str) -> None:
    host = cluster.hosts[0]
    status = calicoctl(cluster, host, "node", "status")
    assert (status.returncode, status.stdout, status.stderr) == (1, "", "Calico process is not running.\n")
    started = calicoctl(cluster, host, "node", "run", "--name", "lonely", "--ip", f"{host.ip}/24", "--as", "65010")
    assert started.returncode == 0, started.stderr
    assert "Calico node started successfully." in started.stdout
    pid = cluster.agent_pid_from_file(host)
    assert pid is not None
    with EtcdDatastore(etcd) as ds:
        node = Node.model_validate_json(ds.get(node_key("lonely")).value)
    assert node.spec.bgp is not None and (node.spec.bgp.ipv4Address, node.spec.bgp.asNumber) == \
        (f"{host.ip}/24", 65010)
    assert host.nodename_file.read_text() == "lonely"
    status = calicoctl(cluster, host, "node", "status")
    assert status.returncode == 0
    assert status.stdout == ("Calico process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\n"
                             "IPv6 BGP status\nNo IPv6 peers found.\n\n")
    again = calicoctl(cluster, host, "node", "run", "--name", "lonely", "--ip", f"{host.ip}/24")
    assert again.returncode == 1 and again.stderr.strip() == \
        f"calico-node is already running on this host (pid {pid})"
    bird = cluster.bird_pid(host)
    assert bird is not None
    stopped = calicoctl(cluster, host, "node", "stop")
    assert (stopped.returncode, stopped.stderr) == (0, ""), stopped.stderr
    assert stopped.stdout == f"Stopping calico-node (pid {pid})\nCalico node stopped.\n"
    assert not running(pid) and not running(bird)  # it has exited, and its BIRD with it
    assert not (host.run_dir / "calico-node.pid").exists()  # the agent removed its pid file
    status = calicoctl(cluster, host, "node", "status")
    assert (status.returncode, status.stderr) == (1, "Calico process is not running.\n")
    again = calicoctl(cluster, host, "node", "stop")
    assert (again.returncode, again.stdout, again.stderr) == (1, "", "Calico process is not running.\n")


def test_health_and_metrics_endpoints(cluster: Cluster) -> None:
    host = cluster.hosts[0]
    cluster.start_agent(host)
    code, body = cluster.readiness(host)
    assert code == 200 and body.startswith(f"ready: node {host.name}")
    assert cluster.readiness(host, "/liveness")[0] == 200
    code, metrics = cluster.readiness(host, "/metrics")
    assert code == 200
    for name in ("calico_node_ready", "calico_node_resyncs_total", "calico_node_bird_reloads_total",
                 "calico_node_affine_blocks"):
        assert f"# TYPE {name} " in metrics
    assert re.search(r"^calico_node_resyncs_total 1\.0$", metrics, re.M)
    assert re.search(r"^calico_node_ready 1\.0$", metrics, re.M)  # read from readiness when scraped
    assert re.search(r"^process_open_fds \d+", metrics, re.M)  # the process collector
    assert cluster.readiness(host, "/nope")[0] == 404
    cluster.stop_agent(host)
    assert cluster.readiness(host)[0] == 0  # nothing listens once the agent is gone


@pytest.mark.parametrize("env, message", [
    ({"AS": "seven"}, "calico-node: AS: "),
    ({"IP": "192.0.2.300"}, "calico-node: IP: '192.0.2.300' is not an IPv4 address"),
    ({"NODENAME": "Bad_Name"}, "calico-node: node name 'Bad_Name' is not a valid DNS subdomain"),
    ({"IP": "autodetect", "IP_AUTODETECTION_METHOD": "interface=wlan9"},
     "calico-node: no interface address matches IP_AUTODETECTION_METHOD=interface=wlan9"),
    ({"CALICO_NETWORKING_BACKEND": "gobgp"}, "calico-node: CALICO_NETWORKING_BACKEND: "),
])
def test_bad_settings_fail_with_one_line_and_write_nothing(cluster: Cluster, etcd: str, env: dict[str, str],
                                                            message: str) -> None:
    host = cluster.hosts[0]
    proc = subprocess.run(["ip", "netns", "exec", host.netns, *binaries.command("calico-node")],
                          env=cluster.agent_env(host, **env), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    with EtcdDatastore(etcd) as ds:
        assert ds.list("/calico/") == []
    assert not host.nodename_file.exists()


def test_a_second_agent_for_the_same_host_is_refused(cluster: Cluster) -> None:
    host = cluster.hosts[0]
    cluster.start_agent(host)
    proc = subprocess.run(["ip", "netns", "exec", host.netns, *binaries.command("calico-node")],
                          env=cluster.agent_env(host), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"calico-node: calico-node already runs for {host.run_dir} (pid {host.agent.pid})"
    assert cluster.readiness(host)[0] == 200  # the first one is untouched


@functools.cache
def _kernel_has_ipip() -> bool:
    name = f"ccipip-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        return subprocess.run(["ip", "-n", name, "link", "add", "t0", "type", "ipip"],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)



def _ipip_lab(cluster: Cluster, etcd: str) -> dict[str, str]:
    with EtcdDatastore(etcd) as ds:
        admin.create_pool(ds, "tunnelled", "10.67.0.0/16", ipipMode="Always")
    for host in cluster.hosts:
        cluster.start_agent(host, wait=False)
    return {host.name: cluster.add_pod(host, "p1") for host in cluster.hosts}


def test_ipip_pool_traffic_flows_through_tunl0(cluster: Cluster, etcd: str) -> None:
    if not _kernel_has_ipip():
        pytest.skip("this kernel has no ipip driver (tunl0 cannot exist)")
    pods = _ipip_lab(cluster, etcd)
    a, b = cluster.hosts
    for host in cluster.hosts:
        cluster.wait_ready(host)
    deadline = time.monotonic() + 30
    while "dev tunl0" not in cluster.routes(a) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"via {b.ip} dev tunl0" in cluster.routes(a)
    before = int(cluster.in_host(a, "cat", "/sys/class/net/tunl0/statistics/tx_packets").stdout)
    assert cluster.ping(a, "p1", pods[b.name], count=3)
    after = int(cluster.in_host(a, "cat", "/sys/class/net/tunl0/statistics/tx_packets").stdout)
    assert after - before >= 3


def test_ipip_pool_without_kernel_support_is_reported_and_configured(cluster: Cluster, etcd: str) -> None:
    if _kernel_has_ipip():
        pytest.skip("the kernel has ipip: the traffic test covers it")
    _ipip_lab(cluster, etcd)
    a, _b = cluster.hosts
    deadline = time.monotonic() + 30
    while "IPIP" not in cluster.readiness(a)[1] and time.monotonic() < deadline:
        time.sleep(0.1)
    code, body = cluster.readiness(a)
    assert code == 503 and body.startswith("IPIP: create ipip tunnel tunl0"), body
    with EtcdDatastore(etcd) as ds:
        node = Node.model_validate_json(ds.get(node_key(a.name)).value)
        handle = ds.get(keys.handle(f"ipip-tunnel-addr-{a.name}"))
    assert node.spec.bgp is not None and node.spec.bgp.ipv4IPIPTunnelAddr, "tunnel address recorded"
    assert handle is not None
    config = (a.run_dir / "bird.cfg").read_text()
    assert 'ifname = "tunl0";' in config and "if net ~ 10.67.0.0/16 then {" in config


def test_agent_resyncs_after_etcd_restarts_and_keeps_following(cluster: Cluster, etcd_server: PrivateEtcd,
                                                                etcd: str) -> None:
    a, b = cluster.hosts
    cluster.start_agent(a)
    etcd_server.kill()  # the watch stream breaks; the data stays
    deadline = time.monotonic() + 20
    while cluster.readiness(a)[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.readiness(a)[0] == 503  # out of sync while etcd is away: said, not hidden
    etcd_server.start()
    cluster.wait_ready(a)
    cluster.start_agent(b)  # registers node2: a must hear of it through its new watch
    deadline = time.monotonic() + 20
    while "Mesh_192_0_2_12" not in (a.run_dir / "bird.cfg").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "protocol bgp Mesh_192_0_2_12 " in (a.run_dir / "bird.cfg").read_text()
    metrics = cluster.readiness(a, "/metrics")[1]
    resyncs = re.search(r"^calico_node_resyncs_total (\d+)\.0$", metrics, re.M)
    assert resyncs and int(resyncs.group(1)) >= 2, metrics


def test_node_stop_stops_an_agent_started_in_the_foreground(cluster: Cluster) -> None:
    """Any agent of the host, however started: found by the pid file in its run directory."""
    host = cluster.hosts[0]
    agent = cluster.start_agent(host)
    stopped = calicoctl(cluster, host, "node", "stop", "--run-dir", str(host.run_dir), "--timeout", "20")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"Stopping calico-node (pid {agent.pid})\nCalico node stopped.\n"
    assert agent.wait(timeout=5) == 0  # SIGTERM is a clean exit for the agent
    assert cluster.readiness(host)[0] == 0  # nothing serves its health port any more


def test_node_status_says_when_bird_is_not_running(cluster: Cluster) -> None:
    host = cluster.hosts[0]
    cluster.start_agent(host, CALICO_NETWORKING_BACKEND="none")
    status = calicoctl(cluster, host, "node", "status")
    assert status.returncode == 1
    assert status.stdout.startswith("Calico process is running.\n\nIPv4 BGP status\nError querying BIRD: ")
    assert f"no control socket at {host.bird_socket}" in status.stdout
