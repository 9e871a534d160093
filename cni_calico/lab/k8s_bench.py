"""What Kubernetes mode (`policy.type: k8s`) adds to an ADD: the same pods added and deleted with
and without it, standalone and through calico-node's fast path, the four variants taking turns
call by call inside one simulated host; and the modules (with their import time) a standalone
ADD loads only in Kubernetes mode.

The Kubernetes API stand-in runs as its own process inside the simulated host, as an API server
would be reached on a node; each call is an exec of the plugin inside the host namespace (the
frozen binaries with CNI_CALICO_FROZEN=1, else this Python on packaging/). calico-node runs with
its policy dataplane off, so that only the plugin's side is measured.

    python -m cni_calico.lab.k8s_bench [--pods 20] [--imports-only]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ..datastore import EtcdDatastore
from ..netns import entered
from . import admin, binaries
from .bench import percentile
from .cluster import Cluster, Host
from .etcd import PrivateEtcd
from .hosts import NETNS_DIR, sh

REPO = Path(__file__).resolve().parents[2]


class ApiProcess:
    """The stand-in as a process inside a host's namespace; pods created over HTTPS from there."""

    def __init__(self, host: Host, state_dir: Path) -> None:
        self.host, self.state_dir = host, state_dir
        self.proc = subprocess.Popen(["ip", "netns", "exec", host.netns, sys.executable, "-m", "cni_calico.lab.k8s_api",
                                      "--listen", "127.0.0.1:0", "--state-dir", str(state_dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + 30
        while not (state_dir / "url").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Kubernetes API stand-in did not start")
            time.sleep(0.05)
        self.port = int((state_dir / "url").read_text().strip().rsplit(":", 1)[1])

    def create_pod(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        tls = ssl.create_default_context(cafile=str(self.state_dir / "ca.crt"))
        tls.load_cert_chain(self.state_dir / "client.crt", self.state_dir / "client.key")
        with entered(self.host.netns_path):  # the socket is made inside the host's namespace
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
        try:
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                    "spec": {"containers": [{"name": "main", "image": "nginx",
                                             "ports": [{"name": "http", "containerPort": 80}]}]}}
            conn.request("POST", f"/api/v1/namespaces/{namespace}/pods", json.dumps(body),
                         {"Content-Type": "application/json"})
            reply = conn.getresponse()
            if reply.status != 201:
                raise RuntimeError(f"creating pod {name}: {reply.status} {reply.read()[:200]!r}")
            reply.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Variant:
    def __init__(self, label: str, conf: dict[str, Any], env: dict[str, str], tag: str) -> None:
        self.label, self.conf, self.env, self.tag = label, conf, env, tag
        self.times: dict[str, list[float]] = {"ADD": [], "DEL": []}

    def call(self, binary: list[str], host: Host, command: str, index: int) -> float:
        pod = f"{self.tag}-{index}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command, "CNI_CONTAINERID": f"c{pod}",
               "CNI_NETNS": f"{NETNS_DIR}/{host.netns}-{pod}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}", **self.env}
        started = time.monotonic()
        proc = subprocess.run(["nsenter", f"--net={host.netns_path}", *binary], input=json.dumps(self.conf).encode(),
                              env=env, capture_output=True, timeout=120, cwd=REPO, check=False)
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label} {command} {pod}: {proc.stdout.decode()[:300]}")
        return took


def seed_conf(etcd: str, kubeconfig: Path, nodename_file: Path, k8s: bool) -> dict[str, Any]:
    """The seed's network config; `k8s` False: the same without `policy`."""
    conf: dict[str, Any] = {"name": "calico-k8s-network", "cniVersion": "0.1.0", "type": "calico",
                            "etcd_endpoints": etcd, "log_level": "info", "ipam": {"type": "calico-ipam"},
                            "policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": str(kubeconfig)},
                            "nodename_file": str(nodename_file)}  # simulated hosts share one filesystem
    if not k8s:
        del conf["policy"]
    return conf


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def imports(host: Host, conf: dict[str, Any], tag: str) -> dict[str, int]:
    """Module -> its own import time (us) in one standalone ADD of pod `<tag>-0` (deleted after)."""
    variant = Variant("imports", conf, {"CALICO_CNI_FAST_PATH": "off"}, tag)
    pod = f"{tag}-0"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"c{pod}",
           "CNI_NETNS": f"{NETNS_DIR}/{host.netns}-{pod}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}", **variant.env}
    command = [sys.executable, "-X", "importtime", str(REPO / "packaging" / "calico.py")]
    proc = subprocess.run(["nsenter", f"--net={host.netns_path}", *command], input=json.dumps(conf).encode(),
                          env=env, capture_output=True, timeout=120, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"import measurement: {proc.stdout.decode()[:300]}")
    variant.call([sys.executable, str(REPO / "packaging" / "calico.py")], host, "DEL", 0)
    found = {}
    for line in proc.stderr.decode().splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            found[match.group(4)] = int(match.group(1))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cni_calico.lab.k8s_bench", description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=20, help="pods per variant")
    p.add_argument("--imports-only", action="store_true", help="only the import comparison")
    args = p.parse_args(argv)
    with PrivateEtcd() as etcd, tempfile.TemporaryDirectory() as tmp:
        with EtcdDatastore(etcd.endpoint) as ds:
            admin.create_pool(ds, "bench-pool", "10.70.0.0/16")
        with Cluster(etcd.port, hosts=1, node_names=["bench-node"]) as cluster:
            host = cluster.hosts[0]
            cluster.start_agent(host, CALICO_POLICY_DATAPLANE="none")
            api = ApiProcess(host, Path(tmp) / "api")
            pods: list[str] = []
            try:
                socket_env = {"CALICO_CNI_SOCKET": str(host.run_dir / "cni.sock")}
                variants = [
                    Variant("standalone", seed_conf(cluster.etcd, api.state_dir / "kubeconfig", host.nodename_file,
                                                    False), {**socket_env, "CALICO_CNI_FAST_PATH": "off"}, "sa"),
                    Variant("standalone, policy k8s", seed_conf(cluster.etcd, api.state_dir / "kubeconfig",
                                                                host.nodename_file, True),
                            {**socket_env, "CALICO_CNI_FAST_PATH": "off"}, "sk"),
                    Variant("fast path", seed_conf(cluster.etcd, api.state_dir / "kubeconfig", host.nodename_file,
                                                   False), {**socket_env, "CALICO_CNI_FAST_PATH": "only"}, "fa"),
                    Variant("fast path, policy k8s", seed_conf(cluster.etcd, api.state_dir / "kubeconfig",
                                                               host.nodename_file, True),
                            {**socket_env, "CALICO_CNI_FAST_PATH": "only"}, "fk"),
                ]
                count = 1 if args.imports_only else args.pods
                for variant in [*variants, Variant("imports", {}, {}, "ia"), Variant("imports", {}, {}, "ik")]:
                    for i in range(count):
                        name = f"{variant.tag}-{i}"
                        api.create_pod("default", name, {"app": "bench", "pod": name})
                        pods.append(f"{host.netns}-{name}")
                        sh("ip", "netns", "add", pods[-1])
                plain = imports(host, variants[0].conf, "ia")
                k8s = imports(host, variants[1].conf, "ik")
                print(import_report(plain, k8s))
                if args.imports_only:
                    return 0
                binary = binaries.command("calico")
                print(f"measuring {', '.join(v.label for v in variants)}: {count} pods each, taking turns ...",
                      file=sys.stderr, flush=True)
                for command in ("ADD", "DEL"):
                    for i in range(count):
                        for variant in variants[i % len(variants):] + variants[:i % len(variants)]:
                            variant.times[command].append(variant.call(binary, host, command, i))
                print(latency_report(variants, count))
            finally:
                api.stop()
                for pod in pods:
                    sh("ip", "netns", "del", pod, check=False)
    return 0


