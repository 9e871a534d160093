"""calico-kube-controllers against a real etcd and the Kubernetes API stand-in (in process).

The controllers run in this process (`Manager`, what the leader runs) except where the claim is
about processes: the leader election runs two real `calico-kube-controllers` processes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from cni_calico.allocation.audit import allocations_of
from cni_calico.allocation.block import AllocationBlock
from cni_calico.allocation.client import IpamClient, ReleaseOptions, Request
from cni_calico.ctl import ipam as ctl_ipam
from cni_calico.datastore import EtcdDatastore
from cni_calico.kube import client as kube_client
from cni_calico.kube.leader import LEADER_KEY, Elector, Fenced, LostLeadership
from cni_calico.kube.manager import Manager
from cni_calico.kube.metrics import registry
from cni_calico.lab import admin, binaries
from cni_calico.lab.etcd import PrivateEtcd, free_port
from cni_calico.lab.hosts import PluginHost
from cni_calico.lab.k8s_api import K8sApiServer
from cni_calico.model import keys
from cni_calico.model.keys import node_key
from cni_calico.model.v3 import ObjectMeta, WorkloadEndpoint, WorkloadEndpointSpec, to_json
from cni_calico.node import startup

pytestmark = pytest.mark.etcd

ALL = ("policy", "namespace", "serviceaccount", "workloadendpoint", "node")


def eventually(condition: Callable[[], Any], within: float = 10, every: float = 0.02) -> Any:
    """The first truthy value of `condition()`, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {condition}")
        time.sleep(every)


def stays(condition: Callable[[], Any], for_seconds: float) -> bool:
    deadline = time.monotonic() + for_seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def api() -> Iterator[K8sApiServer]:
    with K8sApiServer(watch_timeout=3, bookmark_interval=0.5) as server:
        yield server


@pytest.fixture
def kube(api: K8sApiServer) -> Iterator[kube_client.KubeClient]:
    client = kube_client.connect(str(api.kubeconfig))
    yield client
    client.close()


class Controllers:
    """Managers started by a test, all stopped at its end."""

    def __init__(self, kube: kube_client.KubeClient, ds: EtcdDatastore) -> None:
        self.kube, self.ds = kube, ds
        self.running: list[Manager] = []

    def start(self, names: tuple[str, ...] = ALL, *, period: float = 300, grace: float = 900) -> Manager:
        manager = Manager(self.kube, self.ds, names, reconciler_period=period, leak_grace_period=grace,
                          metrics=registry(), watch_timeout=(2, 4)).start()
        self.running.append(manager)
        eventually(lambda: manager.ready()[0], within=20)
        return manager

    def stop(self, manager: Manager) -> None:
        manager.stop()
        self.running.remove(manager)


@pytest.fixture
def controllers(kube: kube_client.KubeClient, etcd_store: EtcdDatastore) -> Iterator[Controllers]:
    running = Controllers(kube, etcd_store)
    yield running
    for manager in list(running.running):
        running.stop(manager)


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def network_policy(name: str, ns: str, port: int = 8080, app: str = "web") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": port}]}]}}


def pod(name: str, ns: str, node: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox:1.36"}]}}


def knp_key(ns: str, name: str) -> str:
    return keys.resource("networkpolicies", f"knp.default.{name}", ns)


def stored(ds: EtcdDatastore, key: str) -> dict[str, Any] | None:
    kv = ds.get(key)
    return json.loads(kv.value) if kv else None


def owned_keys(ds: EtcdDatastore, plural: str, prefix: str) -> list[str]:
    return [kv.key for kv in ds.list(keys.resource_prefix(plural)) if kv.key.rsplit("/", 1)[1].startswith(prefix)]


# ------------------------------------------------------------------ each controller


def test_policy_create_update_delete(api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    api.create(namespace("prod"))
    controllers.start(("policy",))
    began = time.monotonic()
    api.create(network_policy("web", "prod"))
    eventually(lambda: stored(etcd_store, knp_key("prod", "web")))
    took = time.monotonic() - began
    policy = stored(etcd_store, knp_key("prod", "web"))
    assert policy is not None
    assert policy["spec"]["ingress"] == [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}]
    assert policy["metadata"]["uid"] == api.get("NetworkPolicy", "web", "prod")["metadata"]["uid"]
    assert took < 1.0, f"written {took:.3f} s after the API's create"

    api.modify("NetworkPolicy", "web", lambda o: o["spec"]["ingress"][0]["ports"][0].update(port=9090), "prod")
    eventually(lambda: (stored(etcd_store, knp_key("prod", "web")) or {}).get("spec", {}).get("ingress", [{}])[0]
               .get("destination") == {"ports": [9090]})
    api.delete("NetworkPolicy", "web", "prod")
    eventually(lambda: stored(etcd_store, knp_key("prod", "web")) is None)


def test_namespace_profiles_follow_namespaces(api: K8sApiServer, controllers: Controllers,
                                              etcd_store: EtcdDatastore) -> None:
    api.create(namespace("prod", team="web"))
    controllers.start(("namespace",))
    profile_key = keys.resource("profiles", "kns.prod")
    profile = eventually(lambda: stored(etcd_store, profile_key))
    assert profile["spec"] == {
        "ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
        "labelsToApply": {"pcns.team": "web", "pcns.kubernetes.io/metadata.name": "prod",
                          "pcns.projectcalico.org/name": "prod"}}
    for bootstrap in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert stored(etcd_store, keys.resource("profiles", f"kns.{bootstrap}"))
    api.modify("Namespace", "prod", lambda o: o["metadata"]["labels"].update(team="db"))
    eventually(lambda: stored(etcd_store, profile_key)["spec"]["labelsToApply"].get("pcns.team") == "db")
    api.delete("Namespace", "prod")
    eventually(lambda: stored(etcd_store, profile_key) is None)


def test_service_account_profiles(api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    api.create(namespace("ci"))
    controllers.start(("serviceaccount",))
    api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "builder", "namespace": "ci", "labels": {"role": "build"}}})
    key = keys.resource("profiles", "ksa.ci.builder")
    profile = eventually(lambda: stored(etcd_store, key))
    assert profile["spec"] == {"labelsToApply": {"pcsa.role": "build", "pcsa.projectcalico.org/name": "builder"}}
    assert stored(etcd_store, keys.resource("profiles", "ksa.ci.default"))  # the namespace's own account
    api.modify("ServiceAccount", "builder", lambda o: o["metadata"]["labels"].update(role="deploy"), "ci")
    eventually(lambda: stored(etcd_store, key)["spec"]["labelsToApply"]["pcsa.role"] == "deploy")
    api.delete("ServiceAccount", "builder", "ci")
    eventually(lambda: stored(etcd_store, key) is None)


