"""When the runtime's view and the datastore's differ, as they do every day in a cluster: a sandbox
recreated for a pod (a new container ID, the old one's DEL arriving late), an ADD retried or sent
twice at once, allocations made under older Calico handle forms. Every test runs on both paths
(the plugin standalone, and served by calico-node), on real etcd and netlink in a simulated host."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import netaddr
import pytest

from cni_calico.allocation.client import IpamClient
from cni_calico.cni.identity import Workload, host_veth_name
from cni_calico.datastore import EtcdDatastore
from cni_calico.model import keys

from .netlab import BASE_LINKS, Lab, sh

pytestmark = [pytest.mark.root, pytest.mark.etcd]

POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid}"


def add(lab: Lab, cid: str, netns: str, pod: str | None = None, **env: str) -> dict[str, Any]:
    args = POD_ARGS.format(pod=pod, cid=cid) if pod else env.pop("args", "")
    status, out, err = lab.cni("ADD", lab.conf(), container_id=cid, netns=netns, args=args)
    assert status == 0 and out is not None, (out, err)
    return out


def delete(lab: Lab, cid: str, netns: str, pod: str | None = None) -> None:
    args = POD_ARGS.format(pod=pod, cid=cid) if pod else ""
    status, out, err = lab.cni("DEL", lab.conf(), container_id=cid, netns=netns, args=args)
    assert (status, out) == (0, None), err


def address(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


def endpoints(store: EtcdDatastore) -> dict[str, dict[str, Any]]:
    return {kv.key.rsplit("/", 1)[1]: json.loads(kv.value)["spec"]
            for kv in store.list(keys.resource_prefix("workloadendpoints"))}


def handles(store: EtcdDatastore) -> list[str]:
    return sorted(kv.key.rsplit("/", 1)[1] for kv in store.list(keys.HANDLE_PREFIX))


def reaches(lab: Lab, ip: str) -> bool:
    return lab.in_host("ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


def logs_of(lab: Lab, err: str) -> str:
    return err + (open(f"{lab.workdir}/agent.log").read() if lab.fast_path else "")


def assert_pod_wired(lab: Lab, store: EtcdDatastore, cid: str, ip: str, veth: str) -> None:
    """The pod's endpoint names `cid`, its veth and /32 route are on the host, its address is held
    by its handle, and the host reaches it."""
    wep = endpoints(store)["host1-k8s-web-eth0"]
    assert wep["containerID"] == cid and wep["ipNetworks"] == [f"{ip}/32"]
    assert veth in lab.host_links()
    assert f"{ip} dev {veth} scope link" in lab.host_routes()
    assert [str(a.ip) for a in IpamClient(store, "host1").addresses_of(f"net1.{cid}")] == [ip]
    assert reaches(lab, ip)


def test_a_late_del_of_a_replaced_sandbox_leaves_the_live_pod_alone(lab: Lab, etcd_store: EtcdDatastore) -> None:
    veth = host_veth_name(Workload("x", "default", "web"))
    old = address(add(lab, "sandbox-x", lab.pod("x"), pod="web"))
    new = address(add(lab, "sandbox-y", lab.pod("y"), pod="web"))  # the pod's sandbox, recreated
    assert old != new
    status, out, err = lab.cni("DEL", lab.conf(), container_id="sandbox-x", netns=f"/var/run/netns/{lab.prefix}-x",
                               args=POD_ARGS.format(pod="web", cid="sandbox-x"))
    assert (status, out) == (0, None), err
    assert_pod_wired(lab, etcd_store, "sandbox-y", new, veth)
    assert handles(etcd_store) == ["net1.sandbox-y"]  # what X held is released, and only that
    assert "belongs to container sandbox-y" in logs_of(lab, err)


def test_a_spurious_second_del_after_the_pod_moved_on_changes_nothing(lab: Lab, etcd_store: EtcdDatastore) -> None:
    veth = host_veth_name(Workload("x", "default", "web"))
    x_netns = lab.pod("x")
    add(lab, "sandbox-x", x_netns, pod="web")
    delete(lab, "sandbox-x", x_netns, pod="web")
    new = address(add(lab, "sandbox-y", lab.pod("y"), pod="web"))
    for netns in (x_netns, ""):  # as containerd's two DELs: with the netns, then without
        delete(lab, "sandbox-x", netns, pod="web")
        assert_pod_wired(lab, etcd_store, "sandbox-y", new, veth)
    delete(lab, "sandbox-y", "", pod="web")  # the live one's own DEL, netns already gone: all of it
    assert lab.host_links() == BASE_LINKS and endpoints(etcd_store) == {} and handles(etcd_store) == []


def test_check_and_gc_know_the_endpoint_belongs_to_the_new_sandbox(lab: Lab, etcd_store: EtcdDatastore) -> None:
    veth = host_veth_name(Workload("x", "default", "web"))
    first = add(lab, "sandbox-x", lab.pod("x"), pod="web")
    new = address(add(lab, "sandbox-y", lab.pod("y"), pod="web"))
    before = [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")]
    status, out, err = lab.cni("CHECK", lab.conf(prevResult=first), container_id="sandbox-x",
                               netns=f"/var/run/netns/{lab.prefix}-x", args=POD_ARGS.format(pod="web", cid="sandbox-x"))
    assert status == 1 and out is not None and out["code"] in (107, 105), (out, err)
    assert [(kv.key, kv.mod_revision) for kv in etcd_store.list("/calico")] == before
    conf = lab.conf(cniVersion="1.1.0",
                    **{"cni.dev/valid-attachments": [{"containerID": "sandbox-y", "ifname": "eth0"}]})
    status, out, err = lab.cni("GC", conf, container_id="", netns="")
    assert (status, out) == (0, None), err
    assert_pod_wired(lab, etcd_store, "sandbox-y", new, veth)
    assert handles(etcd_store) == ["net1.sandbox-y"]


def test_a_repeated_add_is_the_same_attachment(lab: Lab, etcd_store: EtcdDatastore) -> None:
    netns = lab.pod("r")
    first = add(lab, "cid-r", netns, pod="web")
    again = add(lab, "cid-r", netns, pod="web")
    assert again == first
    assert list(endpoints(etcd_store)) == ["host1-k8s-web-eth0"] and handles(etcd_store) == ["net1.cid-r"]
    assert len(IpamClient(etcd_store, "host1").addresses_of("net1.cid-r")) == 1
    # Broken in between (the host route gone, the pod's address removed): made again, same answer.
    ip, veth = address(first), first["interfaces"][0]["name"]
    sh("ip", "-n", lab.host, "route", "del", ip, "dev", veth)
    sh("ip", "-n", os.path.basename(netns), "addr", "flush", "dev", "eth0")
    repaired = add(lab, "cid-r", netns, pod="web")
    assert repaired["ips"] == first["ips"] and repaired["interfaces"][0] == first["interfaces"][0]
    status, out, err = lab.cni("CHECK", lab.conf(prevResult=repaired), container_id="cid-r", netns=netns,
                               args=POD_ARGS.format(pod="web", cid="cid-r"))
    assert (status, out) == (0, None), (out, err)
    assert reaches(lab, ip)
    assert len(IpamClient(etcd_store, "host1").addresses_of("net1.cid-r")) == 1


def test_adds_at_once_for_one_container_make_one_attachment(lab: Lab, etcd_store: EtcdDatastore) -> None:
    netns = lab.pod("twin")
    results: list[tuple[int, dict[str, Any] | None, str]] = []

    def run() -> None:
        results.append(lab.cni("ADD", lab.conf(), container_id="cid-twin", netns=netns,
                               args=POD_ARGS.format(pod="web", cid="cid-twin")))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _, _ in results] == [0] * 6, results
    assert all(out == results[0][1] for _, out, _ in results)
    ip = address(results[0][1] or {})
    assert [link for link in lab.host_links() if link.startswith("cali")] == [results[0][1]["interfaces"][0]["name"]]
    assert list(endpoints(etcd_store)) == ["host1-k8s-web-eth0"] and handles(etcd_store) == ["net1.cid-twin"]
    assert [str(a.ip) for a in IpamClient(etcd_store, "host1").addresses_of("net1.cid-twin")] == [ip]
    assert reaches(lab, ip)


def test_a_repeated_ip_request_gets_the_same_answer(lab: Lab, etcd_store: EtcdDatastore) -> None:
    answers = []
    for _ in range(2):
        status, out, err = lab.cni("ADD", lab.conf(), container_id="cid-ip", netns=lab.pod("ip") if not answers
                                   else f"/var/run/netns/{lab.prefix}-ip", args="IP=10.100.7.9", plugin="calico-ipam")
        assert status == 0 and out is not None, (out, err)
        answers.append(out["ips"])
    assert answers[0] == answers[1] == [{"address": "10.100.7.9/32"}]


def test_del_releases_the_legacy_handles_of_this_workload_only(lab: Lab, etcd_store: EtcdDatastore) -> None:
    client = IpamClient(etcd_store, "host1")
    pod_attrs = {"node": "host1", "namespace": "default", "pod": "web"}
    client.assign_address("default.web", pod_attrs, netaddr.IPAddress("10.100.9.1"))  # older Calico's pod handle
    client.assign_address("cid-plain", {"node": "host1"}, netaddr.IPAddress("10.100.9.2"))  # its cni handle
    # Handles of the same form that are not this workload's: another node's, another pod's.
    client.assign_address("default.db", {**pod_attrs, "pod": "db"}, netaddr.IPAddress("10.100.9.3"))
    client.assign_address("cid-elsewhere", {"node": "host2"}, netaddr.IPAddress("10.100.9.4"))
    add(lab, "cid-pod", lab.pod("pod"), pod="web")
    add(lab, "cid-plain", lab.pod("plain"))
    delete(lab, "cid-pod", f"/var/run/netns/{lab.prefix}-pod", pod="web")
    delete(lab, "cid-plain", f"/var/run/netns/{lab.prefix}-plain")
    assert handles(etcd_store) == ["cid-elsewhere", "default.db"]
    # A legacy handle named like this workload's but holding someone else's address stays too.
    client.assign_address("cid-other", {"node": "host1", "pod": "x", "namespace": "y"}, netaddr.IPAddress("10.100.9.5"))
    add(lab, "cid-other", lab.pod("other"))
    delete(lab, "cid-other", f"/var/run/netns/{lab.prefix}-other")
    assert handles(etcd_store) == ["cid-elsewhere", "cid-other", "default.db"]
