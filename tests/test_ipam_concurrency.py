"""Real processes racing on one etcd: 4 simulated nodes x 25 calico-ipam ADDs launched at once.

The host lock is switched off so every process races: correctness must come from the
compare-and-swap writes alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections import Counter
from typing import Any

import pytest

from cni_calico.allocation.block import AllocationBlock
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import binaries
from cni_calico.lab.admin import create_pool
from cni_calico.model import keys

pytestmark = pytest.mark.etcd

NODES = ["node-a", "node-b", "node-c", "node-d"]
PER_NODE = 25


def launch(command: str, etcd: str, node: str, cid: str) -> subprocess.Popen[bytes]:
    config = {"cniVersion": "1.0.0", "name": "race", "type": "calico-ipam", "etcd_endpoints": etcd,
              "nodename": node, "ipam_lock_file": "", "ipam": {"type": "calico-ipam"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS="/var/run/netns/none", CNI_IFNAME="eth0")
    with tempfile.TemporaryFile() as stdin:  # the child keeps its own descriptor
        stdin.write(json.dumps(config).encode())
        stdin.seek(0)
        return subprocess.Popen(binaries.command("calico-ipam"), stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def finish(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    results = {}
    for cid, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (cid, out, err.decode()[-2000:])
        results[cid] = json.loads(out) if out.strip() else None
    return results


def test_four_nodes_racing_get_unique_addresses_and_own_blocks(etcd: str, etcd_store: EtcdDatastore) -> None:
    # Small blocks (8 addresses) force every node to claim several blocks while the others do too.
    create_pool(etcd_store, "race", "10.77.0.0/24", blockSize=29)
    workloads = [(node, f"{node}-{i}") for i in range(PER_NODE) for node in NODES]
    results = finish({cid: launch("ADD", etcd, node, cid) for node, cid in workloads})

    addresses = [r["ips"][0]["address"].split("/")[0] for r in results.values()]
    duplicates = [a for a, n in Counter(addresses).items() if n > 1]
    assert not duplicates and len(addresses) == len(workloads)

    blocks = [AllocationBlock.from_json(kv.value) for kv in etcd_store.list(keys.block_prefix(4))]
    for block in blocks:
        owners = [n for n in NODES if etcd_store.get(keys.affinity(n, block.network)) is not None]
        assert owners == [block.host], f"{block.cidr} affine to {block.host}, affinities held by {owners}"
        states = {json.loads(etcd_store.get(keys.affinity(n, block.network)).value)["state"] for n in owners}
        assert states == {"confirmed"}
    # Every allocation belongs to a recorded handle whose counts match the blocks.
    allocated = Counter(a.handle_id for b in blocks for _, a in b.allocated())
    handles = {kv.key.rsplit("/", 1)[1]: json.loads(kv.value) for kv in etcd_store.list(keys.HANDLE_PREFIX)}
    assert set(handles) == {f"race.{cid}" for _, cid in workloads}
    assert all(sum(h["block"].values()) == allocated[name] == 1 for name, h in handles.items())
    # Each node's addresses came from its own blocks: nobody had to borrow with room to spare.
    for node, cid in workloads:
        address = results[cid]["ips"][0]["address"].split("/")[0]
        owner = next(b.host for b in blocks if address in [str(ip) for ip, _ in b.allocated()])
        assert owner == node

    finish({cid: launch("DEL", etcd, node, cid) for node, cid in workloads})
    assert etcd_store.list(keys.HANDLE_PREFIX) == []
    assert all(AllocationBlock.from_json(kv.value).in_use == 0 for kv in etcd_store.list(keys.block_prefix(4)))