def endpoint(ds: EtcdDatastore, ns: str, pod_name: str, *, node: str = "node1", ip: str = "10.65.0.5",
             iface: str = "eth0") -> str:
    """A pod's endpoint as the CNI plugin writes it (labels from the network config only)."""
    name = f"{node}-k8s-{pod_name.replace('-', '--')}-{iface}"
    wep = WorkloadEndpoint(
        metadata=ObjectMeta(name=name, namespace=ns, labels={"from-cni-config": "x", "projectcalico.org/namespace": ns,
                                                           "projectcalico.org/orchestrator": "k8s"}),
        spec=WorkloadEndpointSpec(orchestrator="k8s", workload=pod_name, pod=pod_name, node=node,
                                  containerID=f"c-{pod_name}", endpoint=iface, interfaceName=f"cali{pod_name[:8]}",
                                  mac="ee:ee:ee:ee:ee:ee", ipNetworks=[f"{ip}/32"], profiles=[f"kns.{ns}"]))
    key = keys.resource("workloadendpoints", name, ns)
    assert ds.create(key, to_json(wep))
    return key


def test_pod_labels_reach_its_endpoints_and_nothing_else(api: K8sApiServer, controllers: Controllers,
                                                         etcd_store: EtcdDatastore) -> None:
    api.create(namespace("prod"))
    web = endpoint(etcd_store, "prod", "web-1")
    web_net1 = endpoint(etcd_store, "prod", "web-1", iface="net1", ip="10.65.0.6")  # a second interface
    other = endpoint(etcd_store, "prod", "other", ip="10.65.0.7")
    before = {key: stored(etcd_store, key) for key in (web, web_net1, other)}
    controllers.start(("workloadendpoint",))
    api.create(pod("web-1", "prod", "node1", app="web"))
    expected = {"app": "web", "projectcalico.org/namespace": "prod", "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": "default"}
    for key in (web, web_net1):
        eventually(lambda key=key: stored(etcd_store, key)["metadata"]["labels"] == expected)
        after = stored(etcd_store, key)
        assert after["spec"].pop("serviceAccountName") == "default"
        assert after["spec"] == before[key]["spec"]  # only the labels and the account change
    assert stored(etcd_store, other) == before[other]  # no pod: untouched
    api.modify("Pod", "web-1", lambda o: o["metadata"]["labels"].update(app="db", tier="2"), "prod")
    eventually(lambda: stored(etcd_store, web)["metadata"]["labels"].get("tier") == "2")
    assert stored(etcd_store, web)["metadata"]["labels"]["app"] == "db"
    api.delete("Pod", "web-1", "prod")
    time.sleep(0.5)
    assert stored(etcd_store, web) is not None  # the CNI plugin's DEL removes endpoints, not this controller


