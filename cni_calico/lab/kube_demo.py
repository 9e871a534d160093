"""The demo's Kubernetes part: the API stand-in, the plugin in Kubernetes mode with the seed's
network config, calico-kube-controllers, a NetworkPolicy enforced.

As on a Kubernetes node: the Pod objects (labels, service account, node) are in the API before
their pods are wired; the kubelet of each host runs the calico plugin with exactly the seed's
network config (`policy.type: k8s`, a kubeconfig naming the stand-in), and the plugin reads the
pod and its namespace from the API, so the endpoint carries the pod's labels and profiles from
its first write. The controllers turn the NetworkPolicy into Calico's, calico-node enforces it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ..datastore import Datastore
from ..model import keys
from . import binaries
from .cluster import Cluster, Host
from .etcd import free_port
from .k8s_api import K8sApiServer
from .relay import NetnsRelay

NAMESPACE = "demo"
NAMESPACE_LABELS = {"team": "shop"}
# pod -> (its host: first or last, app label, service account)
PODS = {"web": ("last", "web", "web"), "client": ("first", "client", "client"), "other": ("first", "other", "default")}
POLICY = f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-clients
  namespace: {NAMESPACE}
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: client
"""


def seed_conf(etcd_endpoints: str, kubeconfig: Path) -> dict[str, Any]:
    """The network config the seed deploys on Kubernetes, exactly."""
    return {"name": "calico-k8s-network", "cniVersion": "0.1.0", "type": "calico",
            "etcd_endpoints": etcd_endpoints, "log_level": "info", "ipam": {"type": "calico-ipam"},
            "policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": str(kubeconfig)}}


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def start_controllers(api: K8sApiServer, etcd_endpoint: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(ETCD_ENDPOINTS=etcd_endpoint, KUBECONFIG=str(api.kubeconfig), LOG_LEVEL="info",
               PROMETHEUS_METRICS_PORT=str(free_port()), LEADER_ELECTION_TTL="5s")
    with open(log, "wb") as out:
        return subprocess.Popen(binaries.command("calico-kube-controllers"), env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_controllers(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run(cluster: Cluster, ds: Datastore, etcd_endpoint: str, on_started: Callable[[int], None]) -> int:
    """The Kubernetes part; `on_started(pid)` records the controllers' PID for `--clean`.
    Returns the number of checks that went against expectation."""
    log = cluster.workdir / "calico-kube-controllers.log"
    with K8sApiServer(state_dir=cluster.workdir / "k8s-api") as api, NetnsRelay(api.port) as relay:
        for host in cluster.hosts:  # each host reaches the API at the kubeconfig's 127.0.0.1:<port>
            relay.expose(host.netns_path)
        banner(f"Kubernetes mode: the API (stand-in) at {api.url}; calico-kube-controllers "
               f"({' '.join(binaries.command('calico-kube-controllers'))})")
        controllers = start_controllers(api, etcd_endpoint, log)
        on_started(controllers.pid)
        print(f"  calico-kube-controllers started (pid {controllers.pid})")
        try:
            return _scenario(cluster, ds, api)
        finally:
            stop_controllers(controllers)
            print(f"  calico-kube-controllers stopped; its log: {_tail(log)}")


def _create_objects(api: K8sApiServer, hosts: dict[str, Host]) -> None:
    """What kubectl and the scheduler leave in the API before a kubelet wires a pod."""
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": NAMESPACE_LABELS}})
    for account in sorted({account for _, _, account in PODS.values()} - {"default"}):  # the API makes `default`
        api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": account, "namespace": NAMESPACE}})
    for pod, (where, app, account) in PODS.items():
        api.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {"app": app}},
                    "spec": {"nodeName": hosts[where].name, "serviceAccountName": account,
                             "containers": [{"name": "main", "image": "busybox:1.36"}]}})
        print(f"  kubectl: pod {NAMESPACE}/{pod} (app={app}, serviceAccountName {account}) on {hosts[where].name}")


