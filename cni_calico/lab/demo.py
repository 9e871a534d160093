"""`make demo`: a private etcd, N simulated hosts with calico-node + BIRD, pods on each, real traffic;
then Kubernetes mode: the API stand-in, calico-kube-controllers, a NetworkPolicy enforced.

Run: python -m cni_calico.lab.demo [--hosts N] [--pods K]; `--clean` removes what an interrupted
run left behind (its state file names every namespace, PID and directory it made).
Everything it starts is stopped on the way out (normal exit, error or Ctrl-C).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ..allocation.block import AllocationBlock
from ..datastore import EtcdDatastore
from ..errors import CniError
from ..model import keys
from . import kube_demo
from .cluster import REPO, Cluster, Host
from .etcd import PrivateEtcd
from .hosts import sh
from .k8s.errors import ApiError

POOL_FILE = REPO / "examples" / "calico-pool.yaml"  # the seed's pool, 10.100.0.0/16
PREFIX = "ccdemo"
STATE = Path("/tmp/cni-calico-demo.json")


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def established(cluster: Cluster, host: Host) -> bool:
    out = cluster.calicoctl(host, "node", "status").stdout
    return out.count("Established") == len(cluster.hosts) - 1


def blocks_of(ds: EtcdDatastore) -> list[AllocationBlock]:
    return [AllocationBlock.from_json(kv.value) for kv in ds.list(keys.block_prefix(4))]


def routes_complete(cluster: Cluster, ds: EtcdDatastore) -> bool:
    """Every host has a blackhole for its own blocks and a proto-bird route for everyone else's."""
    for block in blocks_of(ds):
        owner = (block.affinity or "").removeprefix("host:")
        for host in cluster.hosts:
            table = cluster.routes(host)
            want = f"blackhole {block.cidr} proto bird" if host.name == owner else f"{block.cidr} via "
            if want not in table:
                return False
    return True


def save_state(etcd: PrivateEtcd, cluster: Cluster, controllers_pid: int | None = None) -> None:
    STATE.write_text(json.dumps({"etcd_pid": etcd.process.pid if etcd.process else None, "etcd_dir": etcd.data_dir,
                                 "prefix": cluster.prefix, "workdir": str(cluster.workdir),
                                 "controllers_pid": controllers_pid}))


def clean() -> int:
    """Remove what a killed demo left: processes inside its namespaces (by PID), namespaces, files."""
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    prefix = state.get("prefix", PREFIX)
    names = [n.split()[0] for n in sh("ip", "netns", "list").stdout.splitlines() if n.startswith(f"{prefix}-")]
    for name in names:
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for name in sorted(names, reverse=True):
        sh("ip", "netns", "del", name, check=False)
    if state.get("etcd_pid"):
        try:
            cmdline = Path(f"/proc/{state['etcd_pid']}/cmdline").read_bytes()
            if state["etcd_dir"].encode() in cmdline:  # still our etcd, not a recycled PID
                os.kill(state["etcd_pid"], signal.SIGKILL)
        except OSError:
            pass
    if state.get("controllers_pid"):
        try:  # still our calico-kube-controllers: its environment names the demo's kubeconfig
            environ = Path(f"/proc/{state['controllers_pid']}/environ").read_bytes()
            if state["workdir"].encode() in environ:
                os.kill(state["controllers_pid"], signal.SIGKILL)
        except OSError:
            pass
    for key in ("etcd_dir", "workdir"):
        if state.get(key):
            shutil.rmtree(state[key], ignore_errors=True)
    STATE.unlink(missing_ok=True)
    print(f"removed {len(names)} namespaces" + (" and the demo's etcd" if state.get("etcd_pid") else ""))
    return 0