def test_an_endpoint_written_after_its_pod_is_labelled_at_the_pods_next_change(
        api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    """The kubelet's order: the Pod exists, then the CNI plugin writes its endpoint, then the
    kubelet writes the pod's status (its IP): that status update is what labels the endpoint."""
    api.create(namespace("prod"))
    controllers.start(("workloadendpoint",))
    api.create(pod("late", "prod", "node1", app="late"))
    time.sleep(0.3)  # seen, with no endpoint yet
    key = endpoint(etcd_store, "prod", "late")
    api.modify("Pod", "late", lambda o: o["status"].update(podIP="10.65.0.5", phase="Running"), "prod", status=True)
    eventually(lambda: stored(etcd_store, key)["metadata"]["labels"].get("app") == "late")
    # Further status changes alone read nothing: the endpoint is as the pod wants it.
    revision = etcd_store.get(key).mod_revision
    api.modify("Pod", "late", lambda o: o["status"].update(phase="Succeeded"), "prod", status=True)
    time.sleep(0.3)
    assert etcd_store.get(key).mod_revision == revision


# ------------------------------------------------------------------ resync


def test_resync_after_cut_streams_and_after_410(api: K8sApiServer, controllers: Controllers,
                                                etcd_store: EtcdDatastore) -> None:
    api.create(namespace("prod"))
    api.create(network_policy("keep", "prod"))
    api.create(network_policy("gone", "prod"))
    manager = controllers.start(("policy",))
    informer = manager.informers["networkpolicies"]
    lists = api.log.count(path="/apis/networking.k8s.io/v1/networkpolicies", watch=False)

    # A broken stream is resumed from the last version: nothing missed, no new list.
    api.cut_watches(abrupt=True)
    api.create(network_policy("during-cut", "prod"))
    eventually(lambda: stored(etcd_store, knp_key("prod", "during-cut")))
    assert api.log.count(path="/apis/networking.k8s.io/v1/networkpolicies", watch=False) == lists

    # History gone while the stream is down: the resumed watch gets 410, the informer lists again
    # and finds the delete it never saw as an event.
    with api.store.lock:  # the informer's reconnection waits until all of this is done
        api.cut_watches(abrupt=True)
        api.delete("NetworkPolicy", "gone", "prod")
        api.modify("NetworkPolicy", "keep", lambda o: o["spec"]["ingress"][0]["ports"][0].update(port=7070), "prod")
        api.compact()
    eventually(lambda: stored(etcd_store, knp_key("prod", "gone")) is None)
    eventually(lambda: stored(etcd_store, knp_key("prod", "keep"))["spec"]["ingress"][0]["destination"]
               == {"ports": [7070]})
    assert api.log.count(path="/apis/networking.k8s.io/v1/networkpolicies", watch=False) > lists
    assert sorted(owned_keys(etcd_store, "networkpolicies", "knp.default.")) == sorted(
        knp_key("prod", n) for n in ("keep", "during-cut"))
    # And clean stream ends (the server's watch timeout here is 3 s) resume without a list.
    version = informer.resource_version
    lists = api.log.count(path="/apis/networking.k8s.io/v1/networkpolicies", watch=False)
    time.sleep(7)
    assert api.log.count(path="/apis/networking.k8s.io/v1/networkpolicies", watch=True) >= 2
    assert api.log.count(path="/apis/networking.k8s.io/v1/networkpolicies", watch=False) == lists
    assert int(informer.resource_version) >= int(version)  # bookmarks move it on


def test_restart_converges_without_duplicates_or_stale_objects(api: K8sApiServer, controllers: Controllers,
                                                                etcd_store: EtcdDatastore) -> None:
    api.create(namespace("prod", team="a"))
    for name in ("a", "b"):
        api.create(network_policy(name, "prod"))
    first = controllers.start(("policy", "namespace"))
    eventually(lambda: len(owned_keys(etcd_store, "networkpolicies", "knp.default.")) == 2)
    controllers.stop(first)
    # While no controller runs: a delete, an update, a create, a stale policy and a hand-edited profile.
    api.delete("NetworkPolicy", "a", "prod")
    api.modify("NetworkPolicy", "b", lambda o: o["spec"]["ingress"][0]["ports"][0].update(port=1234), "prod")
    api.create(network_policy("c", "prod"))
    api.create(namespace("dev"))
    assert etcd_store.create(knp_key("prod", "ghost"), json.dumps(stored(etcd_store, knp_key("prod", "b"))))
    profile_key = keys.resource("profiles", "kns.prod")
    edited = stored(etcd_store, profile_key)
    edited["spec"]["labelsToApply"]["pcns.team"] = "edited"
    kv = etcd_store.get(profile_key)
    assert etcd_store.update(profile_key, json.dumps(edited), kv.mod_revision)

    controllers.start(("policy", "namespace"))
    assert sorted(owned_keys(etcd_store, "networkpolicies", "knp.default.")) == [
        knp_key("prod", "b"), knp_key("prod", "c")]
    assert stored(etcd_store, knp_key("prod", "b"))["spec"]["ingress"][0]["destination"] == {"ports": [1234]}
    assert stored(etcd_store, profile_key)["spec"]["labelsToApply"]["pcns.team"] == "a"
    assert stored(etcd_store, keys.resource("profiles", "kns.dev"))


def test_periodic_reconcile_removes_what_no_event_reports(api: K8sApiServer, controllers: Controllers,
                                                          etcd_store: EtcdDatastore) -> None:
    api.create(namespace("prod"))
    api.create(network_policy("real", "prod"))
    controllers.start(("policy",), period=1.0)
    eventually(lambda: stored(etcd_store, knp_key("prod", "real")))
    # Written behind the controller's back (a missed delete looks the same): no watch event says so.
    assert etcd_store.create(knp_key("prod", "stale"), json.dumps(stored(etcd_store, knp_key("prod", "real"))))
    not_knp = keys.resource("networkpolicies", "users-own", "prod")
    assert etcd_store.create(not_knp, json.dumps({"kind": "NetworkPolicy"}))
    eventually(lambda: stored(etcd_store, knp_key("prod", "stale")) is None, within=5)
    assert stored(etcd_store, knp_key("prod", "real")) and stored(etcd_store, not_knp)  # only what it owns


# ------------------------------------------------------------------ one writer


def test_a_fenced_store_refuses_writes_once_the_leadership_is_gone(etcd_store: EtcdDatastore) -> None:
    elector = Elector(etcd_store, "first", ttl=10)
    leadership = elector.try_acquire()
    assert leadership is not None and Elector(etcd_store, "second", ttl=10).try_acquire() is None
    fenced = Fenced(etcd_store, LEADER_KEY, leadership.revision)
    assert fenced.create("/fence-test/a", "1")
    assert fenced.create("/fence-test/a", "1") is False  # an ordinary conflict stays one
    etcd_store.revoke_lease(leadership.lease_id)  # the lease is gone (expired, say)
    second = Elector(etcd_store, "second", ttl=10).try_acquire()
    assert second is not None
    with pytest.raises(LostLeadership):
        fenced.create("/fence-test/b", "1")
    assert etcd_store.get("/fence-test/b") is None and fenced.lost.is_set()
    etcd_store.revoke_lease(second.lease_id)


def controller_process(api: K8sApiServer, etcd: str, identity: str, log: Path, **extra: str
                       ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(ETCD_ENDPOINTS=etcd, KUBECONFIG=str(api.kubeconfig), LEADER_ELECTION_ID=identity,
               LEADER_ELECTION_TTL="2s", PROMETHEUS_METRICS_PORT=str(port), LOG_LEVEL="info", **extra)
    with open(log, "wb") as out:
        process = subprocess.Popen(binaries.command("calico-kube-controllers"), env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return process, port


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else None


def leader(ds: EtcdDatastore) -> str | None:
    kv = ds.get(LEADER_KEY)
    return json.loads(kv.value)["holder"] if kv else None


def test_two_instances_one_writes_and_the_other_takes_over(api: K8sApiServer, etcd: str, etcd_store: EtcdDatastore,
                                                           tmp_path: Path) -> None:
    api.create(namespace("prod"))
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for identity in ("alpha", "beta"):
            processes[identity] = controller_process(api, etcd, identity, tmp_path / f"{identity}.log",
                                                     ENABLED_CONTROLLERS="policy")
        first = eventually(lambda: leader(etcd_store), within=30)
        second = "beta" if first == "alpha" else "alpha"
        eventually(lambda: metric(processes[first][1], "calico_kube_controllers_leader") == 1, within=30)
        eventually(lambda: metric(processes[second][1], "calico_kube_controllers_leader") == 0, within=30)
        api.create(network_policy("one", "prod"))
        eventually(lambda: stored(etcd_store, knp_key("prod", "one")), within=20)
        # The standby reads nothing from the API: it has not even listed.
        assert "policy: created" not in (tmp_path / f"{second}.log").read_text()
        assert "running controllers" not in (tmp_path / f"{second}.log").read_text()

        processes[first][0].send_signal(signal.SIGKILL)  # no resignation: the lease must run out
        processes[first][0].wait(10)
        killed_at = time.monotonic()
        eventually(lambda: leader(etcd_store) == second, within=15)
        took_over = time.monotonic() - killed_at
        api.create(network_policy("two", "prod"))
        eventually(lambda: stored(etcd_store, knp_key("prod", "two")), within=20)
        assert took_over < 2 + 1.5, f"took over {took_over:.1f} s after the leader died (TTL 2 s)"
        assert sorted(owned_keys(etcd_store, "networkpolicies", "knp.default.")) == [
            knp_key("prod", "one"), knp_key("prod", "two")]

        # A clean stop resigns: a new standby takes over at once, not after the TTL.
        processes["gamma"] = controller_process(api, etcd, "gamma", tmp_path / "gamma.log",
                                                ENABLED_CONTROLLERS="policy")
        eventually(lambda: metric(processes["gamma"][1], "calico_kube_controllers_leader") == 0, within=30)
        processes[second][0].send_signal(signal.SIGTERM)
        assert processes[second][0].wait(20) == 0
        stopped_at = time.monotonic()
        eventually(lambda: leader(etcd_store) == "gamma", within=10)
        assert time.monotonic() - stopped_at < 1.5
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_a_leader_paused_past_its_lease_writes_nothing_when_it_wakes(api: K8sApiServer, etcd: str,
                                                                     etcd_store: EtcdDatastore,
                                                                     tmp_path: Path) -> None:
    """What a lease alone does not cover: the old leader resumes believing it still leads, with a
    view that the new leader has since corrected. Here the two follow different API servers, so
    the old one's next reconcile (every 200 ms) wants back a policy the new one deleted; its
    writes are fenced by the election key, so none lands, and it steps down."""
    api.create(namespace("prod"))
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    with K8sApiServer(watch_timeout=3, bookmark_interval=0.5) as alphas_api:
        alphas_api.create(namespace("prod"))
        alphas_api.create(network_policy("alphas-view", "prod"))
        try:
            processes["alpha"] = controller_process(alphas_api, etcd, "alpha", tmp_path / "alpha.log",
                                                    ENABLED_CONTROLLERS="policy", RECONCILER_PERIOD="200ms")
            eventually(lambda: stored(etcd_store, knp_key("prod", "alphas-view")), within=30)
            processes["beta"] = controller_process(api, etcd, "beta", tmp_path / "beta.log",
                                                   ENABLED_CONTROLLERS="policy")
            eventually(lambda: metric(processes["beta"][1], "calico_kube_controllers_leader") == 0, within=30)

            os.kill(processes["alpha"][0].pid, signal.SIGSTOP)
            eventually(lambda: leader(etcd_store) == "beta", within=15)
            eventually(lambda: stored(etcd_store, knp_key("prod", "alphas-view")) is None, within=20)
            os.kill(processes["alpha"][0].pid, signal.SIGCONT)
            assert stays(lambda: stored(etcd_store, knp_key("prod", "alphas-view")) is None, 2.0)
            eventually(lambda: "no longer leading" in (tmp_path / "alpha.log").read_text(), within=10)
            assert leader(etcd_store) == "beta"
            eventually(lambda: metric(processes["alpha"][1], "calico_kube_controllers_leader") == 0, within=10)
        finally:
            for process, _ in processes.values():
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGCONT)
                    process.kill()
                    process.wait(10)


# ------------------------------------------------------------------ nodes and IPAM


POOL = "10.65.0.0/16"


def calico_node(ds: EtcdDatastore, name: str, ip: str) -> None:
    document = {"kind": "Node", "apiVersion": "projectcalico.org/v3", "metadata": {"name": name},
                "spec": {"bgp": {"ipv4Address": f"{ip}/24"}}}
    assert ds.create(node_key(name), json.dumps(document, sort_keys=True))


def k8s_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def pod_with_address(ds: EtcdDatastore, ns: str, name: str, node: str, *, wep: bool = True) -> str:
    """What the CNI plugin leaves for a pod: an allocation (attributes node, namespace, pod) and
    an endpoint holding its address."""
    handle = f"k8s-pod-network.c-{name}"
    [address] = IpamClient(ds, node).auto_assign(Request(handle, {"node": node, "namespace": ns, "pod": name}))
    if wep:
        endpoint(ds, ns, name, node=node, ip=str(address.ip))
    return str(address.ip)


def ipam_check(ds: EtcdDatastore) -> str:
    out = io.StringIO()
    ctl_ipam.check(ds, out, show_problem_ips=True)
    return out.getvalue()


def test_deleting_a_kubernetes_node_releases_its_ipam(api: K8sApiServer, controllers: Controllers,
                                                      etcd_store: EtcdDatastore) -> None:
    admin.create_pool(etcd_store, "pool", POOL, ipipMode="Always")
    api.create(namespace("prod"))
    for index, name in enumerate(("node1", "node2"), start=1):
        calico_node(etcd_store, name, f"192.0.2.{10 + index}")
        api.create(k8s_node(name))
    calico_node(etcd_store, "bare-metal", "192.0.2.99")  # no Kubernetes node of that name: never touched
    pods = {name: pod_with_address(etcd_store, "prod", name, "node1") for name in ("a", "b")}
    pods["c"] = pod_with_address(etcd_store, "prod", "c", "node2")
    for name, node in (("a", "node1"), ("b", "node1"), ("c", "node2")):
        api.create(pod(name, "prod", node))
    leaked = pod_with_address(etcd_store, "prod", "long-gone", "node1", wep=False)  # its pod is not in the API
    IpamClient(etcd_store, "node1").auto_assign(
        Request("ipip-tunnel-addr-node1", {"node": "node1", "type": "ipipTunnelAddress"}))
    assert "found 1 problems" in ipam_check(etcd_store)  # the leaked one, before anything runs

    controllers.start(("node",))
    for name in ("node1", "node2"):  # linked to their Kubernetes nodes, as calico-node does under Kubernetes
        eventually(lambda name=name: stored(etcd_store, node_key(name))["spec"].get("orchRefs") == [
            {"nodeName": name, "orchestrator": "k8s"}])
    assert "orchRefs" not in stored(etcd_store, node_key("bare-metal"))["spec"]

    # The node goes with a pod still bound to it (pod GC has not run yet): that pod's address holds it.
    api.delete("Pod", "a", "prod")
    api.delete("Node", "node1")
    assert stays(lambda: stored(etcd_store, node_key("node1")) is not None, 1.5)
    api.delete("Pod", "b", "prod")  # now nothing on node1 has an owner
    eventually(lambda: stored(etcd_store, node_key("node1")) is None)
    assert etcd_store.list(keys.affinity_prefix("node1", 4)) == []
    assert not [kv for kv in etcd_store.list(keys.block_prefix(4)) if "host:node1" in kv.value]
    assert etcd_store.get(keys.handle("ipip-tunnel-addr-node1")) is None
    assert not [kv for kv in etcd_store.list(keys.resource_prefix("workloadendpoints"))
                if json.loads(kv.value)["spec"]["node"] == "node1"]
    assert etcd_store.get(keys.handle("k8s-pod-network.c-long-gone")) is None
    assert not IpamClient(etcd_store, "x").addresses_of("k8s-pod-network.c-long-gone")
    del leaked
    assert stored(etcd_store, node_key("node2")) and stored(etcd_store, node_key("bare-metal"))
    assert [str(n.ip) for n in IpamClient(etcd_store, "node2").addresses_of("k8s-pod-network.c-c")] == [pods["c"]]
    report = ipam_check(etcd_store)
    assert "Check complete; found 0 problems." in report, report


def test_an_address_whose_pod_is_gone_is_released_after_the_grace_period(
        api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    admin.create_pool(etcd_store, "pool", POOL)
    api.create(namespace("prod"))
    calico_node(etcd_store, "node1", "192.0.2.11")
    api.create(k8s_node("node1"))
    api.create(pod("alive", "prod", "node1"))
    alive = pod_with_address(etcd_store, "prod", "alive", "node1")
    pod_with_address(etcd_store, "prod", "orphan", "node1")  # its endpoint too: DEL never came
    orphan_endpoint = stored(etcd_store, keys.resource("workloadendpoints", "node1-k8s-orphan-eth0", "prod"))
    assert orphan_endpoint is not None
    controllers.start(("node",), period=0.3, grace=2.0)
    began = time.monotonic()
    handle = "k8s-pod-network.c-orphan"
    eventually(lambda: not IpamClient(etcd_store, "node1").addresses_of(handle), within=10)
    took = time.monotonic() - began
    assert 2.0 <= took < 4.0, f"released after {took:.1f} s (grace 2 s)"
    assert [str(n.ip) for n in IpamClient(etcd_store, "node1").addresses_of("k8s-pod-network.c-alive")] == [alive]
    assert stored(etcd_store, node_key("node1"))  # a live node stays
    # As Calico in etcd mode: the garbage collector gives the address back and nothing else; the
    # endpoint is the CNI plugin's to delete (the kubelet's DEL), never the controllers'.
    assert stays(lambda: stored(etcd_store, keys.resource("workloadendpoints", "node1-k8s-orphan-eth0", "prod"))
                 == orphan_endpoint, 1.0)


def test_an_address_its_pod_no_longer_reports_is_released_after_the_grace_period(
        api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    """A pod recreated under the same name got another address (its old sandbox's DEL never came):
    once the kubelet reports the new one, the old allocation is a leak (Calico's check of the pod's
    addresses). An unreported address, or the reported one, is kept."""
    admin.create_pool(etcd_store, "pool", POOL)
    api.create(namespace("prod"))
    calico_node(etcd_store, "node1", "192.0.2.11")
    api.create(k8s_node("node1"))
    old = pod_with_address(etcd_store, "prod", "web", "node1", wep=False)
    current = IpamClient(etcd_store, "node1").auto_assign(
        Request("k8s-pod-network.c-web-2", {"node": "node1", "namespace": "prod", "pod": "web"}))[0]
    kept = pod_with_address(etcd_store, "prod", "db", "node1", wep=False)
    reported = str(current.ip)
    api.apply({**pod("web", "prod", "node1"), "status": {"podIP": reported, "podIPs": [{"ip": reported}]}})
    api.apply({**pod("db", "prod", "node1"), "status": {"podIP": kept, "podIPs": [{"ip": kept}]}})
    api.create(pod("new", "prod", "node1"))  # not reported yet: whatever it holds is its own
    fresh = pod_with_address(etcd_store, "prod", "new", "node1", wep=False)
    controllers.start(("node",), period=0.3, grace=1.0)
    eventually(lambda: not IpamClient(etcd_store, "node1").addresses_of("k8s-pod-network.c-web"), within=10)
    client = IpamClient(etcd_store, "node1")
    assert [str(n.ip) for n in client.addresses_of("k8s-pod-network.c-web-2")] == [str(current.ip)]
    assert stays(lambda: [str(n.ip) for n in client.addresses_of("k8s-pod-network.c-db")] == [kept]
                 and [str(n.ip) for n in client.addresses_of("k8s-pod-network.c-new")] == [fresh], 1.5)
    assert old != str(current.ip)


def test_allocations_of_a_node_no_calico_node_stands_for_are_collected(
        api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    """IPAM that names a node with no Calico Node (removed from etcd by hand): what no pod owns is
    released at once, then the node's empty blocks; a pod that still exists holds them meanwhile."""
    admin.create_pool(etcd_store, "pool", POOL)
    api.create(namespace("prod"))
    api.create(pod("still-here", "prod", "ghost-k8s"))
    pod_with_address(etcd_store, "prod", "long-gone", "ghost", wep=False)
    held = pod_with_address(etcd_store, "prod", "still-here", "ghost", wep=False)
    IpamClient(etcd_store, "ghost").auto_assign(Request("ipip-tunnel-addr-ghost", {"node": "ghost",
                                                                                   "type": "ipipTunnelAddress"}))
    calico_node(etcd_store, "bare-metal", "192.0.2.99")  # not Kubernetes': its own allocations stay
    IpamClient(etcd_store, "bare-metal").auto_assign(Request("net.c1", {"node": "bare-metal"}))
    controllers.start(("node",), period=0.3)
    eventually(lambda: not IpamClient(etcd_store, "ghost").addresses_of("k8s-pod-network.c-long-gone"))
    eventually(lambda: etcd_store.get(keys.handle("ipip-tunnel-addr-ghost")) is None)
    client = IpamClient(etcd_store, "ghost")
    assert stays(lambda: [str(n.ip) for n in client.addresses_of("k8s-pod-network.c-still-here")] == [held], 1.0)
    assert etcd_store.list(keys.affinity_prefix("ghost", 4))  # held by the pod that exists
    api.delete("Pod", "still-here", "prod")
    eventually(lambda: not etcd_store.list(keys.affinity_prefix("ghost", 4)))
    assert not client.addresses_of("k8s-pod-network.c-still-here")
    assert IpamClient(etcd_store, "bare-metal").addresses_of("net.c1")
    IpamClient(etcd_store, "bare-metal").release_handle("net.c1")  # (no endpoint: ipam check would name it)
    report = ipam_check(etcd_store)
    assert "Check complete; found 0 problems." in report, report


def test_a_spare_empty_block_of_a_live_node_goes_back_after_the_grace_period(
        api: K8sApiServer, controllers: Controllers, etcd_store: EtcdDatastore) -> None:
    """Calico's empty-block collection: an empty block goes when its node keeps another block with
    room; a node's last block, or one whose siblings are (nearly) full, stays."""
    admin.create_pool(etcd_store, "pool", POOL, blockSize=29)
    for index, name in enumerate(("node1", "node2"), start=1):
        calico_node(etcd_store, name, f"192.0.2.{10 + index}")
        api.create(k8s_node(name))
    one = IpamClient(etcd_store, "node1")
    first = one.auto_assign(Request("h-a", {"node": "node1"}, num_v4=8))  # fills a /29
    one.auto_assign(Request("h-b", {"node": "node1"}))  # a second block
    assert len(etcd_store.list(keys.affinity_prefix("node1", 4))) == 2
    one.release_handle("h-b")  # the second block is empty, but the first is full: still needed
    two = IpamClient(etcd_store, "node2")
    two.auto_assign(Request("h-c", {"node": "node2"}))
    two.release_handle("h-c")  # node2's only block, empty: kept
    controllers.start(("node",), period=0.2, grace=1.0)
    assert stays(lambda: len(etcd_store.list(keys.affinity_prefix("node1", 4))) == 2, 2.0)
    one.release_addresses([ReleaseOptions(a.ip) for a in first[:3]])  # 3 free in the first block now
    began = time.monotonic()
    eventually(lambda: len(etcd_store.list(keys.affinity_prefix("node1", 4))) == 1, within=10)
    assert time.monotonic() - began >= 1.0
    assert [str(n.ip) for n in one.addresses_of("h-a")] == [str(a.ip) for a in first[3:]]
    assert len(etcd_store.list(keys.affinity_prefix("node2", 4))) == 1


def on_node(ds: EtcdDatastore, node: str) -> dict[str, list[str]]:
    """What etcd still holds for Calico node `node`: affinities, blocks, endpoints, allocations."""
    blocks = [kv.key for kv in ds.list(keys.block_prefix(4)) if f'"host:{node}"' in kv.value]
    endpoints = [kv.key for kv in ds.list(keys.resource_prefix("workloadendpoints"))
                 if json.loads(kv.value)["spec"]["node"] == node]
    allocated = [a for kv in ds.list(keys.block_prefix(4))
                 for a in allocations_of(AllocationBlock.from_json(kv.value)) if a.node == node]
    handles = sorted({a.handle or a.ip for a in allocated})
    return {"affinities": [kv.key for kv in ds.list(keys.affinity_prefix(node, 4))], "blocks": blocks,
            "endpoints": endpoints, "handles": handles}


@pytest.mark.root
def test_a_node_deleted_while_no_controller_ran_is_cleaned_when_one_starts(
        api: K8sApiServer, controllers: Controllers, etcd_server: PrivateEtcd, etcd_store: EtcdDatastore) -> None:
    """A real calico-node registers its Node with CALICO_K8S_NODE_REF (a Calico name that is not
    the Kubernetes one, so only the reference links them), the real plugin wires two pods; then the
    host, its pods and its Kubernetes Node all go while no controller runs."""
    admin.create_pool(etcd_store, "pool", POOL)
    api.create(namespace("prod"))
    for name in ("k8s-host1", "k8s-other"):
        api.create(k8s_node(name))
    startup.register_node(etcd_store, "other", None, None, k8s_node_ref="k8s-other")  # a live Kubernetes node
    api.create(pod("kept", "prod", "k8s-other"))
    kept = pod_with_address(etcd_store, "prod", "kept", "other")
    calico_node(etcd_store, "bare-metal", "192.0.2.99")  # no orchRefs: not Kubernetes'
    outside = pod_with_address(etcd_store, "prod", "outside", "bare-metal")  # no such pod: yet never judged

    host = PluginHost(etcd_server.port, fast_path=True, agent_env={"CALICO_K8S_NODE_REF": "k8s-host1"}).start()
    try:
        assert stored(etcd_store, node_key("host1"))["spec"]["orchRefs"] == [
            {"nodeName": "k8s-host1", "orchestrator": "k8s"}]
        for name in ("a", "b"):
            api.create(pod(name, "prod", "k8s-host1"))
            status, out, err = host.cni("ADD", host.conf(), container_id=f"cid-{name}", netns=host.pod(name),
                                        args=f"K8S_POD_NAMESPACE=prod;K8S_POD_NAME={name}")
            assert status == 0, (out, err)
    finally:
        host.stop()  # the host is gone; its endpoints, addresses and blocks stay in etcd
    left = on_node(etcd_store, "host1")
    assert len(left["endpoints"]) == 2 and len(left["handles"]) == 2 and left["affinities"] and left["blocks"]
    for name in ("a", "b"):
        api.delete("Pod", name, "prod")
    api.delete("Node", "k8s-host1")

    began = time.monotonic()
    controllers.start(("node",))
    eventually(lambda: stored(etcd_store, node_key("host1")) is None)
    took = time.monotonic() - began
    print(f"node host1 cleaned {took:.2f} s after the controllers started")
    assert on_node(etcd_store, "host1") == {"affinities": [], "blocks": [], "endpoints": [], "handles": []}
    report = ipam_check(etcd_store)
    assert "Check complete; found 0 problems." in report, report
    # The live Kubernetes node's and the host outside Kubernetes are as they were.
    assert stored(etcd_store, node_key("other")) and stored(etcd_store, node_key("bare-metal"))
    assert "orchRefs" not in stored(etcd_store, node_key("bare-metal"))["spec"]
    assert [str(n.ip) for n in IpamClient(etcd_store, "x").addresses_of("k8s-pod-network.c-kept")] == [kept]
    assert [str(n.ip) for n in IpamClient(etcd_store, "x").addresses_of("k8s-pod-network.c-outside")] == [outside]


def test_the_periodic_pass_finds_a_kubernetes_node_gone_without_an_event(
        api: K8sApiServer, kube: kube_client.KubeClient, controllers: Controllers, etcd_store: EtcdDatastore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No Kubernetes event ever names it: a calico-node registered for a Kubernetes node that is
    not there. The periodic pass finds it, once the API itself confirms the node is absent."""
    admin.create_pool(etcd_store, "pool", POOL)
    api.create(namespace("prod"))
    answers: list[bool | None] = []
    real = kube.node_exists

    def node_exists(name: str) -> bool | None:  # what the API answers, unless told to fail
        answer = real(name) if not blocked else None
        answers.append(answer)
        return answer

    blocked = True
    monkeypatch.setattr(kube, "node_exists", node_exists)
    controllers.start(("node",), period=0.3)
    startup.register_node(etcd_store, "late", None, None, k8s_node_ref="never-registered")
    pod_with_address(etcd_store, "prod", "p", "late")  # its pod is not in the API either
    calico_node(etcd_store, "never-registered", "192.0.2.98")  # its name, but no reference: never judged
    # The API cannot be asked: nothing is cleaned on the cache's word alone.
    eventually(lambda: len(answers) >= 2, within=5)
    assert stored(etcd_store, node_key("late")) and on_node(etcd_store, "late")["handles"]
    blocked = False
    eventually(lambda: stored(etcd_store, node_key("late")) is None, within=5)
    assert answers[-1] is False
    assert on_node(etcd_store, "late") == {"affinities": [], "blocks": [], "endpoints": [], "handles": []}
    assert stays(lambda: stored(etcd_store, node_key("never-registered")) is not None, 1.0)
