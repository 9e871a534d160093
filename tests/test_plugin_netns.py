"""The calico plugin on real netlink: a simulated host namespace, pods as namespaces, real packets."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_calico.cni.identity import Workload, host_veth_name
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.model import keys

from .netlab import BASE_LINKS, Lab, sh

pytestmark = [pytest.mark.root, pytest.mark.etcd]


K8S_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid}"


def add_pod(lab: Lab, name: str, cid: str, **conf: Any) -> tuple[str, dict[str, Any]]:
    netns = lab.pod(name)
    status, out, err = lab.cni("ADD", lab.conf(**conf), container_id=cid, netns=netns,
                               args=K8S_ARGS.format(pod=name, cid=cid))
    assert status == 0, (out, err)
    assert out is not None
    return netns, out


def ip_of(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"].split("/")[0])


def test_two_pods_are_wired_calico_style_and_reach_each_other(lab: Lab, etcd_store: EtcdDatastore) -> None:
    ns_a, res_a = add_pod(lab, "nginx", "cid-a")
    ns_b, res_b = add_pod(lab, "redis", "cid-b")
    a, b = ip_of(res_a), ip_of(res_b)

    # Result: host veth then container interface with its sandbox, /32 addresses, default route.
    veth_a = host_veth_name(Workload("cid-a", "default", "nginx"))
    assert veth_a == "cali" + __import__("hashlib").sha1(b"default.nginx").hexdigest()[:11]
    assert [i["name"] for i in res_a["interfaces"]] == [veth_a, "eth0"]
    assert res_a["interfaces"][0]["mac"] == "ee:ee:ee:ee:ee:ee"
    assert res_a["interfaces"][1]["sandbox"] == ns_a
    assert res_a["ips"] == [{"address": f"{a}/32", "interface": 1}]

    # Container side: /32 on eth0, link route to 169.254.1.1, default via it, forwarding off.
    addr = sh("ip", "netns", "exec", os.path.basename(ns_a), "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"inet {a}/32" in addr
    routes = sh("ip", "netns", "exec", os.path.basename(ns_a), "ip", "route").stdout
    assert "default via 169.254.1.1 dev eth0" in routes and "169.254.1.1 dev eth0 scope link" in routes
    forwarding = sh("ip", "netns", "exec", os.path.basename(ns_a), "sysctl", "-n", "net.ipv4.ip_forward").stdout
    assert forwarding.strip() == "0"

    # Host side: the /32 route per pod, the Calico MAC, and the sysctls.
    host_routes = lab.host_routes()
    assert f"{a} dev {veth_a} scope link" in host_routes
    link = sh("ip", "-n", lab.host, "link", "show", veth_a).stdout
    assert "ee:ee:ee:ee:ee:ee" in link and "state UP" in link
    for key, value in (("net.ipv4.conf.{}.proxy_arp", "1"), ("net.ipv4.conf.{}.forwarding", "1"),
                       ("net.ipv4.conf.{}.route_localnet", "1"), ("net.ipv4.neigh.{}.proxy_delay", "0")):
        assert lab.in_host("sysctl", "-n", key.format(veth_a)).stdout.strip() == value, key

    # Real packets through the kernel: pod to pod both ways, and pod to host.
    for src, dst in ((ns_a, b), (ns_b, a), (ns_a, "192.0.2.1")):
        ping = sh("ip", "netns", "exec", os.path.basename(src), "ping", "-c", "1", "-W", "2", dst, check=False)
        assert ping.returncode == 0, f"{src} -> {dst}: {ping.stdout}{ping.stderr}"

    # The endpoint record, Calico's name and fields; and the profile of the namespace.
    wep_key = keys.resource("workloadendpoints", "host1-k8s-nginx-eth0", "default")
    wep = json.loads(etcd_store.get(wep_key).value)
    assert {k: wep["spec"][k] for k in ("orchestrator", "node", "pod", "endpoint", "interfaceName", "containerID")} \
        == {"orchestrator": "k8s", "node": "host1", "pod": "nginx", "endpoint": "eth0", "interfaceName": veth_a,
            "containerID": "cid-a"}
    assert wep["spec"]["ipNetworks"] == [f"{a}/32"] and wep["spec"]["profiles"] == ["kns.default"]
    assert wep["spec"]["mac"] == res_a["interfaces"][1]["mac"]
    assert etcd_store.get(keys.resource("profiles", "kns.default")) is not None


def test_check_passes_then_names_each_broken_piece(lab: Lab, etcd_store: EtcdDatastore) -> None:
    netns, result = add_pod(lab, "web", "cid-w")
    conf = lab.conf(prevResult=result)
    args = K8S_ARGS.format(pod="web", cid="cid-w")
    status, out, err = lab.cni("CHECK", conf, container_id="cid-w", netns=netns, args=args)
    assert (status, out) == (0, None), err

    veth = result["interfaces"][0]["name"]
    sh("ip", "-n", lab.host, "route", "del", ip_of(result), "dev", veth)
    status, out, _ = lab.cni("CHECK", conf, container_id="cid-w", netns=netns, args=args)
    assert status == 1 and out is not None and out["code"] == 107 and "host route" in out["msg"]

    sh("ip", "-n", lab.host, "route", "add", ip_of(result), "dev", veth, "scope", "link")
    sh("ip", "-n", os.path.basename(netns), "route", "del", "default")
    status, out, _ = lab.cni("CHECK", conf, container_id="cid-w", netns=netns, args=args)
    assert status == 1 and out is not None and "default route" in out["msg"]

    sh("ip", "-n", os.path.basename(netns), "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    wep_key = keys.resource("workloadendpoints", "host1-k8s-web-eth0", "default")
    kv = etcd_store.get(wep_key)
    etcd_store.delete(wep_key, kv.mod_revision)
    status, out, _ = lab.cni("CHECK", conf, container_id="cid-w", netns=netns, args=args)
    assert status == 1 and out is not None and "endpoint" in out["msg"]


def test_del_leaves_nothing_and_is_repeatable(lab: Lab, etcd_store: EtcdDatastore) -> None:
    netns, result = add_pod(lab, "db", "cid-d")
    args = K8S_ARGS.format(pod="db", cid="cid-d")
    for attempt_netns in (netns, netns, ""):  # again, and as containerd's second DEL with no netns
        status, out, err = lab.cni("DEL", lab.conf(), container_id="cid-d", netns=attempt_netns, args=args)
        assert (status, out) == (0, None), err
    assert lab.host_links() == BASE_LINKS
    assert ip_of(result) not in lab.host_routes()
    assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []
    assert etcd_store.list(keys.HANDLE_PREFIX) == []
    status, _, err = lab.cni("DEL", lab.conf(), container_id="never-added", netns="/var/run/netns/nope")
    assert status == 0, err


def test_del_without_etcd_is_error_11_and_a_later_del_finishes(lab: Lab, etcd_store: EtcdDatastore) -> None:
    netns, result = add_pod(lab, "cache", "cid-c")
    args = K8S_ARGS.format(pod="cache", cid="cid-c")
    status, out, err = lab.cni("DEL", lab.conf(etcd_endpoints="http://127.0.0.1:1"), container_id="cid-c",
                               netns=netns, args=args)
    assert status == 1 and out is not None and out["code"] == 11, (out, err)  # the datastore failure, reported
    assert "Traceback" not in err
    assert etcd_store.list(keys.HANDLE_PREFIX) != []  # nothing released without etcd: the runtime retries
    status, out, err = lab.cni("DEL", lab.conf(), container_id="cid-c", netns=netns, args=args)
    assert (status, out) == (0, None), err
    assert lab.host_links() == BASE_LINKS and ip_of(result) not in lab.host_routes()
    assert etcd_store.list(keys.HANDLE_PREFIX) == []
    assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []


def test_add_into_a_missing_netns_fails_cleanly(lab: Lab, etcd_store: EtcdDatastore) -> None:
    status, out, err = lab.cni("ADD", lab.conf(), container_id="cid-x", netns="/var/run/netns/does-not-exist")
    assert status == 1 and out is not None and out["code"] == 3, err
    assert "Traceback" not in err
    assert etcd_store.list(keys.HANDLE_PREFIX) == [] and lab.host_links() == BASE_LINKS


def test_existing_interface_in_container_is_an_error(lab: Lab, etcd_store: EtcdDatastore) -> None:
    netns = lab.pod("busy")
    sh("ip", "-n", os.path.basename(netns), "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
    status, out, _ = lab.cni("ADD", lab.conf(), container_id="cid-busy", netns=netns)
    assert status == 1 and out is not None and "already exists" in out["msg"]
    assert etcd_store.list(keys.HANDLE_PREFIX) == [] and lab.host_links() == BASE_LINKS


@pytest.fixture(params=["standalone", "fast-path"])
def faulty_lab(request: pytest.FixtureRequest, etcd_server: PrivateEtcd, etcd: str, etcd_store: EtcdDatastore
               ) -> Iterator[Lab]:
    """As `lab`, with the fault-injecting plugin of tests/faults.py (served by calico-node too)."""
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    lab = Lab(etcd_server.port, fast_path=request.param == "fast-path", faulty=True)
    try:
        yield lab.start()
    finally:
        lab.stop()


# "ipam" fails IPAM's first read while the veth pair is being made, "wire" fails while IPAM is
# still talking to etcd, "sysctl" and "route" while the endpoint is being written: the undo waits
# for work in flight and removes what it made.
@pytest.mark.parametrize("step", ["ipam", "wire", "veth", "sysctl", "route", "endpoint"])
def test_failure_at_each_step_of_add_leaves_nothing_behind(faulty_lab: Lab, etcd_store: EtcdDatastore,
                                                           step: str) -> None:
    lab = faulty_lab
    netns = lab.pod("victim")
    status, out, err = lab.cni("ADD", lab.conf(), container_id="cid-v", netns=netns,
                               env={"CNI_CALICO_TEST_FAIL_AT": step}, faulty=True)
    assert status == 1 and out is not None and f"injected failure at {step}" in out["msg"], err
    assert lab.host_links() == BASE_LINKS
    assert "10.100." not in lab.host_routes()
    assert "eth0" not in sh("ip", "-n", os.path.basename(netns), "-o", "link").stdout
    deadline = time.monotonic() + 0.5  # and nothing appears later: no work outlives the answer
    while True:
        assert etcd_store.list(keys.HANDLE_PREFIX) == []
        assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def test_the_shipped_plugin_ignores_the_fault_injection_variables(lab: Lab, etcd_store: EtcdDatastore) -> None:
    status, out, err = lab.cni("ADD", lab.conf(), container_id="cid-ok", netns=lab.pod("ok"),
                               env={"CNI_CALICO_TEST_FAIL_AT": "wire"})
    assert status == 0 and out is not None, (out, err)


def test_stale_host_veth_is_replaced(lab: Lab) -> None:
    veth = host_veth_name(Workload("cid-s", "default", "stale"))
    sh("ip", "-n", lab.host, "link", "add", veth, "type", "veth", "peer", "name", "stale-peer")
    _, result = add_pod(lab, "stale", "cid-s")
    assert result["interfaces"][0]["name"] == veth
    assert "stale-peer" not in lab.host_links()  # the old pair went with the stale name


def test_host_local_ipam_by_exec(lab: Lab) -> None:
    conf = lab.conf(ipam={"type": "host-local", "subnet": "10.250.0.0/24",
                          "dataDir": f"/tmp/{lab.prefix}-host-local"})
    netns = lab.pod("hl")
    try:
        status, out, err = lab.cni("ADD", conf, container_id="cid-hl", netns=netns)
        assert status == 0, (out, err)
        assert out is not None and out["ips"][0]["address"].startswith("10.250.0.")
        status, _, err = lab.cni("DEL", conf, container_id="cid-hl", netns=netns)
        assert status == 0, err
        assert lab.host_links() == BASE_LINKS
    finally:
        sh("rm", "-rf", f"/tmp/{lab.prefix}-host-local")


@pytest.mark.parametrize("step", ["sysctl", "route", "endpoint"])
def test_kill_9_mid_add_then_del_leaves_nothing(lab: Lab, etcd_store: EtcdDatastore, step: str, tmp_path: Any) -> None:
    if lab.fast_path:
        pytest.skip("kills the plugin process mid-ADD: on the fast path the work is in calico-node")
    import subprocess
    import time

    from .netlab import FAULTS

    netns = lab.pod("killed")
    marker = tmp_path / "hanging"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND="ADD", CNI_CONTAINERID="cid-k", CNI_NETNS=netns, CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni",
               CNI_CALICO_TEST_HANG_AT=f"{step}:{marker}")
    proc = subprocess.Popen(["ip", "netns", "exec", lab.host, sys.executable, FAULTS, "calico"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(lab.conf()).encode())
        proc.stdin.close()
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the plugin never reached the step"
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no undo runs
        proc.wait(10)
    assert etcd_store.list(keys.HANDLE_PREFIX) != []  # the kill really left an allocation behind
    status, out, err = lab.cni("DEL", lab.conf(), container_id="cid-k", netns=netns)
    assert (status, out) == (0, None), err
    assert lab.host_links() == BASE_LINKS
    assert "eth0" not in sh("ip", "-n", os.path.basename(netns), "-o", "link").stdout
    assert etcd_store.list(keys.HANDLE_PREFIX) == []
    assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []


def test_dual_stack_pod_gets_v6_wiring(lab: Lab, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "v6", "fd80:24e2:f998:72d6::/64")
    lab.in_host("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    netns, result = add_pod(lab, "dual", "cid-6", ipam={"type": "calico-ipam", "assign_ipv6": "true"})
    v6 = next(ip["address"] for ip in result["ips"] if ":" in ip["address"])
    assert v6.endswith("/128")
    name = os.path.basename(netns)
    assert f"inet6 {v6}" in sh("ip", "-n", name, "-6", "-o", "addr", "show", "eth0").stdout
    assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in sh("ip", "-n", name, "-6", "route").stdout
    assert sh("ip", "netns", "exec", name, "sysctl", "-n", "net.ipv6.conf.eth0.accept_dad").stdout.strip() == "0"
    veth = result["interfaces"][0]["name"]
    assert f"{v6.split('/')[0]} dev {veth}" in sh("ip", "-n", lab.host, "-6", "route").stdout
    assert lab.in_host("sysctl", "-n", f"net.ipv6.conf.{veth}.proxy_ndp").stdout.strip() == "1"


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.1.0"])
def test_result_in_callers_version(lab: Lab, version: str) -> None:
    netns = lab.pod("v")
    status, out, err = lab.cni("ADD", lab.conf(cniVersion=version), container_id="cid-ver", netns=netns)
    assert status == 0 and out is not None, err
    assert out["cniVersion"] == version
    if version == "0.2.0":
        assert out["ip4"]["ip"].endswith("/32") and "interfaces" not in out
    else:
        assert out["ips"][0]["address"].endswith("/32") and len(out["interfaces"]) == 2
        assert ("version" in out["ips"][0]) == (version == "0.4.0")


def test_gc_removes_vanished_attachments(lab: Lab, etcd_store: EtcdDatastore) -> None:
    add_pod(lab, "keep", "cid-keep")
    add_pod(lab, "gone", "cid-gone")
    bad = lab.conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": "cid-keep"})
    before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
    status, out, _ = lab.cni("GC", bad, container_id="", netns="")
    assert status == 1 and out is not None and out["code"] == 7
    assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before  # refused before any change

    conf = lab.conf(cniVersion="1.1.0",
                    **{"cni.dev/valid-attachments": [{"containerID": "cid-keep", "ifname": "eth0"}]})
    status, out, err = lab.cni("GC", conf, container_id="", netns="")
    assert (status, out) == (0, None), err
    weps = [kv.key.rsplit("/", 1)[1] for kv in etcd_store.list(keys.resource_prefix("workloadendpoints"))]
    assert weps == ["host1-k8s-keep-eth0"]
    assert [kv.key.rsplit("/", 1)[1] for kv in etcd_store.list(keys.HANDLE_PREFIX)] == ["net1.cid-keep"]
    status, out, err = lab.cni("STATUS", conf, container_id="", netns="")
    assert (status, out) == (0, None), err


@pytest.mark.parametrize("mutate, env, code", [
    (lambda c: "{not json", {}, 6),
    (lambda c: {**c, "cniVersion": "9.9.9"}, {}, 1),
    (lambda c: {**c, "mtu": 10}, {}, 7),
    (lambda c: {**c, "ipam": {"type": "calico-ipam", "ipv4_pools": ["10.0.0.0/99"]}}, {}, 7),
    (lambda c: {**c, "ipam": {"type": "no-such-ipam"}}, {}, 109),
    (lambda c: c, {"CNI_NETNS": ""}, 4),
    (lambda c: c, {"CNI_ARGS": "IP=10.200.0.1"}, 104),
])
def test_bad_input_to_calico_changes_nothing(lab: Lab, etcd_store: EtcdDatastore, mutate: Any,
                                            env: dict[str, str], code: int) -> None:
    netns = lab.pod("bad")
    before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
    status, out, err = lab.cni("ADD", mutate(lab.conf()), container_id="cid-bad",
                               netns=env.get("CNI_NETNS", netns), args=env.get("CNI_ARGS", ""))
    assert status == 1 and out is not None and out["code"] == code, (out, err)
    assert "Traceback" not in err
    assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before
    assert lab.host_links() == BASE_LINKS


def test_mtu_is_honoured_on_both_ends(lab: Lab) -> None:
    netns, result = add_pod(lab, "jumbo", "cid-mtu", mtu=1400)
    assert "mtu 1400" in sh("ip", "-n", os.path.basename(netns), "link", "show", "eth0").stdout
    assert "mtu 1400" in sh("ip", "-n", lab.host, "link", "show", result["interfaces"][0]["name"]).stdout


def test_two_hosts_on_one_pool_use_different_blocks(lab: Lab, etcd_server: PrivateEtcd) -> None:
    other = Lab(etcd_server.port)
    try:
        other.start()
        _, here = add_pod(lab, "a", "cid-h1")
        status, there, err = other.cni("ADD", {**other.conf(), "nodename": "host2"}, container_id="cid-h2",
                                       netns=other.pod("b"))
        assert status == 0 and there is not None, err
        import netaddr

        block_here = netaddr.IPNetwork(f"{ip_of(here)}/26").cidr
        block_there = netaddr.IPNetwork(f"{ip_of(there)}/26").cidr
        assert block_here != block_there
    finally:
        other.stop()


def _no_traceback(lab: Lab, err: str) -> None:
    assert "Traceback" not in err
    if lab.fast_path:  # a served call logs into the agent's log
        assert "Traceback" not in Path(f"{lab.workdir}/agent.log").read_text()


@pytest.fixture
def not_a_netns(tmp_path: Any) -> Iterator[list[str]]:
    """Paths a runtime may leave behind in CNI_NETNS: a plain file, a directory, a file on another
    filesystem (tmpfs), a character device."""
    plain = tmp_path / "plain-file"
    plain.write_text("")
    shm = f"/dev/shm/cc-not-netns-{os.getpid()}"
    open(shm, "w").close()
    try:
        yield [str(plain), str(tmp_path), shm, "/dev/null"]
    finally:
        os.unlink(shm)


def test_add_into_a_path_that_is_not_a_netns_is_error_4_and_changes_nothing(
        lab: Lab, etcd_store: EtcdDatastore, not_a_netns: list[str]) -> None:
    for path in not_a_netns:
        before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
        status, out, err = lab.cni("ADD", lab.conf(), container_id="cid-nn", netns=path)
        assert status == 1 and out is not None and out["code"] == 4, (path, out, err)
        assert out["msg"] == f"CNI_NETNS {path} is not a network namespace"
        _no_traceback(lab, err)
        assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before
        assert lab.host_links() == BASE_LINKS


def test_del_with_a_netns_path_that_is_not_a_netns_cleans_the_host_side(
        lab: Lab, etcd_store: EtcdDatastore, not_a_netns: list[str]) -> None:
    for n, path in enumerate(not_a_netns):
        cid, pod = f"cid-gone{n}", f"gone{n}"
        _, result = add_pod(lab, pod, cid)
        args = K8S_ARGS.format(pod=pod, cid=cid)
        for _ in range(2):  # and again, as a runtime retrying would
            status, out, err = lab.cni("DEL", lab.conf(), container_id=cid, netns=path, args=args)
            assert (status, out) == (0, None), (path, out, err)
            _no_traceback(lab, err)
        assert lab.host_links() == BASE_LINKS
        assert ip_of(result) not in lab.host_routes()
        assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []
        assert etcd_store.list(keys.HANDLE_PREFIX) == []


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_the_plugins_own_netns_is_refused_and_the_host_keeps_its_interfaces(
        lab: Lab, etcd_store: EtcdDatastore, command: str) -> None:
    # A DEL for a container never added, naming the host's own namespace and one of its
    # interfaces: acted upon, it would delete the host's uplink.
    before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
    conf = lab.conf(prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.100.0.9/32"}]})
    for own in ("/proc/self/ns/net", f"/var/run/netns/{lab.host}"):
        status, out, err = lab.cni(command, conf, container_id="cid-own", netns=own, ifname="uplink")
        assert status == 1 and out is not None and out["code"] == 4, (own, out, err)
        assert out["msg"] == f"CNI_NETNS {own} is the plugin's own network namespace"
        _no_traceback(lab, err)
    assert lab.host_links() == BASE_LINKS
    assert "default dev uplink" in lab.host_routes()
    assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before


@pytest.fixture
def unpropagated_netns(lab: Lab, tmp_path: Path) -> Iterator[str]:
    """A pod's namespace mounted where the lab's calico-node cannot see it: on a file in a private
    tmpfs made after the agent started (as containerd's `netns_mounts_under_state_dir` puts pods'
    namespaces, outside /var/run/netns's shared mount). The runtime's mount namespace, where the
    plugin is exec'd, sees it; the agent's, under `ip netns exec`, sees at most an empty file."""
    private = tmp_path / "state"
    private.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=1m", "cni-calico-test", str(private))
    try:
        sh("mount", "--make-private", str(private))
        target = private / "cni-netns"
        target.write_text("")
        sh("mount", "--bind", lab.pod("unseen"), str(target))
        try:
            yield str(target)
        finally:
            sh("umount", str(target), check=False)
    finally:
        sh("umount", "--lazy", str(private), check=False)


def test_a_netns_only_the_runtime_sees_is_wired_on_both_paths(lab: Lab, etcd_store: EtcdDatastore,
                                                              unpropagated_netns: str) -> None:
    """The plugin's client hands calico-node the namespace it opened itself (SCM_RIGHTS): the
    agent's mount namespace need not show the runtime's paths. Standalone, the same calls."""
    netns, args = unpropagated_netns, K8S_ARGS.format(pod="unseen", cid="cid-u")
    status, out, err = lab.cni("ADD", lab.conf(), container_id="cid-u", netns=netns, args=args)
    assert status == 0 and out is not None, (out, err)
    assert out["interfaces"][1]["sandbox"] == netns  # reported by the path the runtime gave
    ip = ip_of(out)
    addr = sh("nsenter", f"--net={netns}", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"inet {ip}/32" in addr
    status, out, err = lab.cni("CHECK", lab.conf(prevResult=out), container_id="cid-u", netns=netns, args=args)
    assert (status, out) == (0, None), err
    status, out, err = lab.cni("DEL", lab.conf(), container_id="cid-u", netns=netns, args=args)
    assert (status, out) == (0, None), err
    assert "eth0" not in sh("nsenter", f"--net={netns}", "ip", "-o", "link").stdout
    assert lab.host_links() == BASE_LINKS and ip not in lab.host_routes()
    assert etcd_store.list(keys.HANDLE_PREFIX) == []
