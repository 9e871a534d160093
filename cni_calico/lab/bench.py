"""`make bench`: CNI latency of our frozen binaries, standalone and through the agent's fast path,
beside Debian's Go `ptp` + `host-local` in the same run on the same machine; how fast one etcd
hands out addresses to many nodes at once; and the policy dataplane at scale (policy_bench).

For each plugin set: N pods (each its own netns, created beforehand and not timed) inside one
simulated host; ADD then DEL of all of them one after the other, then again with 8 at a time.
Each call is an exec of the plugin inside the host namespace, as a runtime does it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from .. import admin
from ..datastore import EtcdDatastore
from . import binaries
from .cluster import NETNS_DIR, Cluster, Host, sh
from .etcd import PrivateEtcd

GO_PLUGINS = Path("/usr/lib/cni")
PARALLEL = 8


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Variant:
    def __init__(self, label: str, binary: str, conf: dict[str, Any], cni_path: str,
                 env: dict[str, str] | None = None) -> None:
        self.label, self.binary, self.conf, self.cni_path = label, binary, conf, cni_path
        self.env = env or {}

    def call(self, host: Host, command: str, container_id: str, netns: str) -> float:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": self.cni_path, **self.env}
        started = time.monotonic()
        proc = subprocess.run(["nsenter", f"--net={host.netns_path}", self.binary], input=json.dumps(self.conf).encode(),
                              env=env, capture_output=True, timeout=120)
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label} {command} {container_id}: {proc.stdout.decode()[:300]}")
        return took


def run_variant(variant: Variant, host: Host, pods: list[str], parallel: int) -> dict[str, Any]:
    tag = "".join(c for c in variant.label.lower() if c.isalnum())[:6]
    ids = [f"{tag}{i:05d}{'p' if parallel > 1 else 's'}{os.urandom(4).hex()}" for i in range(len(pods))]
    out: dict[str, Any] = {}
    for command in ("ADD", "DEL"):
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            latencies = list(pool.map(lambda pair: variant.call(host, command, pair[0], f"{NETNS_DIR}/{pair[1]}"),
                                      zip(ids, pods)))
        out[command] = (statistics.median(latencies), percentile(latencies, 0.9), time.monotonic() - started)
    return out


def ipam_worker(etcd: str, node: str, count: int) -> None:
    """One simulated node allocating `count` addresses in a row (a process of the cluster figure)."""
    from ..ipam_client import IpamClient, Request

    with EtcdDatastore(etcd) as ds:
        client = IpamClient(ds, node)
        got = [str(client.auto_assign(Request(f"bench.{node}.{i}", {"node": node}))[0].ip) for i in range(count)]
    print(json.dumps(got))


def cluster_ipam(etcd: PrivateEtcd, nodes: int, per_node: int) -> tuple[float, int, int]:
    procs = [subprocess.Popen([sys.executable, "-m", "cni_calico.lab.bench", "--ipam-worker", etcd.endpoint,
                               f"bench-node-{n}", str(per_node)], stdout=subprocess.PIPE, text=True)
             for n in range(nodes)]
    started = time.monotonic()  # includes each process's start-up: an honest "all at once"
    addresses: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError("an IPAM worker failed")
        addresses += json.loads(out)
    wall = time.monotonic() - started
    return len(addresses) / wall, len(addresses), len(addresses) - len(set(addresses))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--per-node", type=int, default=50)
    p.add_argument("--skip", action="append", default=[], choices=["cni", "standalone", "cluster", "policy"],
                   help="leave out a part: the CNI latency table, its standalone variant, the cluster IPAM "
                        "figure or the policy dataplane figures (quicker runs)")
    p.add_argument("--endpoints", type=int, default=1000, help="policy figures: local endpoints")
    p.add_argument("--policies", type=int, default=100, help="policy figures: policies")
    p.add_argument("--ipam-worker", nargs=3, metavar=("ETCD", "NODE", "COUNT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ipam_worker:
        ipam_worker(args.ipam_worker[0], args.ipam_worker[1], int(args.ipam_worker[2]))
        return 0
    if not binaries.frozen():
        print("bench: measures the frozen binaries; run it as `make bench` (CNI_CALICO_FROZEN=1 after make build)",
              file=sys.stderr)
        return 2
    results: dict[tuple[str, int], dict[str, Any]] = {}
    variants: list[Variant] = []
    rate, total, duplicates = 0.0, 0, 0
    with PrivateEtcd() as etcd:
        if "cni" not in args.skip:
            variants = latency(etcd, args.pods, "standalone" not in args.skip, results)
        if "cluster" not in args.skip:
            print(f"measuring cluster IPAM: {args.nodes} nodes x {args.per_node} allocations at once ...", flush=True)
            rate, total, duplicates = cluster_ipam(etcd, args.nodes, args.per_node)
    print(f"machine: {machine()}")
    if variants:
        print("\n" + report(results, args.pods, variants))
    if total:
        print(f"\ncluster IPAM: {args.nodes} nodes x {args.per_node} allocations at once on one etcd: "
              f"{rate:.0f} allocations/s ({total} addresses, {duplicates} duplicates)")
    if "policy" not in args.skip:
        print(f"measuring the policy dataplane: {args.endpoints} endpoints x {args.policies} policies ...",
              file=sys.stderr, flush=True)
        from .policy_bench import measure, report as policy_report

        print("\n" + policy_report(measure(args.endpoints, args.policies)))
    return 0


def latency(etcd: PrivateEtcd, pod_count: int, standalone: bool,
            results: dict[tuple[str, int], dict[str, Any]]) -> list[Variant]:
    """ADD and DEL of `pod_count` pods for each plugin set, sequential then 8 at a time."""
    with EtcdDatastore(etcd.endpoint) as ds, tempfile.TemporaryDirectory() as tmp:
        admin.create_pool(ds, "bench-pool", "10.70.0.0/16")
        with Cluster(etcd.port, hosts=1, node_names=["bench-node"]) as cluster:
            host = cluster.hosts[0]
            cluster.start_agent(host)
            base = cluster.pod_conf(host)
            calico = str(cluster.bin_dir / "calico")
            cni_path = f"{cluster.bin_dir}:{GO_PLUGINS}"
            go_conf = {"cniVersion": "1.0.0", "name": "bench-go", "type": "ptp", "ipMasq": False, "mtu": 1500,
                       "ipam": {"type": "host-local", "subnet": "10.71.0.0/16", "dataDir": f"{tmp}/host-local"}}
            variants = [
                Variant("Go ptp + host-local", str(GO_PLUGINS / "ptp"), go_conf, str(GO_PLUGINS)),
                Variant("calico standalone", calico, {**base, "fast_path": "off"}, cni_path),
                # As deployed: a config without fast_path keys (the client then skips parsing it) and
                # the socket found where the host's agent serves it; "only" makes a miss an error.
                Variant("calico fast path", calico, {k: v for k, v in base.items() if not k.startswith("fast_path")},
                        cni_path, {"CALICO_CNI_SOCKET": base["fast_path_socket"], "CALICO_CNI_FAST_PATH": "only"}),
            ]
            if not standalone:
                variants = [v for v in variants if "standalone" not in v.label]
            pods = [f"{cluster.prefix}-bench-{i}" for i in range(pod_count)]
            for pod in pods:
                sh("ip", "netns", "add", pod)
            try:
                for parallel in (1, PARALLEL):
                    for variant in variants:
                        print(f"measuring {variant.label}, {pod_count} pods, {parallel} at a time ...",
                              file=sys.stderr, flush=True)
                        results[(variant.label, parallel)] = run_variant(variant, host, pods, parallel)
            finally:
                for pod in pods:
                    sh("ip", "netns", "del", pod, check=False)
    return variants


def machine() -> str:
    debian = Path("/etc/debian_version")
    return (f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"Debian {debian.read_text().strip() if debian.exists() else '?'}")


def report(results: dict[tuple[str, int], dict[str, Any]], pods: int, variants: list[Variant]) -> str:
    lines = ["| plugins | calls | ADD p50 | ADD p90 | DEL p50 | DEL p90 | wall, 100 ADD + 100 DEL | ADD p50 vs Go | "
             "DEL p50 vs Go | wall vs Go |".replace("100", str(pods)),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for parallel in (1, PARALLEL):
        go = results[(variants[0].label, parallel)]
        go_wall = go["ADD"][2] + go["DEL"][2]
        for variant in variants:
            r = results[(variant.label, parallel)]
            wall = r["ADD"][2] + r["DEL"][2]
            lines.append(f"| {variant.label} | {'sequential' if parallel == 1 else f'{parallel} in parallel'} | "
                         f"{r['ADD'][0] * 1000:.1f} ms | {r['ADD'][1] * 1000:.1f} ms | {r['DEL'][0] * 1000:.1f} ms | "
                         f"{r['DEL'][1] * 1000:.1f} ms | {wall:.2f} s | {r['ADD'][0] / go['ADD'][0]:.1f}x | "
                         f"{r['DEL'][0] / go['DEL'][0]:.1f}x | {wall / go_wall:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
