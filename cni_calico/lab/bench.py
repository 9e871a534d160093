"""`make bench`: CNI latency of our frozen binaries, standalone and through the agent's fast path,
beside Debian's Go `ptp` + `host-local` in the same run on the same machine; how fast one etcd
hands out addresses to many nodes at once; and the policy dataplane at scale (policy_bench).

For each plugin set: N pods (each its own netns, created beforehand and not timed) inside one
simulated host. One at a time: ADD of every pod, then DEL of every pod, the plugin sets taking
turns call by call, so that a drift in the machine's speed slows them alike. Then 8 at a time:
ADD of all, then DEL of all, one plugin set after the other, in rounds. Each call is an exec of
the plugin inside the host namespace, as a runtime does it; the CPU the calls used is read from
the kernel's accounting (the executables, calico-node and etcd) and printed per call.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from ..datastore import EtcdDatastore
from . import admin, binaries
from .cluster import Cluster, Host
from .etcd import PrivateEtcd
from .hosts import NETNS_DIR, sh

GO_PLUGINS = Path("/usr/lib/cni")
PARALLEL = 8


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Variant:
    def __init__(self, label: str, binary: str, conf: dict[str, Any], cni_path: str,
                 env: dict[str, str] | None = None, rounds: int = 1) -> None:
        self.label, self.binary, self.conf, self.cni_path = label, binary, conf, cni_path
        self.env = env or {}
        self.rounds = rounds  # parallel runs of this variant (the slow standalone one runs once)
        self.pods: list[str] = []  # its own pod namespaces: variants take turns, and each wants eth0

    def call(self, host: Host, command: str, container_id: str, netns: str) -> float:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": self.cni_path,
               **self.env}
        started = time.monotonic()
        proc = subprocess.run(["nsenter", f"--net={host.netns_path}", self.binary],
                              input=json.dumps(self.conf).encode(), env=env, capture_output=True, timeout=120,
                              check=False)
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label} {command} {container_id}: {proc.stdout.decode()[:300]}")
        return took

    def container_ids(self, round_: int, parallel: int) -> list[str]:
        tag = "".join(c for c in self.label.lower() if c.isalnum())[:6]
        mode = "p" if parallel > 1 else "s"
        return [f"{tag}{i:05d}{mode}{round_}{os.urandom(4).hex()}" for i in range(len(self.pods))]


class CpuMeter:
    """CPU seconds used so far by the processes a call involves: the plugin executables this
    script runs (with nsenter, and whatever they exec or wait for), calico-node (with the nft
    commands it runs to follow the new endpoints), and etcd."""

    PARTS = ("callers", "calico-node", "etcd")

    def __init__(self, agent_pid: int, etcd_pid: int) -> None:
        self.pids = {"calico-node": agent_pid, "etcd": etcd_pid}
        self.tick = os.sysconf("SC_CLK_TCK")

    def _process(self, pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime + stime of every thread, and cutime + cstime: the children it reaped (nft runs)
        return sum(int(f) for f in fields[11:15]) / self.tick

    def read(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"callers": children.ru_utime + children.ru_stime,
                **{name: self._process(pid) for name, pid in self.pids.items()}}

    @staticmethod
    def since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {part: after[part] - before[part] for part in CpuMeter.PARTS}


class Measured:
    """One variant, one command, one mode: call latencies, wall time per run, CPU per part."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.walls: list[float] = []
        self.cpu = dict.fromkeys(CpuMeter.PARTS, 0.0)

    def add_cpu(self, used: dict[str, float]) -> None:
        for part, seconds in used.items():
            self.cpu[part] += seconds

    def cpu_per_call(self) -> dict[str, float]:
        return {part: seconds / max(len(self.latencies), 1) for part, seconds in self.cpu.items()}


Results = dict[tuple[str, int, str], Measured]