def import_report(plain: dict[str, int], k8s: dict[str, int]) -> str:
    only = {name: us for name, us in k8s.items() if name not in plain}
    lines = [f"standalone ADD imports: {len(plain)} modules, {sum(plain.values()) / 1000:.1f} ms without policy k8s; "
             f"{len(k8s)} modules, {sum(k8s.values()) / 1000:.1f} ms with it",
             f"loaded only in Kubernetes mode: {len(only)} modules, {sum(only.values()) / 1000:.1f} ms "
             "(their own import time, summed):"]
    for name, us in sorted(only.items(), key=lambda item: -item[1]):
        lines.append(f"  {us / 1000:6.2f} ms  {name}")
    return "\n".join(lines)


def latency_report(variants: list[Variant], count: int) -> str:
    mode = "frozen binaries" if binaries.frozen() else "unfrozen (packaging/ on this Python)"
    lines = [f"{count} pods per variant, {mode}, calls one at a time, variants taking turns:", "",
             "| variant | ADD p50 | ADD p90 | ADD mean | DEL p50 |", "|---|---|---|---|---|"]
    for v in variants:
        add, delete = v.times["ADD"], v.times["DEL"]
        lines.append(f"| {v.label} | {statistics.median(add) * 1e3:.1f} ms | {percentile(add, 0.9) * 1e3:.1f} ms | "
                     f"{statistics.mean(add) * 1e3:.1f} ms | {statistics.median(delete) * 1e3:.1f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