def run(hosts: int, pods: int) -> int:
    if STATE.exists():
        print("a previous demo left state behind: cleaning it first")
        clean()
    names = [f"{151 + i}node" for i in range(hosts)]  # the seed's hosts were 151node and 152node
    with PrivateEtcd() as etcd, EtcdDatastore(etcd.endpoint) as ds:
        print(f"etcd (private, pid {etcd.process.pid if etcd.process else '?'}) at {etcd.endpoint}")
        cluster = Cluster(etcd.port, prefix=PREFIX, node_names=names)
        save_state(etcd, cluster)
        with cluster:
            first = cluster.hosts[0]
            banner(f"calicoctl create -f {POOL_FILE.relative_to(REPO)} (the seed's v1 pool document)")
            created = cluster.calicoctl(first, "create", "-f", str(POOL_FILE))
            print((created.stdout + created.stderr).rstrip())
            if created.returncode != 0:
                return 1
            print(cluster.calicoctl(first, "get", "pool", "-o", "wide").stdout.rstrip())
            banner(f"{hosts} simulated hosts on one link ({', '.join(f'{h.name} {h.ip}' for h in cluster.hosts)}); "
                   "starting calico-node + BIRD on each")
            for host in cluster.hosts:
                cluster.start_agent(host, wait=False)
            for host in cluster.hosts:
                cluster.wait_ready(host)
                print(f"  {host.name}: calico-node ready (pid {host.agent.pid if host.agent else '?'}, "
                      f"BIRD pid {cluster.bird_pid(host)})")
            took = wait_for("the BGP mesh", lambda: all(established(cluster, h) for h in cluster.hosts))
            print(f"  full mesh Established after {took:.1f} s")

            banner(f"creating {pods} pods per host with the calico CNI plugin ({cluster.plugin_path('calico')})")
            addresses: dict[tuple[str, str], str] = {}
            for host in cluster.hosts:
                for i in range(1, pods + 1):
                    pod = f"pod{i}"
                    addresses[(host.name, pod)] = cluster.add_pod(host, pod, labels={"role": pod})
                    print(f"  {host.name}/{pod}: {addresses[(host.name, pod)]}")
            took = wait_for("block routes on every host", lambda: routes_complete(cluster, ds))
            print(f"  every host routes every block {took:.2f} s after the last pod was added")

            for host in cluster.hosts:
                banner(f"{host.name}: calicoctl node status")
                print(cluster.calicoctl(host, "node", "status").stdout.rstrip())
                banner(f"{host.name}: ip route")
                print(cluster.routes(host).rstrip())

            banner("calicoctl ipam show --show-blocks")
            print(cluster.calicoctl(first, "ipam", "show", "--show-blocks").stdout.rstrip())

            banner("pod-to-pod traffic across hosts (real ICMP through the hosts' routes)")
            failures = 0
            for (src_host, src_pod), _ in addresses.items():
                for (dst_host, dst_pod), dst_ip in addresses.items():
                    if src_host == dst_host:
                        continue
                    ok = cluster.ping(cluster.host(src_host), src_pod, dst_ip)
                    failures += not ok
                    print(f"  {src_host}/{src_pod} -> {dst_host}/{dst_pod} ({dst_ip}): {'ok' if ok else 'FAILED'}")
            failures += policy_demo(cluster, addresses)
            failures += kube_demo.run(cluster, ds, etcd.endpoint,
                                      lambda pid: save_state(etcd, cluster, controllers_pid=pid))
            verdict = "all reached, policy enforced" if not failures else f"{failures} FAILED"
            banner(f"result: {verdict}; cleaning up (controllers, agents, BIRDs, namespaces, etcd)")
        STATE.unlink(missing_ok=True)
    print("done: nothing left behind")
    return 1 if failures else 0


DENY_PING = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: no-ping-to-pod1
spec:
  selector: role == 'pod1'
  ingress:
  - action: Deny
    protocol: ICMP
  - action: Allow
"""


def policy_demo(cluster: Cluster, addresses: dict[tuple[str, str], str]) -> int:
    """A GlobalNetworkPolicy denying ICMP to every pod1, enforced by each host's nftables table,
    then deleted. Returns the number of pings that went against expectation."""
    first, last = cluster.hosts[0], cluster.hosts[-1]
    banner("policy: calicoctl apply -f - (deny ICMP to every pod labelled role=pod1)")
    print(DENY_PING.rstrip())
    applied = cluster.calicoctl(first, "apply", "-f", "-", stdin=DENY_PING)
    print((applied.stdout + applied.stderr).rstrip())
    targets = [(name, pod, ip) for (name, pod), ip in addresses.items() if name == last.name]
    failures = 0

    def pings_as_wanted(ip: str, wanted: str) -> bool:
        return cluster.ping(first, "pod1", ip) == (wanted == "ok")

    def ping_all(expect_blocked: set[str]) -> None:
        nonlocal failures
        for name, pod, ip in targets:
            wanted = "blocked" if pod in expect_blocked else "ok"
            ok = wait_quietly(functools.partial(pings_as_wanted, ip, wanted), 3)
            failures += not ok
            print(f"  {first.name}/pod1 -> {name}/{pod} ({ip}): {wanted if ok else 'UNEXPECTED'}")

    ping_all({"pod1"})
    banner(f"{last.name}: nft list table inet calico (excerpt: dispatch by interface)")
    listing = cluster.in_host(last, "nft", "list", "map", "inet", "calico", "to-wl").stdout
    print(listing.rstrip())
    banner("policy: calicoctl delete globalnetworkpolicy no-ping-to-pod1")
    print(cluster.calicoctl(first, "delete", "globalnetworkpolicy", "no-ping-to-pod1").stdout.rstrip())
    ping_all(set())
    return failures


def wait_quietly(check: Callable[[], bool], timeout: float) -> bool:
    """True once `check()` holds; False after `timeout` seconds (policy takes effect within one)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=int(os.environ.get("HOSTS", "2")))
    p.add_argument("--pods", type=int, default=int(os.environ.get("PODS", "2")))
    p.add_argument("--clean", action="store_true", help="only remove what an interrupted demo left behind")
    args = p.parse_args(argv)
    if args.clean:
        return clean()
    if not 1 <= args.hosts <= 50 or not 1 <= args.pods <= 50:
        print("demo: --hosts and --pods must be between 1 and 50", file=sys.stderr)
        return 2
    try:
        return run(args.hosts, args.pods)
    except (RuntimeError, OSError, subprocess.SubprocessError, CniError, ApiError, ValueError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)  # everything it made is gone already (run's finally)
        return 1
    except KeyboardInterrupt:
        print("interrupted: cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