def measure_sequential(variants: list[Variant], host: Host, meter: CpuMeter, results: Results) -> None:
    """Every pod's call for each variant in turn (the order rotating), so that a machine whose
    speed drifts during the run slows every variant alike; a variant's wall time is the sum of
    its calls."""
    ids = {v.label: v.container_ids(0, 1) for v in variants}
    for command in ("ADD", "DEL"):
        for variant in variants:
            results[(variant.label, 1, command)] = Measured()
        for i in range(len(variants[0].pods)):
            for variant in variants[i % len(variants):] + variants[:i % len(variants)]:
                before = meter.read()
                took = variant.call(host, command, ids[variant.label][i], f"{NETNS_DIR}/{variant.pods[i]}")
                measured = results[(variant.label, 1, command)]
                measured.add_cpu(meter.since(before, meter.read()))
                measured.latencies.append(took)
        for variant in variants:
            measured = results[(variant.label, 1, command)]
            measured.walls.append(sum(measured.latencies))


def measure_parallel(variants: list[Variant], host: Host, meter: CpuMeter, results: Results) -> None:
    """All pods, PARALLEL at a time, one variant after the other, in rounds (the variants
    alternating): the wall time reported is the median round."""
    for variant in variants:
        for command in ("ADD", "DEL"):
            results[(variant.label, PARALLEL, command)] = Measured()
    for round_ in range(max(v.rounds for v in variants)):
        for variant in [v for v in variants if round_ < v.rounds]:
            ids = variant.container_ids(round_, PARALLEL)
            for command in ("ADD", "DEL"):
                measured = results[(variant.label, PARALLEL, command)]
                before, started = meter.read(), time.monotonic()
                with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                    measured.latencies += pool.map(functools.partial(variant.call, host, command),
                                                   ids, [f"{NETNS_DIR}/{pod}" for pod in variant.pods])
                measured.walls.append(time.monotonic() - started)
                measured.add_cpu(meter.since(before, meter.read()))


def ipam_worker(etcd: str, node: str, count: int) -> None:
    """One simulated node allocating `count` addresses in a row (a process of the cluster figure)."""
    from ..allocation.client import IpamClient, Request

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
    p.add_argument("--rounds", type=int, default=3, help="runs of each parallel measurement but the standalone one")
    p.add_argument("--agent-env", action="append", default=[], metavar="NAME=VALUE",
                   help="calico-node setting for the CNI figures, e.g. CALICO_POLICY_DATAPLANE=none")
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
    results: Results = {}
    variants: list[Variant] = []
    rate, total, duplicates = 0.0, 0, 0
    with PrivateEtcd() as etcd:
        if "cni" not in args.skip:
            agent_env = dict(item.partition("=")[::2] for item in args.agent_env)
            variants = latency(etcd, args.pods, "standalone" not in args.skip, args.rounds, agent_env, results)
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
        from .policy_bench import measure
        from .policy_bench import report as policy_report

        print("\n" + policy_report(measure(args.endpoints, args.policies)))
    return 0


def latency(etcd: PrivateEtcd, pod_count: int, standalone: bool, rounds: int, agent_env: dict[str, str],
            results: Results) -> list[Variant]:
    """ADD and DEL of `pod_count` pods for each plugin set, sequential then 8 at a time."""
    with EtcdDatastore(etcd.endpoint) as ds, tempfile.TemporaryDirectory() as tmp:
        admin.create_pool(ds, "bench-pool", "10.70.0.0/16")
        with Cluster(etcd.port, hosts=1, node_names=["bench-node"]) as cluster:
            host = cluster.hosts[0]
            agent = cluster.start_agent(host, True, **agent_env)
            base = cluster.pod_conf(host)
            calico = str(cluster.bin_dir / "calico")
            cni_path = f"{cluster.bin_dir}:{GO_PLUGINS}"
            go_conf = {"cniVersion": "1.0.0", "name": "bench-go", "type": "ptp", "ipMasq": False, "mtu": 1500,
                       "ipam": {"type": "host-local", "subnet": "10.71.0.0/16", "dataDir": f"{tmp}/host-local"}}
            variants = [
                Variant("Go ptp + host-local", str(GO_PLUGINS / "ptp"), go_conf, str(GO_PLUGINS), rounds=rounds),
                Variant("calico standalone", calico, {**base, "fast_path": "off"}, cni_path),
                # As deployed: a config without fast_path keys (the client then skips parsing it) and
                # the socket found where the host's agent serves it; "only" makes a miss an error.
                Variant("calico fast path", calico, {k: v for k, v in base.items() if not k.startswith("fast_path")},
                        cni_path, {"CALICO_CNI_SOCKET": base["fast_path_socket"], "CALICO_CNI_FAST_PATH": "only"},
                        rounds=rounds),
            ]
            if not standalone:
                variants = [v for v in variants if "standalone" not in v.label]
            for n, variant in enumerate(variants):
                variant.pods = [f"{cluster.prefix}-bench{n}-{i}" for i in range(pod_count)]
            try:
                for variant in variants:
                    for pod in variant.pods:
                        sh("ip", "netns", "add", pod)
                assert etcd.process is not None
                meter = CpuMeter(agent.pid, etcd.process.pid)
                print(f"measuring {', '.join(v.label for v in variants)}: {pod_count} pods each, one at a time, "
                      "taking turns ...", file=sys.stderr, flush=True)
                measure_sequential(variants, host, meter, results)
                print(f"measuring the same, {PARALLEL} at a time, in turns ...", file=sys.stderr, flush=True)
                measure_parallel(variants, host, meter, results)
            finally:
                for variant in variants:
                    for pod in variant.pods:
                        sh("ip", "netns", "del", pod, check=False)
    return variants


