"""Kubernetes mode on real netlink, real etcd and the Kubernetes API stand-in over HTTPS: the plugin
runs inside a simulated host with the network config the seed deploys, standalone and through
calico-node's fast path. The stand-in runs in this process on the machine's loopback and is
relayed into the host namespace (as etcd is), so its request log counts the connections the
plugin makes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_calico.cni.identity import Workload, determine_nodename, endpoint_name
from cni_calico.cni.types import DEFAULT_NODENAME_FILE
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.lab.k8s_api import K8sApiServer
from cni_calico.lab.relay import NetnsRelay
from cni_calico.model import keys

from .netlab import BASE_LINKS, NETNS_DIR, Lab, sh

pytestmark = [pytest.mark.root, pytest.mark.etcd]

NODE = determine_nodename(None, DEFAULT_NODENAME_FILE)  # the seed's config names no node: as the plugin finds it


class K8sLab:
    def __init__(self, lab: Lab, api: K8sApiServer) -> None:
        self.lab = lab
        self.api = api
        self.dir = Path(tempfile.mkdtemp(prefix=f"{lab.prefix}-k8s-"))

    def seed_conf(self, kubeconfig: Path | None = None, **extra: Any) -> dict[str, Any]:
        """Exactly what the seed's kubelet runs the plugin with (plus `extra`)."""
        return {"name": "calico-k8s-network", "cniVersion": "0.1.0", "type": "calico",
                "etcd_endpoints": self.lab.etcd, "log_level": "info",
                "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"},
                "kubernetes": {"kubeconfig": str(kubeconfig or self.api.kubeconfig)}, **extra}

    def path_env(self) -> dict[str, str]:
        """Standalone or served by the lab's calico-node: chosen by the environment, so that the
        network config stays the seed's."""
        if self.lab.fast_path:
            return {"CALICO_CNI_FAST_PATH": "only", "CALICO_CNI_SOCKET": self.lab.socket}
        return {"CALICO_CNI_FAST_PATH": "off"}

    def cni(self, command: str, conf: dict[str, Any], pod: str, netns: str, *, namespace: str = "default",
            cid: str | None = None) -> tuple[int, dict[str, Any] | None, str]:
        cid = cid or f"cid-{pod}"
        args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid}"
        return self.lab.cni(command, conf, container_id=cid, netns=netns, args=args, env=self.path_env())

    def add(self, pod: str, conf: dict[str, Any] | None = None, namespace: str = "default"
            ) -> tuple[str, dict[str, Any]]:
        netns = self.lab.pod(pod)
        status, out, err = self.cni("ADD", conf or self.seed_conf(), pod, netns, namespace=namespace)
        assert status == 0 and out is not None, (out, err)
        assert "Traceback" not in err
        return netns, out

    def create(self, kind: str, name: str, namespace: str = "", **body: Any) -> None:
        metadata: dict[str, Any] = {"name": name, **body.pop("metadata", {})}
        if namespace:
            metadata["namespace"] = namespace
        self.api.create({"apiVersion": "v1", "kind": kind, "metadata": metadata, **body})

    def pod(self, name: str, namespace: str = "default", *, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, service_account: str | None = None,
            ports: list[dict[str, Any]] | None = None) -> None:
        spec: dict[str, Any] = {"containers": [{"name": "main", "image": "nginx", "ports": ports or []}]}
        if service_account:
            spec["serviceAccountName"] = service_account
        self.create("Pod", name, namespace, metadata={"labels": labels or {}, "annotations": annotations or {}},
                    spec=spec)


@pytest.fixture
def k8s(lab: Lab) -> Iterator[K8sLab]:
    with K8sApiServer() as api, NetnsRelay(api.port) as relay:
        relay.expose(f"{NETNS_DIR}/{lab.host}")  # the host sees the API at the kubeconfig's 127.0.0.1:<port>
        k8s_lab = K8sLab(lab, api)
        try:
            yield k8s_lab
        finally:
            shutil.rmtree(k8s_lab.dir, ignore_errors=True)


