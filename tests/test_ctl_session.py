"""A calicoctl session against a real etcd, every command's stdout, stderr and exit status kept
in one golden transcript (tests/golden/calicoctl/session.txt): Calico's messages for success,
partial success, "already exists", overlapping CIDRs, update conflicts, missing resources, bad
kinds and formats; the tables; a pool copied from a real cluster applied here; `version`."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from cni_calico.ctl.main import run
from cni_calico.datastore import EtcdDatastore
from cni_calico.node import startup
from tests.golden import assert_matches_golden
from tests.test_v3 import CLUSTER_POOL

pytestmark = pytest.mark.etcd

GOLDEN = Path(__file__).parent / "golden" / "calicoctl" / "session.txt"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
V3 = "projectcalico.org/v3"

# What changes from run to run: etcd revisions, uids, timestamps, this build's commit
VOLATILE = [
    (re.compile(r'resourceVersion: "\d+"'), 'resourceVersion: "<rev>"'),
    (re.compile(r'creationTimestamp: "[^"]+"'), 'creationTimestamp: "<time>"'),
    (re.compile(r"uid: [0-9a-f-]{36}"), "uid: <uid>"),
    (re.compile(r"(Build date: +|Git commit: +)\S+"), r"\1<build>"),
    (re.compile(r"(Cluster Version: +)\S+"), r"\1<calico-node's version>"),
]


def pool(name: str, cidr: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


def wep(name: str, namespace: str, address: str, **spec: object) -> dict[str, object]:
    last = address.rsplit(".", maxsplit=1)[-1]
    return {"apiVersion": V3, "kind": "WorkloadEndpoint", "metadata": {"name": name, "namespace": namespace},
            "spec": {"orchestrator": "k8s", "node": "node1", "containerID": "c" + last,
                     "pod": name.split("-")[2], "endpoint": "eth0", "interfaceName": "cali" + last,
                     "ipNetworks": [f"{address}/32"], "profiles": [f"kns.{namespace}"], **spec}}


class Session:
    def __init__(self, etcd: str, tmp_path: Path) -> None:
        self.env = {"ETCD_ENDPOINTS": etcd}
        self.tmp = tmp_path
        self.parts: list[str] = []

    def file(self, name: str, documents: list[object]) -> str:
        path = self.tmp / name
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        return str(path)

    def __call__(self, *argv: str, stdin: str = "", shown: str | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        old_in, old_err = sys.stdin, sys.stderr
        sys.stdin, sys.stderr = io.StringIO(stdin), err
        try:
            code = run(list(argv), self.env, out)
        finally:
            sys.stdin, sys.stderr = old_in, old_err
        command = shown or " ".join(argv).replace(str(self.tmp) + "/", "")
        text = f"$ calicoctl {command}\n{out.getvalue()}"
        if err.getvalue():
            text += f"[stderr]\n{err.getvalue()}"
        text += f"[exit {code}]\n\n"
        for pattern, replacement in VOLATILE:
            text = pattern.sub(replacement, text)
        self.parts.append(text)
        return code, out.getvalue(), err.getvalue()

    def transcript(self) -> str:
        return "".join(self.parts)


def test_a_session_prints_what_calico_prints(etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    ctl = Session(etcd, tmp_path)
    ctl("get", "ippool")
    seed = str(EXAMPLES / "calico-pool.yaml")
    ctl("create", "-f", seed, shown="create -f examples/calico-pool.yaml")
    ctl("create", "-f", seed, shown="create -f examples/calico-pool.yaml")
    ctl("create", "-f", ctl.file("small.yaml", [pool("small", "10.100.5.0/24")]))
    cluster = ctl.file("from-a-cluster.yaml", [CLUSTER_POOL])
    ctl("apply", "-f", cluster)
    ctl("get", "ippool", "-o", "wide")
    assert ctl("get", "ippool", "default-ipv4-ippool", "-o", "yaml")[0] == 0
    ctl("get", "pool", "10.100.0.0/16")  # named by its CIDR: ours
    before = {kv.key: kv.mod_revision for kv in etcd_store.list("/calico/")}
    shown = ctl("get", "ippool", "-o", "yaml")[1]
    ctl("apply", "-f", "-", stdin=shown)
    assert {kv.key: kv.mod_revision for kv in etcd_store.list("/calico/")} == before  # nothing rewritten
    ctl("apply", "-f", cluster)  # its resourceVersion is not the one here
    ctl("replace", "-f", ctl.file("missing.yaml", [pool("nothere", "10.7.0.0/16")]))
    ctl("apply", "-f", ctl.file("moved.yaml", [pool("small", "10.8.0.0/16")]))
    ctl("apply", "-f", ctl.file("moved.yaml", [pool("10-100-0-0-16", "10.101.0.0/16")]))
    ctl("create", "-f", ctl.file("three.yaml", [pool("p1", "10.11.0.0/16"), pool("p2", "10.12.0.0/16"),
                                               pool("p1", "10.13.0.0/16")]))
    ctl("create", "--skip-exists", "-f", ctl.file("again.yaml", [pool("p1", "10.11.0.0/16")]))
    ctl("get", "ippool", "p1", "nothere", "p2")
    ctl("delete", "ippool", "nothere")
    ctl("delete", "ippool", "p2", "nothere")
    ctl("delete", "ippool", "nothere", "--skip-not-exists")
    ctl("delete", "-f", ctl.file("p1.yaml", [pool("p1", "10.11.0.0/16")]))

    ctl("create", "-f", ctl.file("weps.yaml", [
        wep("node1-k8s-web-eth0", "shop", "10.100.0.7"),
        wep("node1-k8s-db-eth0", "default", "10.100.0.8",
            ipNATs=[{"internalIP": "10.100.0.8", "externalIP": "198.51.100.8"}])]))
    ctl("get", "workloadendpoint")
    ctl("get", "wep", "-n", "shop")
    ctl("get", "weps", "-A", "-o", "wide")
    ctl("create", "-f", ctl.file("peers.yaml", [
        {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "tor"},
         "spec": {"peerIP": "192.0.2.254", "asNumber": 65001}},
        {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "node1.tor"},
         "spec": {"node": "node1", "peerIP": "192.0.2.253", "asNumber": 65002}},
        {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "rack-a"},
         "spec": {"nodeSelector": "rack == 'a'", "peerIP": "192.0.2.252", "asNumber": 65003}}]))
    ctl("get", "bgppeer", "-o", "wide")
    ctl("patch", "node", "gone", "-p", json.dumps({"spec": {"bgp": {"asNumber": 65010}}}))
    ctl("get", "gadgets")
    ctl("delete", "gadgets", "x")
    ctl("get", "ippool", "-o", "xml")
    ctl("get")
    ctl("version")
    startup.ensure_cluster_information(etcd_store)  # what calico-node writes first
    ctl("version")
    ctl("apply", "-f", ctl.file("info.yaml", [{"apiVersion": V3, "kind": "ClusterInformation",
                                               "metadata": {"name": "default"}, "spec": {}}]))
    ctl("delete", "clusterinformation", "default")
    assert_matches_golden(GOLDEN, ctl.transcript())
