"""Policy and NAT enforced by calico-node's nftables table, proved with real packets.

Two simulated hosts with calico-node + BIRD. On h0: `web` and `client` (Kubernetes pods in
namespace prod, labelled app=web / app=client) and `other` (a plain CNI container, no labels);
on h1: `remote` (namespace dev, app=client). `web` listens on TCP 8080 and 9090. Policies are
written with the real calicoctl; each test removes its policies and waits for the default (the
namespaces' allow-all profiles: every connection goes to `web`) to be back.
"""

from __future__ import annotations

import json
import subprocess
from typing import Iterator

import pytest
import yaml

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.cluster import GATEWAY, Cluster, Host
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.model import keys

from .conftest import pooled_cluster
from .packets import Listeners, eventually, ping_ok, received, tcp_ok, udp_send

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]

POOL = "10.66.0.0/16"
ENFORCED_WITHIN = 1.0  # seconds from calicoctl's write to the kernel enforcing it (the bound)


class Lab:
    def __init__(self, cluster: Cluster, ds: EtcdDatastore, ips: dict[str, str]) -> None:
        self.cluster, self.ds, self.ips = cluster, ds, ips
        self.h0, self.h1 = cluster.hosts

    def ns(self, pod: str) -> str:
        host = self.h1 if pod == "remote" else self.h0
        return self.cluster.pod_netns(host, pod)

    def apply(self, *documents: dict) -> None:
        proc = self.cluster.calicoctl(self.h0, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
        assert proc.returncode == 0, proc.stderr

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        args = ["delete", kind, name] + (["-n", namespace] if namespace else [])
        proc = self.cluster.calicoctl(self.h0, *args)
        assert proc.returncode == 0, proc.stderr

    def tcp(self, src: str, port: int = 8080, dst: str = "web") -> bool:
        return tcp_ok(self.ns(src), self.ips[dst], port)

    def nft(self, host: Host, *args: str) -> str:
        return self.cluster.in_host(host, "nft", *args).stdout

    def host_veth(self, pod: str) -> str:
        """The pod's host-side interface, as its workload endpoint records it."""
        for kv in self.ds.list(keys.resource_prefix("workloadendpoints")):
            wep = json.loads(kv.value)
            if wep["spec"].get("pod") == pod or wep["spec"]["containerID"].endswith(f"-{pod}"):
                return str(wep["spec"]["interfaceName"])
        raise AssertionError(f"no endpoint for {pod}")


def network_policy(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def global_policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture(scope="module")
def module_lab(etcd_server: PrivateEtcd) -> Iterator[Lab]:
    listeners = Listeners()
    with pooled_cluster(etcd_server, "policy-pool", POOL, hosts=2, natOutgoing=True) as (cluster, ds):
        try:
            h0, h1 = cluster.hosts
            ips = {
                "web": cluster.add_pod(h0, "web", labels={"app": "web"}, k8s_namespace="prod"),
                "client": cluster.add_pod(h0, "client", labels={"app": "client"}, k8s_namespace="prod"),
                "other": cluster.add_pod(h0, "other"),
                "remote": cluster.add_pod(h1, "remote", labels={"app": "client"}, k8s_namespace="dev"),
            }
            lab = Lab(cluster, ds, ips)
            for port in (8080, 9090):
                listeners.tcp(lab.ns("web"), port)
            # BGP carries the remote pod's block; the agents learn every endpoint
            assert eventually(lambda: lab.tcp("remote"), True, within=30) is not None, "h1 cannot reach web"
            yield lab
        finally:
            listeners.close()


@pytest.fixture
def lab(module_lab: Lab) -> Iterator[Lab]:
    yield module_lab
    for prefix in (keys.resource_prefix("networkpolicies"), keys.resource_prefix("globalnetworkpolicies")):
        for kv in module_lab.ds.list(prefix):
            module_lab.ds.delete(kv.key, kv.mod_revision)
    assert eventually(lambda: module_lab.tcp("other"), True, within=5) is not None, "default not restored"


def test_default_profiles_let_pods_talk_across_hosts_and_the_table_is_ours(lab: Lab) -> None:
    for src in ("client", "other", "remote"):
        assert lab.tcp(src), src
        assert ping_ok(lab.ns(src), lab.ips["web"]), src
    tables = lab.nft(lab.h0, "list", "tables").split()
    assert tables == ["table", "inet", "calico"]  # one table, the project's own
    listing = lab.nft(lab.h0, "list", "map", "inet", "calico", "to-wl")
    for pod in ("web", "client", "other"):  # dispatch by interface, one element per local pod
        assert f'"{lab.host_veth(pod)}"' in listing, pod


def test_deny_by_tcp_port_blocks_only_that_port_within_a_second(lab: Lab) -> None:
    lab.apply(network_policy("no-8080", "prod", {
        "selector": "app == 'web'", "types": ["Ingress"],
        "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [8080]}},
                    {"action": "Allow"}]}))
    took = eventually(lambda: lab.tcp("client"), False, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"enforced after {took} s"
    assert not lab.tcp("remote") and not lab.tcp("other")
    assert lab.tcp("client", 9090) and lab.tcp("remote", 9090)  # another port
    assert ping_ok(lab.ns("client"), lab.ips["web"])  # another protocol
    lab.delete("networkpolicy", "no-8080", "prod")
    took = eventually(lambda: lab.tcp("client"), True, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"lifted after {took} s"


def test_deny_icmp_by_egress_of_labelled_pods(lab: Lab) -> None:
    lab.apply(global_policy("clients-no-ping", {
        "selector": "app == 'client'", "types": ["Egress"],
        "egress": [{"action": "Deny", "protocol": "ICMP"}, {"action": "Allow"}]}))
    assert eventually(lambda: ping_ok(lab.ns("client"), lab.ips["web"]), False, within=5) is not None
    assert not ping_ok(lab.ns("remote"), lab.ips["web"])  # also app=client, on the other host
    assert ping_ok(lab.ns("other"), lab.ips["web"])  # not selected
    assert lab.tcp("client") and lab.tcp("remote")  # TCP still allowed


def test_allow_only_from_a_selector(lab: Lab) -> None:
    lab.apply(network_policy("web-from-clients", "prod", {
        "selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"selector": "app == 'client'"}}]}))
    assert eventually(lambda: lab.tcp("other"), False, within=5) is not None
    assert lab.tcp("client")  # app=client in prod
    # A NetworkPolicy's rule selector only sees its own namespace: remote is app=client in dev.
    assert not lab.tcp("remote")


def test_allow_by_namespace_selector(lab: Lab) -> None:
    lab.apply(network_policy("web-from-dev", "prod", {
        "selector": "app == 'web'",
        "ingress": [{"action": "Allow", "source": {"namespaceSelector": "projectcalico.org/name == 'dev'"}}]}))
    assert eventually(lambda: lab.tcp("client"), False, within=5) is not None
    assert lab.tcp("remote")  # the dev namespace
    assert not lab.tcp("other")


def test_deny_by_source_net_and_not_nets(lab: Lab) -> None:
    lab.apply(global_policy("not-from-other", {
        "selector": "app == 'web'",
        "ingress": [{"action": "Deny", "source": {"nets": [lab.ips["other"] + "/32"]}},
                    {"action": "Allow", "source": {"notNets": [lab.ips["remote"] + "/32"]}}]}))
    assert eventually(lambda: lab.tcp("other"), False, within=5) is not None
    assert not lab.tcp("remote")  # not allowed by the second rule, so denied at the end of the policies
    assert lab.tcp("client")


def test_order_and_pass(lab: Lab) -> None:
    allow = global_policy("first-allow", {"order": 10, "selector": "app == 'web'",
                                          "ingress": [{"action": "Allow", "protocol": "TCP"}]})
    deny = global_policy("then-deny", {"order": 20, "selector": "app == 'web'",
                                       "ingress": [{"action": "Deny", "protocol": "TCP"}]})
    lab.apply(allow, deny)
    assert eventually(lambda: lab.tcp("client"), True, within=5) is not None
    assert lab.tcp("other")  # the lower order wins
    allow["spec"]["order"] = 30
    lab.apply(allow)
    assert eventually(lambda: lab.tcp("client"), False, within=5) is not None  # now the deny comes first
    # Pass skips the remaining policies: the profile (allow all) decides.
    lab.apply(global_policy("pass-first", {"order": 1, "selector": "app == 'web'",
                                           "ingress": [{"action": "Pass", "source": {"selector": "app == 'client'"}}]}))
    assert eventually(lambda: lab.tcp("client"), True, within=5) is not None
    assert lab.tcp("remote")  # a GlobalNetworkPolicy's selector sees every namespace
    assert not lab.tcp("other")  # not passed: the deny still applies


def test_a_policy_selecting_a_pod_denies_what_it_does_not_allow(lab: Lab) -> None:
    lab.apply(network_policy("only-9090", "prod", {
        "selector": "app == 'web'",
        "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["9000:9999"]}}]}))
    assert eventually(lambda: lab.tcp("client"), False, within=5) is not None
    assert lab.tcp("client", 9090)
    assert not ping_ok(lab.ns("client"), lab.ips["web"])  # nothing else is allowed
    assert ping_ok(lab.ns("web"), lab.ips["client"])  # the policy has no Egress type: web's egress is free


def test_spoofed_source_is_dropped(lab: Lab) -> None:
    host_iface = lab.host_veth("client")
    for conf in ("all", host_iface):  # reverse-path filtering is off: only the anti-spoof rule can drop
        assert lab.cluster.in_host(lab.h0, "sysctl", "-n", f"net.ipv4.conf.{conf}.rp_filter").stdout.strip() == "0"
    spoofed = "10.66.250.250"
    client = lab.ns("client")
    listeners = Listeners()
    try:
        listener = listeners.udp(lab.ns("web"), "0.0.0.0", 5353)
        subprocess.run(["ip", "-n", client, "addr", "add", f"{spoofed}/32", "dev", "eth0"], check=True)
        udp_send(client, lab.ips["web"], 5353, "honest")
        udp_send(client, lab.ips["web"], 5353, "spoofed", source=spoofed)
        got = received(listener)
        assert (lab.ips["client"], "honest") in got
        assert all(text != "spoofed" for _, text in got), got
    finally:
        listeners.close()
        subprocess.run(["ip", "-n", client, "addr", "del", f"{spoofed}/32", "dev", "eth0"], check=False)


def test_nat_outgoing_masquerades_only_traffic_leaving_the_pools(lab: Lab) -> None:
    listeners = Listeners()
    try:
        outside = listeners.udp(lab.cluster.switch, GATEWAY, 7000)  # the "outside" world
        inside = listeners.udp(lab.ns("web"), "0.0.0.0", 7000)
        udp_send(lab.ns("client"), GATEWAY, 7000, "out")
        udp_send(lab.ns("remote"), lab.ips["web"], 7000, "in")
        assert received(outside) == [(lab.h0.ip, "out")]  # masqueraded to h0's address
        assert received(inside) == [(lab.ips["remote"], "in")]  # pool to pool: never NAT
        pool = json.loads(lab.ds.get(keys.resource("ippools", "policy-pool")).value)
        proc = lab.cluster.calicoctl(lab.h0, "patch", "ippool", "policy-pool", "-p",
                                     json.dumps({"spec": {"natOutgoing": False}}))
        assert proc.returncode == 0, proc.stderr
        assert pool["spec"]["natOutgoing"] is True

        def source_seen() -> str:
            udp_send(lab.ns("client"), GATEWAY, 7000, "again")
            got = received(outside, wait=0.3)
            return got[0][0] if got else ""
        assert eventually(source_seen, lab.ips["client"], within=5) is not None
    finally:
        lab.cluster.calicoctl(lab.h0, "patch", "ippool", "policy-pool", "-p",
                              json.dumps({"spec": {"natOutgoing": True}}))
        listeners.close()


def test_converted_kubernetes_policy_is_enforced(lab: Lab) -> None:
    k8s = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "web-allow-clients", "namespace": "prod"},
           "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                 "ports": [{"protocol": "TCP", "port": 8080}]}]}}
    converted = lab.cluster.calicoctl(lab.h0, "convert", "-f", "-", stdin=yaml.safe_dump(k8s))
    assert converted.returncode == 0, converted.stderr
    applied = lab.cluster.calicoctl(lab.h0, "apply", "-f", "-", stdin=converted.stdout)
    assert applied.returncode == 0, applied.stderr
    assert eventually(lambda: lab.tcp("other"), False, within=5) is not None
    assert lab.tcp("client")  # app=client in prod, port 8080
    assert not lab.tcp("client", 9090)  # another port
    assert not lab.tcp("remote")  # app=client, but another namespace


def test_deleting_the_table_leaves_the_host_clean(lab: Lab) -> None:
    cluster, host = lab.cluster, lab.h1
    cluster.stop_agent(host)
    try:
        assert lab.nft(host, "list", "tables").split() == ["table", "inet", "calico"]  # policy stays in force
        cluster.in_host(host, "nft", "delete", "table", "inet", "calico")
        assert lab.nft(host, "list", "ruleset").strip() == ""
    finally:
        cluster.start_agent(host)
    assert lab.nft(host, "list", "tables").split() == ["table", "inet", "calico"]  # restored at start
    assert eventually(lambda: lab.tcp("remote"), True, within=10) is not None