def endpoint(store: EtcdDatastore, pod: str, namespace: str = "default") -> dict[str, Any]:
    name = endpoint_name(NODE, Workload("", namespace, pod), "eth0")
    kv = store.get(keys.resource("workloadendpoints", name, namespace))
    assert kv is not None, f"no endpoint for {namespace}/{pod}"
    return dict(json.loads(kv.value))


def assert_nothing_changed(lab: Lab, store: EtcdDatastore) -> None:
    assert store.list(keys.resource_prefix("workloadendpoints")) == []
    assert store.list(keys.HANDLE_PREFIX) == []
    assert store.list("/calico/ipam/v2/assignment/") == []  # not even a block claimed
    assert lab.host_links() == BASE_LINKS


def address(result: dict[str, Any]) -> str:
    return str(result["ip4"]["ip"].split("/")[0])  # cniVersion 0.1.0: the ip4 shape


# ---- what the pod gives its endpoint ------------------------------------------------------------
def test_the_seed_config_gives_the_endpoint_the_pods_labels_service_account_and_ports(
        k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.create("Namespace", "shop", metadata={"labels": {"team": "checkout"}})
    k8s.create("ServiceAccount", "front", "shop")
    k8s.pod("web", "shop", labels={"app": "web", "tier": "front"}, service_account="front",
            ports=[{"name": "http", "containerPort": 80}, {"containerPort": 9090}])
    k8s.api.log.clear()
    netns, result = k8s.add("web", namespace="shop")
    assert result["cniVersion"] == "0.1.0" and result["ip4"]["ip"].endswith("/32")

    wep = endpoint(etcd_store, "web", "shop")
    assert wep["metadata"]["labels"] == {"app": "web", "tier": "front", "projectcalico.org/namespace": "shop",
                                         "projectcalico.org/orchestrator": "k8s",
                                         "projectcalico.org/serviceaccount": "front"}
    assert wep["spec"]["serviceAccountName"] == "front"
    assert wep["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert wep["spec"]["profiles"] == ["kns.shop", "ksa.shop.front"]
    assert wep["spec"]["ipNetworks"] == [f"{address(result)}/32"] and wep["spec"]["node"] == NODE
    # The namespace's profile, created as calico-kube-controllers writes it: its labels for selectors.
    kv = etcd_store.get(keys.resource("profiles", "kns.shop"))
    assert kv is not None
    assert json.loads(kv.value)["spec"]["labelsToApply"] == {
        "pcns.projectcalico.org/name": "shop", "pcns.team": "checkout", "pcns.kubernetes.io/metadata.name": "shop"}
    # The pod is wired as any other: its address in its namespace.
    addr = sh("ip", "-n", os.path.basename(netns), "-o", "-4", "addr", "show", "eth0").stdout
    assert f"inet {address(result)}/32" in addr
    # Two GETs, the namespace and the pod: never a list, a watch or a write.
    assert [(r.method, r.path, r.query, r.status) for r in k8s.api.log.records()] == [
        ("GET", "/api/v1/namespaces/shop", "", 200), ("GET", "/api/v1/namespaces/shop/pods/web", "", 200)]


def test_without_policy_k8s_the_api_is_not_asked(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.pod("plain", labels={"app": "plain"})
    k8s.api.log.clear()
    conf = {key: value for key, value in k8s.seed_conf().items() if key != "policy"}
    k8s.add("plain", conf)
    wep = endpoint(etcd_store, "plain")
    assert wep["metadata"]["labels"] == {"projectcalico.org/namespace": "default",
                                         "projectcalico.org/orchestrator": "k8s"}
    assert wep["spec"]["profiles"] == ["kns.default"] and "serviceAccountName" not in wep["spec"]
    assert k8s.api.log.count() == 0
    profile = json.loads(etcd_store.get(keys.resource("profiles", "kns.default")).value)
    assert profile["spec"] == {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}
    # The first pod in Kubernetes mode gives that allow-all profile the namespace's labels.
    k8s.pod("labelled")
    k8s.add("labelled")
    profile = json.loads(etcd_store.get(keys.resource("profiles", "kns.default")).value)
    assert profile["spec"]["labelsToApply"] == {"pcns.projectcalico.org/name": "default",
                                                "pcns.kubernetes.io/metadata.name": "default"}


def test_client_certificate_and_token_authentication(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.pod("by-cert", labels={"auth": "cert"})
    k8s.pod("by-token", labels={"auth": "token"})
    k8s.api.log.clear()
    k8s.add("by-cert", k8s.seed_conf(k8s.api.kubeconfig))
    k8s.add("by-token", k8s.seed_conf(k8s.api.kubeconfig_token))
    assert endpoint(etcd_store, "by-cert")["metadata"]["labels"]["auth"] == "cert"
    assert endpoint(etcd_store, "by-token")["metadata"]["labels"]["auth"] == "token"
    assert [r.user for r in k8s.api.log.records()] == ["cni-calico-admin"] * 2 + ["lab-token-user"] * 2


# ---- IPAM annotations -----------------------------------------------------------------------------
def test_pool_and_address_annotations_are_honoured(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    create_pool(etcd_store, "p2", "10.101.0.0/16")
    k8s.create("Namespace", "blue", metadata={"annotations": {"cni.projectcalico.org/ipv4pools": '["10.101.0.0/16"]'}})
    k8s.pod("from-ns", "blue")
    k8s.pod("pod-wins", "blue", annotations={"cni.projectcalico.org/ipv4pools": '["p1"]'})
    k8s.pod("fixed", annotations={"cni.projectcalico.org/ipAddrs": '["10.100.77.7"]'})
    _, from_ns = k8s.add("from-ns", namespace="blue")
    _, pod_wins = k8s.add("pod-wins", namespace="blue")
    fixed_netns, fixed = k8s.add("fixed")
    assert address(from_ns).startswith("10.101.")  # the namespace's pool
    assert address(pod_wins).startswith("10.100.")  # the pod's annotation over the namespace's
    assert fixed["ip4"]["ip"] == "10.100.77.7/32"  # asked of calico-ipam, which holds it for the pod
    handle = etcd_store.get(keys.handle("calico-k8s-network.cid-fixed"))
    assert handle is not None and json.loads(handle.value)["block"] == {"10.100.77.0/26": 1}
    status, _, err = k8s.cni("DEL", k8s.seed_conf(), "fixed", fixed_netns)
    assert status == 0, err
    assert etcd_store.get(keys.handle("calico-k8s-network.cid-fixed")) is None


def test_an_address_another_pod_holds_is_refused_and_changes_nothing(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.pod("first", annotations={"cni.projectcalico.org/ipAddrs": '["10.100.5.5"]'})
    k8s.pod("second", annotations={"cni.projectcalico.org/ipAddrs": '["10.100.5.5"]'})
    k8s.add("first")
    links = k8s.lab.host_links()
    status, out, err = k8s.cni("ADD", k8s.seed_conf(), "second", k8s.lab.pod("second"))
    assert status == 1 and out is not None and out["code"] == 103, (out, err)
    assert k8s.lab.host_links() == links and len(etcd_store.list(keys.HANDLE_PREFIX)) == 1


def test_floating_ips_and_addresses_without_ipam_need_their_feature(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.pod("floating", annotations={"cni.projectcalico.org/floatingIPs": '["203.0.113.9"]'})
    k8s.pod("no-ipam", annotations={"cni.projectcalico.org/ipAddrsNoIpam": '["10.250.0.9"]'})
    for pod, feature in (("floating", "floating_ips"), ("no-ipam", "ip_addrs_no_ipam")):
        status, out, err = k8s.cni("ADD", k8s.seed_conf(), pod, k8s.lab.pod(f"{pod}-off"))
        assert status == 1 and out is not None and out["code"] == 111, (out, err)
        assert "the feature is not enabled" in out["msg"] and feature in out["details"]
        assert "Traceback" not in err
        assert_nothing_changed(k8s.lab, etcd_store)

    enabled = k8s.seed_conf(feature_control={"floating_ips": True, "ip_addrs_no_ipam": True})
    _, floating = k8s.add("floating", enabled)
    assert endpoint(etcd_store, "floating")["spec"]["ipNATs"] == [
        {"internalIP": address(floating), "externalIP": "203.0.113.9"}]
    netns, no_ipam = k8s.add("no-ipam", enabled)
    assert no_ipam["ip4"]["ip"] == "10.250.0.9/32"  # outside every pool: IPAM was not asked
    assert endpoint(etcd_store, "no-ipam")["spec"]["ipNetworks"] == ["10.250.0.9/32"]
    assert etcd_store.get(keys.handle("calico-k8s-network.cid-no-ipam")) is None
    assert "10.250.0.9 dev cali" in k8s.lab.host_routes()
    status, _, err = k8s.cni("DEL", enabled, "no-ipam", netns)
    assert status == 0, err
    assert "10.250.0.9" not in k8s.lab.host_routes()


@pytest.mark.parametrize("annotations", [
    {"cni.projectcalico.org/ipv4pools": "10.100.0.0/16"},  # not a JSON list
    {"cni.projectcalico.org/ipAddrs": '["10.100.0.1", "10.100.0.2"]'},  # two IPv4 addresses
])
def test_a_bad_annotation_is_error_111_and_changes_nothing(k8s: K8sLab, etcd_store: EtcdDatastore,
                                                            annotations: dict[str, str]) -> None:
    k8s.pod("bad", annotations=annotations)
    status, out, err = k8s.cni("ADD", k8s.seed_conf(), "bad", k8s.lab.pod("bad"))
    assert status == 1 and out is not None and out["code"] == 111, (out, err)
    assert next(iter(annotations)) in out["msg"] and "Traceback" not in err
    assert_nothing_changed(k8s.lab, etcd_store)


# ---- the API missing what is asked, or missing ------------------------------------------------------
def test_a_pod_that_does_not_exist_is_error_110_and_changes_nothing(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    status, out, err = k8s.cni("ADD", k8s.seed_conf(), "ghost", k8s.lab.pod("ghost"))
    assert status == 1 and out is not None, err
    assert (out["code"], out["msg"]) == (110, "pod default/ghost does not exist in the Kubernetes API")
    assert out["cniVersion"] == "0.1.0" and "Traceback" not in err
    assert_nothing_changed(k8s.lab, etcd_store)


def test_the_api_server_down_is_error_11_and_changes_nothing(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.pod("web")
    with socket.socket() as s:  # a port nobody listens on, inside the host namespace either
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    document = yaml.safe_load(k8s.api.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    down = k8s.dir / "kubeconfig-down"
    down.write_text(yaml.safe_dump(document))
    status, out, err = k8s.cni("ADD", k8s.seed_conf(down), "web", k8s.lab.pod("web"))
    assert status == 1 and out is not None and out["code"] == 11, (out, err)
    assert out["msg"] == f"cannot reach the Kubernetes API at https://127.0.0.1:{port}: Connection refused"
    assert "Traceback" not in err
    assert_nothing_changed(k8s.lab, etcd_store)


def test_a_bad_kubeconfig_is_error_7_and_changes_nothing(k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    k8s.pod("web")
    broken = k8s.dir / "kubeconfig-broken"
    broken.write_text("current-context: nowhere\ncontexts: []\n")
    status, out, err = k8s.cni("ADD", k8s.seed_conf(broken), "web", k8s.lab.pod("web"))
    assert status == 1 and out is not None and out["code"] == 7, (out, err)
    assert out["msg"] == f"kubeconfig {broken}: context 'nowhere' not found"
    assert_nothing_changed(k8s.lab, etcd_store)


# ---- connections ---------------------------------------------------------------------------------
def test_the_fast_path_keeps_one_api_connection_and_standalone_makes_one_per_call(
        k8s: K8sLab, etcd_store: EtcdDatastore) -> None:
    pods = [f"p{n}" for n in range(4)]
    for pod in pods:
        k8s.pod(pod, labels={"n": pod})
    before = k8s.api.log.connections
    for pod in pods:
        k8s.add(pod)
        assert endpoint(etcd_store, pod)["metadata"]["labels"]["n"] == pod
    opened = k8s.api.log.connections - before
    assert k8s.api.log.count(method="GET") == 2 * len(pods)
    assert opened == (1 if k8s.lab.fast_path else len(pods))
