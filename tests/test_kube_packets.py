"""Kubernetes mode end to end, with real packets: objects created in the Kubernetes API (the
stand-in) reach etcd through calico-kube-controllers (a real process), and calico-node enforces
them in nftables.

Two simulated hosts with calico-node + BIRD. On node1: `web` (namespace prod, app=web, TCP 8080
and 9090), `client` (prod, app=client), `other` (prod, app=other); on node2: `remote` (namespace
dev, app=client). The pods are wired by the CNI plugin with K8S_POD_NAMESPACE/K8S_POD_NAME and no
labels of their own: their labels come from their Pod objects, through the workloadendpoint
controller; their namespaces' labels through the namespace controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import admin, binaries
from cni_calico.lab.cluster import Cluster
from cni_calico.lab.etcd import PrivateEtcd, free_port
from cni_calico.lab.k8s_api import K8sApiServer
from cni_calico.model import keys

from .conftest import running, wipe
from .packets import Listeners, eventually, tcp_ok

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]

POOL = "10.67.0.0/16"
ENFORCED_WITHIN = 2.0  # seconds from the API's write to the kernel enforcing it (the bound)
PODS = {"web": ("node1", "prod", "web"), "client": ("node1", "prod", "client"),
        "other": ("node1", "prod", "other"), "remote": ("node2", "dev", "client")}


class Lab:
    def __init__(self, cluster: Cluster, api: K8sApiServer, ds: EtcdDatastore, ips: dict[str, str]) -> None:
        self.cluster, self.api, self.ds, self.ips = cluster, api, ds, ips

    def ns(self, pod: str) -> str:
        return self.cluster.pod_netns(self.cluster.host(PODS[pod][0]), pod)

    def tcp(self, src: str, port: int = 8080, dst: str = "web") -> bool:
        return tcp_ok(self.ns(src), self.ips[dst], port)

    def labels_of(self, pod: str) -> dict[str, str]:
        for kv in self.ds.list(keys.resource_prefix("workloadendpoints")):
            wep = json.loads(kv.value)
            if wep["spec"].get("pod") == pod:
                return dict(wep["metadata"].get("labels") or {})
        return {}


def start_controllers(api: K8sApiServer, etcd: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(ETCD_ENDPOINTS=etcd, KUBECONFIG=str(api.kubeconfig), PROMETHEUS_METRICS_PORT=str(free_port()),
               LEADER_ELECTION_TTL="3s", LOG_LEVEL="info")
    with open(log, "wb") as out:
        return subprocess.Popen(binaries.command("calico-kube-controllers"), env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def module_lab(etcd_server: PrivateEtcd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running(etcd_server)
    log = tmp_path_factory.mktemp("kube") / "controllers.log"
    listeners = Listeners()
    controllers: subprocess.Popen[bytes] | None = None
    with EtcdDatastore(etcd_server.endpoint) as ds, K8sApiServer(bookmark_interval=1) as api:
        wipe(ds)
        admin.create_pool(ds, "kube-pool", POOL, blockSize=28)
        cluster = Cluster(etcd_server.port, hosts=2)
        try:
            for name in ("prod", "dev"):
                api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            for name in ("node1", "node2"):
                api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
            controllers = start_controllers(api, etcd_server.endpoint, log)
            cluster.start()
            cluster.start_agents()
            ips = {}
            for pod, (node, namespace, _) in PODS.items():
                ips[pod] = cluster.add_pod(cluster.host(node), pod, k8s_namespace=namespace)
            # The kubelet's part: the Pod objects, with the address the plugin gave (ADDED events)
            for pod, (node, namespace, app) in PODS.items():
                api.create({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": pod, "namespace": namespace, "labels": {"app": app}},
                            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox:1.36"}]}})
            lab = Lab(cluster, api, ds, ips)
            for pod, (_, _, app) in PODS.items():
                wait_for(lambda pod=pod, app=app: lab.labels_of(pod).get("app") == app, 30, f"{pod}'s labels")
            for port in (8080, 9090):
                listeners.tcp(lab.ns("web"), port)
            assert eventually(lambda: lab.tcp("remote"), True, within=30) is not None, "node2 cannot reach web"
            yield lab
        finally:
            listeners.close()
            if controllers is not None:
                controllers.terminate()
                try:
                    controllers.wait(20)
                except subprocess.TimeoutExpired:
                    controllers.kill()
                    controllers.wait(10)
            cluster.stop()
            wipe(ds)
            print(log.read_text(errors="replace")[-3000:] if log.exists() else "")


@pytest.fixture
def lab(module_lab: Lab) -> Iterator[Lab]:
    yield module_lab
    api = module_lab.api
    for policy in api.list("NetworkPolicy"):
        api.delete("NetworkPolicy", policy["metadata"]["name"], policy["metadata"]["namespace"])
    assert eventually(lambda: module_lab.tcp("other"), True, within=5) is not None, "default not restored"


def network_policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


WEB_FROM_CLIENTS = network_policy("web-from-clients", "prod", {
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                 "ports": [{"protocol": "TCP", "port": 8080}]}]})


def test_a_network_policy_is_enforced_within_2_s_and_deleting_it_restores_traffic(lab: Lab) -> None:
    for src in ("client", "other", "remote"):
        assert lab.tcp(src), src  # the namespaces' profiles allow everything
    began = time.monotonic()
    lab.api.create(WEB_FROM_CLIENTS)
    took = eventually(lambda: lab.tcp("other"), False, within=5)  # from the first refused attempt's start
    assert took is not None, "never enforced"
    assert took < ENFORCED_WITHIN, f"enforced {took:.2f} s after the API's create"
    assert lab.tcp("client")  # app=client in prod, port 8080
    assert not lab.tcp("client", 9090)  # not a port the policy allows
    assert not lab.tcp("remote")  # app=client, but in dev: a pod selector means the policy's own namespace
    assert time.monotonic() - began < 30
    lab.api.delete("NetworkPolicy", "web-from-clients", "prod")
    took = eventually(lambda: lab.tcp("other"), True, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"restored after {took} s"
    assert lab.tcp("client", 9090) and lab.tcp("remote")


def test_a_pods_label_change_changes_enforcement(lab: Lab) -> None:
    lab.api.create(WEB_FROM_CLIENTS)
    assert eventually(lambda: lab.tcp("other"), False, within=5) is not None
    lab.api.modify("Pod", "other", lambda o: o["metadata"]["labels"].update(app="client"), "prod")
    took = eventually(lambda: lab.tcp("other"), True, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"allowed after {took} s"
    lab.api.modify("Pod", "other", lambda o: o["metadata"]["labels"].update(app="other"), "prod")
    took = eventually(lambda: lab.tcp("other"), False, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"denied again after {took} s"


def test_a_namespaces_label_change_changes_enforcement(lab: Lab) -> None:
    lab.api.create(network_policy("web-from-blue-namespaces", "prod", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}))
    assert eventually(lambda: lab.tcp("remote"), False, within=5) is not None
    assert not lab.tcp("client")  # prod is not blue either
    lab.api.modify("Namespace", "dev", lambda o: o["metadata"].setdefault("labels", {}).update(team="blue"))
    took = eventually(lambda: lab.tcp("remote"), True, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"allowed after {took} s"
    assert not lab.tcp("client")
    lab.api.modify("Namespace", "dev", lambda o: o["metadata"]["labels"].pop("team"))
    took = eventually(lambda: lab.tcp("remote"), False, within=5)
    assert took is not None and took < ENFORCED_WITHIN, f"denied again after {took} s"
