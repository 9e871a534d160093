"""How many times an ADD and a DEL go to etcd.

The plugin runs in a process inside a simulated host (netlink on real namespaces) on the real
etcd, through a wrapper that counts the datastore calls reaching it (each call of the etcd store
is one gRPC round trip); the first ADD of a node also claims a block, the second finds it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator

import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.model.keys import profile_key
from cni_calico.model.v3 import allow_all_profile, to_json
from tests.netlab import Lab

pytestmark = [pytest.mark.root, pytest.mark.etcd]

SCRIPT = r"""
import io, json, sys
from cni_calico.cni import skel
from cni_calico.datastore import EtcdDatastore
from cni_calico.plugin import CalicoPlugin

CALLS = ("get", "list", "get_many", "read_many", "txn", "create", "update", "delete", "snapshot", "watch")

class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, []
    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in CALLS:
            return attr
        def counted(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)
        return counted
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        pass
    def close(self):
        pass

conf, pods = sys.argv[1], sys.argv[2:]
counting = Counting(EtcdDatastore(json.loads(conf)["etcd_endpoints"]))
plugin = CalicoPlugin(lambda conf, env: counting)
report = []
for command in ("ADD", "DEL"):
    for n, pod in enumerate(pods):
        counting.calls = []
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"rt{n}", "CNI_NETNS": pod, "CNI_IFNAME": "eth0",
               "CNI_PATH": "/usr/lib/cni"}
        out = io.StringIO()
        status = skel.run(lambda: plugin, env, io.BytesIO(conf.encode()), out)
        assert status == 0, out.getvalue()
        report.append({"command": command, "calls": counting.calls})
print(json.dumps(report))
"""


@pytest.fixture
def lab(etcd_server: Any, etcd_store: EtcdDatastore) -> Iterator[Lab]:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    lab = Lab(etcd_server.port)
    try:
        yield lab.start()
    finally:
        lab.stop()


def test_add_and_del_round_trips(lab: Lab) -> None:
    pods = [lab.pod("rt-a"), lab.pod("rt-b")]
    conf = json.dumps({k: v for k, v in lab.conf().items() if not k.startswith("fast_path")})
    proc = subprocess.run(["ip", "netns", "exec", lab.host, sys.executable, "-c", SCRIPT, conf, *pods],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first_add, second_add, first_del, second_del = json.loads(proc.stdout)
    # IPAM's first reads, with the endpoint's and the profile's keys; the block and the handle
    # read together; both written in one transaction; the endpoint (and profile) written.
    assert second_add["calls"] == ["read_many", "read_many", "txn", "txn"]
    assert len(first_add["calls"]) > len(second_add["calls"])  # the first also claimed a block
    # The endpoint with the handle and the legacy handle in one read; the block the handle names;
    # both written; the endpoint deleted at the revision read.
    assert first_del["calls"] == second_del["calls"] == ["read_many", "get", "txn", "txn"]


# The counting store above; then an ADD that claims the block, the profile put back as versions
# before network isolation wrote it, and the counted ADD that upgrades it.
UPGRADE_SCRIPT = SCRIPT.split("conf, pods = ", maxsplit=1)[0] + r"""
from cni_calico.model.keys import profile_key
conf, old_profile, pods = sys.argv[1], sys.argv[2], sys.argv[3:]
counting = Counting(EtcdDatastore(json.loads(conf)["etcd_endpoints"]))
plugin = CalicoPlugin(lambda conf, env: counting)
report = []
for command in ("ADD", "DEL"):
    for n, pod in enumerate(pods):
        if command == "ADD" and n == 1:
            key = profile_key(json.loads(conf)["name"])
            assert counting.inner.update(key, old_profile, counting.inner.get(key).mod_revision)
        counting.calls = []
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"up{n}", "CNI_NETNS": pod, "CNI_IFNAME": "eth0",
               "CNI_PATH": "/usr/lib/cni"}
        out = io.StringIO()
        status = skel.run(lambda: plugin, env, io.BytesIO(conf.encode()), out)
        assert status == 0, out.getvalue()
        report.append(counting.calls)
print(json.dumps(report))
"""


def test_upgrading_an_old_profile_costs_no_round_trip(lab: Lab, etcd_store: EtcdDatastore) -> None:
    pods = [lab.pod("up-a"), lab.pod("up-b")]
    conf = {k: v for k, v in lab.conf().items() if not k.startswith("fast_path")}
    old = to_json(allow_all_profile(conf["name"]))  # byte for byte what older versions wrote
    proc = subprocess.run(["ip", "netns", "exec", lab.host, sys.executable, "-c", UPGRADE_SCRIPT, json.dumps(conf),
                           old, *pods], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _, upgrading_add, *_ = json.loads(proc.stdout)
    assert upgrading_add == ["read_many", "read_many", "txn", "txn"]  # as any second ADD (above)
    profile = json.loads(etcd_store.get(profile_key(conf["name"])).value)
    assert profile["spec"]["labelsToApply"] == {conf["name"]: ""}


# The counting store above, for pods: CNI_ARGS names each one.
POD_SCRIPT = SCRIPT.replace('"CNI_PATH": "/usr/lib/cni"}',
                            '"CNI_PATH": "/usr/lib/cni", "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod{n}"}')


def test_kubernetes_mode_costs_no_round_trip(lab: Lab, etcd_store: EtcdDatastore) -> None:
    """Reading the pod from the API (policy type k8s) adds nothing to what ADD asks of etcd."""
    from cni_calico.lab.k8s_api import K8sApiServer
    from cni_calico.lab.relay import NetnsRelay

    pods = [lab.pod("k8s-a"), lab.pod("k8s-b")]
    with K8sApiServer() as api, NetnsRelay(api.port) as relay:
        relay.expose(f"/var/run/netns/{lab.host}")
        for n in range(2):
            api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod{n}", "namespace": "default",
                                                                        "labels": {"app": "rt"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]}})
        conf = {**{k: v for k, v in lab.conf().items() if not k.startswith("fast_path")},
                "policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": str(api.kubeconfig)}}
        proc = subprocess.run(["ip", "netns", "exec", lab.host, sys.executable, "-c", POD_SCRIPT, json.dumps(conf),
                               *pods], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert api.log.count(method="GET") == 4  # each ADD read its namespace and its pod
    _, second_add, first_del, second_del = json.loads(proc.stdout)
    assert second_add["calls"] == ["read_many", "read_many", "txn", "txn"]  # as without the API (above)
    assert first_del["calls"] == second_del["calls"] == ["read_many", "get", "txn", "txn"]