def machine() -> str:
    debian = Path("/etc/debian_version")
    return (f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"Debian {debian.read_text().strip() if debian.exists() else '?'}")


def report(results: Results, pods: int, variants: list[Variant]) -> str:
    def mode(parallel: int) -> str:
        return "sequential" if parallel == 1 else f"{parallel} in parallel"

    def wall(label: str, parallel: int) -> float:
        add, delete = results[(label, parallel, "ADD")], results[(label, parallel, "DEL")]
        return statistics.median(a + d for a, d in zip(add.walls, delete.walls, strict=True))

    def p50(label: str, parallel: int, command: str) -> float:
        return statistics.median(results[(label, parallel, command)].latencies)

    go = variants[0].label
    lines = ["| plugins | calls | ADD p50 | ADD p90 | DEL p50 | DEL p90 | wall, 100 ADD + 100 DEL | ADD p50 vs Go | "
             "DEL p50 vs Go | wall vs Go |".replace("100", str(pods)),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for parallel in (1, PARALLEL):
        for variant in variants:
            label = variant.label
            add, delete = results[(label, parallel, "ADD")].latencies, results[(label, parallel, "DEL")].latencies
            lines.append(f"| {label} | {mode(parallel)} | {p50(label, parallel, 'ADD') * 1000:.1f} ms | "
                         f"{percentile(add, 0.9) * 1000:.1f} ms | {p50(label, parallel, 'DEL') * 1000:.1f} ms | "
                         f"{percentile(delete, 0.9) * 1000:.1f} ms | {wall(label, parallel):.2f} s | "
                         f"{p50(label, parallel, 'ADD') / p50(go, parallel, 'ADD'):.1f}x | "
                         f"{p50(label, parallel, 'DEL') / p50(go, parallel, 'DEL'):.1f}x | "
                         f"{wall(label, parallel) / wall(go, parallel):.1f}x |")
    lines += ["", "CPU per call, ADD and DEL averaged (callers: nsenter and the plugin executables, with "
              "whatever they exec):", "",
              "| plugins | calls | callers | calico-node | etcd | total | total vs Go |",
              "|---|---|---|---|---|---|---|"]
    for parallel in (1, PARALLEL):
        totals = {}
        for variant in variants:
            per_call = [results[(variant.label, parallel, c)].cpu_per_call() for c in ("ADD", "DEL")]
            cpu = {part: (per_call[0][part] + per_call[1][part]) / 2 for part in CpuMeter.PARTS}
            totals[variant.label] = sum(cpu.values())
            lines.append(f"| {variant.label} | {mode(parallel)} | "
                         + " | ".join(f"{cpu[part] * 1000:.1f} ms" for part in CpuMeter.PARTS)
                         + f" | {totals[variant.label] * 1000:.1f} ms | {totals[variant.label] / totals[go]:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