def _add_pod(cluster: Cluster, host: Host, pod: str, conf: dict[str, Any]) -> str:
    """The kubelet's CNI ADD for `pod`: the seed's config, the pod named in CNI_ARGS."""
    container_id = f"{host.name}-{pod}"
    netns = cluster.new_pod_netns(host, pod)
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container_id}"
    outcome = cluster.exec_plugin(host, conf, "ADD", container_id, netns, args)
    if outcome.status != 0 or outcome.result is None:
        raise RuntimeError(f"calico ADD {NAMESPACE}/{pod} on {host.name}: {outcome.result or outcome.stderr[-800:]}")
    host.pods[pod] = container_id
    return str(outcome.result["ip4"]["ip"]).split("/")[0]  # cniVersion 0.1.0: the ip4 shape


def _scenario(cluster: Cluster, ds: Datastore, api: K8sApiServer) -> int:
    hosts = {"first": cluster.hosts[0], "last": cluster.hosts[-1]}
    _create_objects(api, hosts)
    conf = seed_conf(cluster.etcd, api.kubeconfig)  # etcd as the hosts see it
    banner("each host's kubelet runs the plugin with the seed's network config")
    print(json.dumps(conf))
    failures = 0
    addresses = {}
    for pod, (where, app, account) in PODS.items():
        host = hosts[where]
        addresses[pod] = _add_pod(cluster, host, pod, conf)
        endpoint = _endpoint(ds, pod)
        labels = dict(endpoint.get("metadata", {}).get("labels") or {})
        profiles = list(endpoint.get("spec", {}).get("profiles") or [])
        want = [f"kns.{NAMESPACE}", f"ksa.{NAMESPACE}.{account}"]
        ok = labels.get("app") == app and labels.get("projectcalico.org/serviceaccount") == account and profiles == want
        failures += not ok
        print(f"  {host.name}/{pod}: {addresses[pod]}; endpoint labels {labels}, profiles {', '.join(profiles)}"
              + ("" if ok else "  UNEXPECTED"))
    print("  the endpoints got their pods' labels and profiles from the API at ADD")
    first, last = hosts["first"], hosts["last"]

    def ping(src: str, expect: bool) -> float | None:
        """Ping web until the outcome is the expected one (5 s at most); when the attempt that
        gave it started, from now."""
        nonlocal failures
        source = hosts[PODS[src][0]]
        began = time.monotonic()
        while True:
            attempt = time.monotonic()
            if cluster.ping(source, src, addresses["web"]) == expect:
                break
            if attempt - began > 5:
                failures += 1
                print(f"  {source.name}/{src} -> {last.name}/web ({addresses['web']}): UNEXPECTED")
                return None
            time.sleep(0.05)
        print(f"  {source.name}/{src} -> {last.name}/web ({addresses['web']}): {'ok' if expect else 'blocked'}")
        return attempt - began

    ping("client", True)
    ping("other", True)
    banner("kubectl apply: a Kubernetes NetworkPolicy, web accepts only app=client")
    print(POLICY.rstrip())
    created = time.monotonic()
    api.create(yaml.safe_load(POLICY))
    policy_key = keys.resource("networkpolicies", "knp.default.web-from-clients", NAMESPACE)
    took = _wait(lambda: ds.get(policy_key) is not None, 15, every=0.002)
    failures += took is None
    print(f"  in etcd as Calico's knp.default.web-from-clients {_seconds(took)} after the API's create:")
    print(cluster.calicoctl(first, "get", "networkpolicy", "-n", NAMESPACE, "-o", "wide").stdout.rstrip())
    asked = time.monotonic()
    blocked_after = ping("other", False)
    if blocked_after is not None:
        print(f"  enforced: the ping sent {asked + blocked_after - created:.2f} s after the API's create "
              "(once calicoctl had shown the policy) was blocked")
    ping("client", True)
    banner("kubectl delete networkpolicy web-from-clients")
    api.delete("NetworkPolicy", "web-from-clients", NAMESPACE)
    ping("other", True)
    return failures


def _endpoint(ds: Datastore, pod: str) -> dict[str, Any]:
    for kv in ds.list(keys.resource_prefix("workloadendpoints", NAMESPACE)):
        endpoint = json.loads(kv.value)
        if endpoint.get("spec", {}).get("pod") == pod:
            return dict(endpoint)
    return {}


def _seconds(took: float | None) -> str:
    return f"{took:.2f} s" if took is not None else "NEVER"


def _wait(check: Callable[[], bool], timeout: float, every: float = 0.1) -> float | None:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            return None
        time.sleep(every)
    return time.monotonic() - began


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(none)"
    return f"{len(lines)} lines, last: {lines[-1] if lines else ''}"
