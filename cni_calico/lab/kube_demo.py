"""The demo's Kubernetes part: the API stand-in, calico-kube-controllers, a NetworkPolicy enforced.

Pods are wired by the calico plugin as Kubernetes pods (K8S_POD_NAMESPACE/K8S_POD_NAME) and
their Pod objects created in the stand-in API, as a kubelet would; the controllers carry the
pods' labels onto their endpoints and the NetworkPolicy into etcd, where calico-node finds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import yaml

from ..datastore import Datastore
from ..model import keys
from . import binaries
from .cluster import Cluster
from .etcd import free_port
from .k8s_api import K8sApiServer

NAMESPACE = "demo"
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
    first, last = cluster.hosts[0], cluster.hosts[-1]
    log = cluster.workdir / "calico-kube-controllers.log"
    with K8sApiServer(state_dir=cluster.workdir / "k8s-api") as api:
        banner(f"Kubernetes mode: the API (stand-in) at {api.url}; calico-kube-controllers "
               f"({' '.join(binaries.command('calico-kube-controllers'))})")
        controllers = start_controllers(api, etcd_endpoint, log)
        on_started(controllers.pid)
        try:
            return _scenario(cluster, ds, api, first.name, last.name)
        finally:
            stop_controllers(controllers)
            print(f"  calico-kube-controllers stopped; its log: {_tail(log)}")


def _scenario(cluster: Cluster, ds: Datastore, api: K8sApiServer, first: str, last: str) -> int:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    pods = {"web": (last, "web"), "client": (first, "client"), "other": (first, "other")}
    addresses = {}
    for pod, (host, app) in pods.items():
        addresses[pod] = cluster.add_pod(cluster.host(host), pod, k8s_namespace=NAMESPACE)
        api.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {"app": app}},
                    "spec": {"nodeName": host, "containers": [{"name": "main", "image": "busybox:1.36"}]}})
        print(f"  {host}/{pod} (namespace {NAMESPACE}, app={app}): {addresses[pod]}")
    failures = 0
    took = _wait(lambda: all(_labels(ds, pod).get("app") == app for pod, (_, app) in pods.items()), 30)
    failures += took is None
    print(f"  the pods' labels reached their endpoints through the controllers "
          f"({_seconds(took)}): web's are {_labels(ds, 'web')}")

    def ping(src: str, expect: bool) -> float | None:
        """Ping web until the outcome is the expected one (5 s at most); when the attempt that
        gave it started, from now."""
        nonlocal failures
        began = time.monotonic()
        while True:
            attempt = time.monotonic()
            if cluster.ping(cluster.host(pods[src][0]), src, addresses["web"]) == expect:
                break
            if attempt - began > 5:
                failures += 1
                print(f"  {pods[src][0]}/{src} -> {last}/web ({addresses['web']}): UNEXPECTED")
                return None
            time.sleep(0.05)
        print(f"  {pods[src][0]}/{src} -> {last}/web ({addresses['web']}): {'ok' if expect else 'blocked'}")
        return attempt - began

    ping("client", True)
    ping("other", True)
    banner("kubectl apply: a Kubernetes NetworkPolicy, web accepts only app=client")
    print(POLICY.rstrip())
    created = time.monotonic()
    api.create(yaml.safe_load(POLICY))
    policy_key = keys.resource("networkpolicies", "knp.default.web-from-clients", NAMESPACE)
    took = _wait(lambda: ds.get(policy_key) is not None, 10, every=0.002)
    failures += took is None
    print(f"  in etcd as Calico's knp.default.web-from-clients {_seconds(took)} after the API's create:")
    print(cluster.calicoctl(cluster.hosts[0], "get", "networkpolicy", "-n", NAMESPACE, "-o", "wide").stdout.rstrip())
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


def _labels(ds: Datastore, pod: str) -> dict[str, str]:
    for kv in ds.list(keys.resource_prefix("workloadendpoints", NAMESPACE)):
        endpoint = json.loads(kv.value)
        if endpoint.get("spec", {}).get("pod") == pod:
            return dict(endpoint.get("metadata", {}).get("labels") or {})
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
