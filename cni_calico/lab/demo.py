"""`make demo`: a private etcd, a pool, and calico-ipam executed as a runtime would for two nodes.

Everything it starts is stopped on the way out (normal exit, error or Ctrl-C).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import admin, keys
from ..block import AllocationBlock
from ..datastore import EtcdDatastore
from .etcd import PrivateEtcd

POOL_CIDR = "10.100.0.0/16"
NODES = ("151node", "152node")


def calico_ipam(command: str, etcd: str, node: str, container_id: str) -> tuple[int, dict[str, Any] | None]:
    config = {"cniVersion": "1.0.0", "name": "calico-k8s-network", "type": "calico-ipam",
              "etcd_endpoints": etcd, "nodename": node, "ipam_lock_file": "", "ipam": {"type": "calico-ipam"}}
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
           "CNI_NETNS": f"/var/run/netns/{container_id}", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
           "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={container_id}"}
    binary = Path(sys.executable).with_name("calico-ipam")
    proc = subprocess.run([str(binary)], input=json.dumps(config).encode(), capture_output=True, env=env)
    out = proc.stdout.decode().strip()
    return proc.returncode, json.loads(out) if out else None


def show(ds: EtcdDatastore, title: str) -> None:
    print(f"\n== {title}")
    out = io.StringIO()
    print(f"{'BLOCK':<22}{'AFFINITY':<18}{'IN USE':<8}ADDRESSES", file=out)
    for kv in ds.list(keys.block_prefix(4)):
        block = AllocationBlock.from_json(kv.value)
        used = ", ".join(f"{ip} ({a.secondary.get('pod', '?') if a.secondary else '?'})"
                         for ip, a in block.allocated())
        print(f"{block.cidr:<22}{block.affinity or '-':<18}{block.in_use:<8}{used or '-'}", file=out)
    print(out.getvalue().rstrip())


def run() -> int:
    with PrivateEtcd() as etcd:
        print(f"etcd (private, pid {etcd.process.pid if etcd.process else '?'}) at {etcd.endpoint}")
        with EtcdDatastore(etcd.endpoint) as ds:
            pool = admin.create_pool(ds, "demo-pool", POOL_CIDR, natOutgoing=True)
            print(f"created IPPool {pool.name} {pool.network} (blockSize {pool.spec.block_prefixlen})")
            pods = [(node, f"{node[:3]}-pod{i}") for node in NODES for i in range(3)]
            for node, pod in pods:
                status, out = calico_ipam("ADD", etcd.endpoint, node, pod)
                shown = out["ips"][0]["address"] if status == 0 and out else out
                print(f"ADD {pod:<12} on {node}: {shown}")
                if status != 0:
                    return 1
            show(ds, "blocks after ADD (each node claimed its own /26)")
            for node, pod in pods[::2]:
                status, _ = calico_ipam("DEL", etcd.endpoint, node, pod)
                print(f"DEL {pod:<12} on {node}: {'ok' if status == 0 else 'FAILED'}")
            show(ds, "blocks after releasing every other pod")
            status, out = calico_ipam("ADD", etcd.endpoint, NODES[0], "late-pod")
            print(f"\nADD late-pod on {NODES[0]}: {out['ips'][0]['address'] if out and status == 0 else out}"
                  "  (released addresses wait at the tail of the free list)")
    print("\nprivate etcd stopped and its data removed")
    return 0


if __name__ == "__main__":
    sys.exit(run())
