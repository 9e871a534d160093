"""calicoctl's resource verbs against a real etcd: the seed's sequences, round trips, validation,
optimistic concurrency, namespaces, patch and the clean-up that deleting a pool or a node implies."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cni_calico.allocation.client import IpamClient, Request
from cni_calico.ctl.main import run
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import admin, binaries
from cni_calico.lab.etcd import free_port
from cni_calico.model import keys
from cni_calico.node import startup
from cni_calico.node.config import load

pytestmark = pytest.mark.etcd

SEED_POOL = (Path(__file__).resolve().parent.parent / "examples" / "calico-pool.yaml").read_text()


def ctl(etcd: str, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    """calicoctl in-process (the same `run` the executable calls); stdin for `-f -`."""
    out, err = io.StringIO(), io.StringIO()
    old_in, old_err = sys.stdin, sys.stderr
    sys.stdin, sys.stderr = io.StringIO(stdin or ""), err
    try:
        code = run(list(argv), {"ETCD_ENDPOINTS": etcd}, out)
    finally:
        sys.stdin, sys.stderr = old_in, old_err
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def dump(ds: EtcdDatastore) -> dict[str, tuple[str, int]]:
    return {kv.key: (kv.value, kv.mod_revision) for kv in ds.list("/calico/")}


def test_the_seeds_pool_sequence(etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    startup.ensure_default_pool(etcd_store, load({}))  # what calico-node does on first start
    code, out, _ = ctl(etcd, "get", "pool", "-o", "wide")
    assert code == 0
    assert out == (
        "NAME                  CIDR             NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   "
        "SELECTOR   ASSIGNMENTMODE   \n"
        "default-ipv4-ippool   192.168.0.0/16   true   Never      Never       false      false              "
        "all()      Automatic        \n\n")
    assert ctl(etcd, "delete", "pool", "192.168.0.0/16") == (0, "Successfully deleted 1 'IPPool' resource(s)\n", "")
    assert ctl(etcd, "get", "pool", "-o", "wide")[1] == \
        "NAME   CIDR   NAT   IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE   \n\n"
    pool_file = write(tmp_path, "calico-pool.yaml", SEED_POOL)
    assert ctl(etcd, "create", "-f", pool_file) == (0, "Successfully created 1 'IPPool' resource(s)\n", "")
    code, out, _ = ctl(etcd, "get", "pool", "10.100.0.0/16", "-o", "yaml")
    shown = yaml.safe_load(out)
    assert code == 0 and shown["kind"] == "IPPool" and shown["metadata"]["name"] == "10-100-0-0-16"
    assert shown["spec"]["cidr"] == "10.100.0.0/16" and shown["spec"]["natOutgoing"] is True
    assert shown["spec"]["ipipMode"] == "Never" and shown["metadata"]["resourceVersion"]
    second = write(tmp_path, "pool2.yaml", SEED_POOL.replace("10.100.0.0/16", "20.200.0.0/16"))
    assert ctl(etcd, "create", "-f", second)[0] == 0
    out = ctl(etcd, "get", "pool", "-o", "wide")[1]
    assert [line.split()[1] for line in out.splitlines()[1:-1]] == ["10.100.0.0/16", "20.200.0.0/16"]


def test_get_yaml_fed_to_apply_changes_nothing(etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    docs = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: a}
spec: {cidr: 10.1.0.0/16, ipipMode: Always, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.0.2.254, asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80, "8000:8080"]}
"""
    code, out, err = ctl(etcd, "apply", "-f", write(tmp_path, "all.yaml", docs))
    assert code == 0, err
    assert out == "Successfully applied 3 resource(s)\n"
    before = dump(etcd_store)
    for kind, extra in (("ippool", []), ("bgppeer", []), ("networkpolicy", ["-n", "shop"])):
        code, out, err = ctl(etcd, "get", kind, *extra, "-o", "yaml")
        assert code == 0, err
        code, out, err = ctl(etcd, "apply", "-f", "-", stdin=out)
        assert code == 0, err
        assert out.startswith("Successfully applied 1 ")
    assert dump(etcd_store) == before  # not one revision moved
    code, out, _ = ctl(etcd, "get", "networkpolicy", "-A", "-o", "json")
    assert json.loads(out)["items"][0]["spec"]["types"] == ["Ingress"]


@pytest.mark.parametrize("doc, message", [
    ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.2.0.0/16, colour: red}",
     "spec.colour"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.2.0.0/33}", "spec.cidr"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.2.0.0/16, blockSize: 19}",
     "spec.blockSize"),
    ("apiVersion: projectcalico.org/v3\nkind: Gadget\nmetadata: {name: p}\nspec: {}", "Gadget"),
])
def test_bad_documents_name_the_problem_and_write_nothing(etcd: str, etcd_store: EtcdDatastore, tmp_path: Path,
                                                          doc: str, message: str) -> None:
    good = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: fine}\nspec: {cidr: 10.3.0.0/16}\n"
    path = write(tmp_path, "bad.yaml", good + "---\n" + doc)
    before = dump(etcd_store)
    code, out, err = ctl(etcd, "apply", "-f", path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"{path}: document 2: ") and message in err
    assert dump(etcd_store) == before


def test_overlap_immutable_fields_and_existence_are_refused(etcd: str, etcd_store: EtcdDatastore,
                                                           tmp_path: Path) -> None:
    admin.create_pool(etcd_store, "big", "10.0.0.0/8")
    before = dump(etcd_store)
    overlapping = write(tmp_path, "o.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\n"
                                            "metadata: {name: small}\nspec: {cidr: 10.5.0.0/16}\n")
    code, _, err = ctl(etcd, "create", "-f", overlapping)
    assert code == 1 and err == ("Failed to create 'IPPool' resource: [error with field IPPool.Spec.CIDR = "
                                 "'10.5.0.0/16' (IPPool(small) CIDR overlaps with IPPool(big) CIDR 10.0.0.0/8)]\n")
    moved = write(tmp_path, "m.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\n"
                                      "metadata: {name: big}\nspec: {cidr: 11.0.0.0/8}\n")
    code, _, err = ctl(etcd, "apply", "-f", moved)
    assert code == 1 and err == ("Failed to apply 'IPPool' resource: [error with field IPPool.Spec.CIDR = "
                                 "'11.0.0.0/8' (IPPool CIDR cannot be modified)]\n")
    again = write(tmp_path, "b.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\n"
                                      "metadata: {name: big}\nspec: {cidr: 10.0.0.0/8}\n")
    assert ctl(etcd, "create", "-f", again)[2] == \
        "Failed to create 'IPPool' resource: [resource already exists: IPPool(big)]\n"
    missing = write(tmp_path, "n.yaml", Path(again).read_text().replace("name: big", "name: nothere"))
    assert ctl(etcd, "replace", "-f", missing)[2] == \
        "Hit error: resource does not exist: IPPool(nothere) with error: <nil>\n"
    assert ctl(etcd, "delete", "pool", "nothere")[0] == 1
    assert ctl(etcd, "delete", "pool", "nothere", "--skip-not-exists")[0] == 0
    assert dump(etcd_store) == before


def test_concurrent_replace_with_the_same_resource_version_lets_one_win(etcd: str, etcd_store: EtcdDatastore
                                                                        ) -> None:
    admin.create_pool(etcd_store, "p", "10.9.0.0/16")
    shown = yaml.safe_load(ctl(etcd, "get", "pool", "p", "-o", "yaml")[1])
    docs = [dict(shown, spec={**shown["spec"], "disabled": d, "natOutgoing": not d}) for d in (True, False)]
    racers = [subprocess.Popen([*binaries.command("calicoctl"), "replace", "-f", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"ETCD_ENDPOINTS": etcd, "PATH": "/usr/bin:/bin"})
              for _ in docs]  # two real calicoctl processes, both holding the same version
    results = [(p, p.communicate(yaml.safe_dump(doc), timeout=60)) for p, doc in zip(racers, docs, strict=True)]
    codes = sorted(p.returncode for p, _ in results)
    assert codes == [0, 1]
    loser = next(err for p, (_, err) in results if p.returncode == 1)
    assert loser == "Hit error: update conflict: IPPool(p)\n"
    stale = yaml.safe_dump(shown)  # the version both started from is gone now
    assert ctl(etcd, "apply", "-f", "-", stdin=stale)[2] == \
        "Failed to apply 'IPPool' resource: [update conflict: IPPool(p)]\n"


def test_multi_document_apply_reports_each_outcome(etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    admin.create_pool(etcd_store, "exists", "10.20.0.0/16")
    path = write(tmp_path, "two.json", json.dumps([
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "exists"},
         "spec": {"cidr": "10.20.0.0/16"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "fresh"},
         "spec": {"cidr": "10.21.0.0/16"}}]))
    code, out, err = ctl(etcd, "create", "-f", path)
    assert code == 1
    assert out == ""  # Calico says "Partial success" only when more succeeded than failed
    assert err == "Hit error: [resource already exists: IPPool(exists)]\n"
    assert etcd_store.get(keys.resource("ippools", "fresh")) is not None


def test_namespaces_short_names_and_patch(etcd: str, etcd_store: EtcdDatastore, tmp_path: Path) -> None:
    for ns in ("a", "b"):
        doc = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
               "spec": {"selector": "all()", "types": ["Ingress"]}}
        assert ctl(etcd, "create", "-n", ns, "-f", "-", stdin=json.dumps(doc))[0] == 0
    assert ctl(etcd, "get", "np", "-n", "a")[1] == "NAMESPACE   NAME   TIER      \na           deny   default   \n\n"
    assert ctl(etcd, "get", "policies", "-A")[1] == \
        "NAMESPACE   NAME   TIER      \na           deny   default   \nb           deny   default   \n\n"
    assert ctl(etcd, "get", "networkpolicy")[1] == "NAME   TIER   \n\n"  # namespace "default" has none
    startup.register_node(etcd_store, "n1", __import__("netaddr").IPNetwork("192.0.2.11/24"), None)
    code, out, err = ctl(etcd, "patch", "node", "n1", "-p", '{"spec":{"bgp":{"asNumber":65010}}}')
    assert (code, out) == (0, "Successfully patched 1 'Node' resource\n"), err
    assert ctl(etcd, "get", "nodes", "-o", "wide")[1] == \
        "NAME   ASN     IPV4            IPV6   \nn1     65010   192.0.2.11/24          \n\n"
    code, _, err = ctl(etcd, "patch", "node", "n1", "-p", '{"spec":{"bgp":{"asNumber":"lots"}}}')
    assert code == 1 and "spec.bgp.asNumber" in err
    assert ctl(etcd, "get", "gadgets")[2] == "Failed to get resources: resource type 'gadgets' is not supported\n"


def test_deleting_a_node_releases_its_workloads_addresses_and_blocks(etcd: str, etcd_store: EtcdDatastore) -> None:
    from cni_calico.model.keys import workload_endpoint_key
    from cni_calico.model.v3 import ObjectMeta, WorkloadEndpoint, WorkloadEndpointSpec, to_json
    admin.create_pool(etcd_store, "p", "10.30.0.0/16")
    startup.register_node(etcd_store, "gone", __import__("netaddr").IPNetwork("192.0.2.12/24"), None)
    client = IpamClient(etcd_store, "gone")
    address = client.auto_assign(Request("net.c1", {"node": "gone"}))[0]
    wep = WorkloadEndpoint(metadata=ObjectMeta(name="gone-cni-c1-eth0", namespace="default"),
                           spec=WorkloadEndpointSpec(orchestrator="cni", node="gone", containerID="c1", endpoint="eth0",
                                                     interfaceName="cali1", ipNetworks=[f"{address.ip}/32"]))
    etcd_store.create(workload_endpoint_key("default", wep.metadata.name), to_json(wep))
    assert ctl(etcd, "delete", "node", "gone") == (0, "Successfully deleted 1 'Node' resource(s)\n", "")
    assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []
    assert etcd_store.list(keys.affinity_prefix("gone", 4)) == []
    assert etcd_store.list(keys.block_prefix(4)) == []
    assert etcd_store.get(keys.handle("net.c1")) is None


def test_deleting_a_pool_in_use_warns_and_keeps_its_blocks(etcd: str, etcd_store: EtcdDatastore) -> None:
    admin.create_pool(etcd_store, "busy", "10.40.0.0/16")
    IpamClient(etcd_store, "n1").auto_assign(Request("h1", {"node": "n1"}))
    code, out, err = ctl(etcd, "delete", "pool", "busy")
    assert code == 0 and out == "Successfully deleted 1 'IPPool' resource(s)\n"
    assert err.startswith("Warning: IPPool(busy) still had 1 address(es) allocated")
    assert len(etcd_store.list(keys.block_prefix(4))) == 1


def test_config_file_and_unreachable_etcd(etcd: str, tmp_path: Path) -> None:
    cfg = write(tmp_path, "calicoctl.cfg", "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n"
                                           f"spec:\n  datastoreType: etcdv3\n  etcdEndpoints: {etcd}\n")
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        assert run(["get", "pools", "--config", cfg], {"ETCD_ENDPOINTS": "http://127.0.0.1:1"}, out) == 0
    finally:
        sys.stderr = old
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([*binaries.command("calicoctl"), "get", "pools"], capture_output=True, text=True,
                          env={"ETCD_ENDPOINTS": dead, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("etcd is unreachable") and proc.stderr.count("\n") == 1
    bad = write(tmp_path, "bad.cfg", "kind: Nope\n")
    assert ctl(etcd, "get", "pools", "--config", bad)[2] == f"config file {bad}: expected kind CalicoAPIConfig\n"


def test_unknown_flags_and_verbs_are_one_line_errors(etcd: str) -> None:
    code, _, err = ctl(etcd, "get")
    assert code == 1
    assert err == "Invalid option: 'calicoctl get'. Use flag '--help' to read about a specific subcommand.\n"
    code, _, err = ctl(etcd, "frobnicate")
    assert code == 1 and err.count("\n") == 1
    assert ctl(etcd, "get", "pools", "-o", "xml")[2] == \
        "unrecognized output format 'xml'\n"


KIND_SAMPLES = {
    "ippool": {"kind": "IPPool", "metadata": {"name": "sample"}, "spec": {"cidr": "10.50.0.0/16"}},
    "node": {"kind": "Node", "metadata": {"name": "sample"}, "spec": {"bgp": {"ipv4Address": "192.0.2.50/24"}}},
    "bgpconfig": {"kind": "BGPConfiguration", "metadata": {"name": "default"},
                  "spec": {"asNumber": 65000, "nodeToNodeMeshEnabled": True, "logSeverityScreen": "Info"}},
    "bgppeer": {"kind": "BGPPeer", "metadata": {"name": "sample"}, "spec": {"peerIP": "192.0.2.1", "asNumber": 65002}},
    "profile": {"kind": "Profile", "metadata": {"name": "sample"}, "spec": {"ingress": [{"action": "Allow"}]}},
    "networkpolicy": {"kind": "NetworkPolicy", "metadata": {"name": "sample", "namespace": "default"},
                      "spec": {"selector": "all()", "ingress": [{"action": "Deny", "protocol": "ICMP"}]}},
    "globalnetworkpolicy": {"kind": "GlobalNetworkPolicy", "metadata": {"name": "sample"},
                            "spec": {"order": 10, "selector": "role == 'db'",
                                     "egress": [{"action": "Allow", "destination": {"nets": ["10.0.0.0/8"]}}]}},
    "workloadendpoint": {"kind": "WorkloadEndpoint", "metadata": {"name": "n1-cni-c1-eth0", "namespace": "default"},
                         "spec": {"orchestrator": "cni", "node": "n1", "containerID": "c1", "endpoint": "eth0",
                                  "interfaceName": "calic1", "ipNetworks": ["10.50.0.1/32"]}},
    "ipamconfig": {"kind": "IPAMConfiguration", "metadata": {"name": "default"},
                   "spec": {"strictAffinity": True, "maxBlocksPerHost": 3}},
}


@pytest.mark.parametrize("alias", sorted(KIND_SAMPLES))
def test_every_writable_kind_through_every_verb(etcd: str, etcd_store: EtcdDatastore, alias: str) -> None:
    doc = {"apiVersion": "projectcalico.org/v3", **KIND_SAMPLES[alias]}
    name = doc["metadata"]["name"]
    kind = doc["kind"]
    assert ctl(etcd, "create", "-f", "-", stdin=json.dumps(doc)) == \
        (0, f"Successfully created 1 '{kind}' resource(s)\n", "")
    code, table, _ = ctl(etcd, "get", alias)
    assert code == 0 and (name in table or (alias == "workloadendpoint" and "calic1" in table))
    code, wide, _ = ctl(etcd, "get", alias, "-o", "wide")
    assert code == 0 and len(wide.splitlines()) == 3 and wide.endswith("\n\n")
    shown = json.loads(ctl(etcd, "get", alias, name, "-o", "json")[1])
    assert shown["kind"] == kind and shown["metadata"]["resourceVersion"]
    for key, value in doc["spec"].items():
        assert shown["spec"][key] == value
    before = dump(etcd_store)
    assert ctl(etcd, "apply", "-f", "-", stdin=yaml.safe_dump(shown))[0] == 0
    assert ctl(etcd, "replace", "-f", "-", stdin=yaml.safe_dump(shown))[0] == 0
    assert dump(etcd_store) == before  # unchanged content writes nothing
    patch = {"metadata": {"labels": {"patched": "yes"}}} if kind != "IPAMConfiguration" else \
        {"spec": {"maxBlocksPerHost": 4}}
    code, out, err = ctl(etcd, "patch", alias, name, "-p", json.dumps(patch))
    assert (code, out) == (0, f"Successfully patched 1 '{kind}' resource\n"), err
    patched = json.loads(ctl(etcd, "get", alias, name, "-o", "json")[1])
    if kind == "IPAMConfiguration":
        assert patched["spec"]["maxBlocksPerHost"] == 4
    else:
        assert patched["metadata"]["labels"] == {"patched": "yes"}
    assert ctl(etcd, "delete", alias, name) == (0, f"Successfully deleted 1 '{kind}' resource(s)\n", "")
    where = "default/" if "namespace" in doc["metadata"] else ""
    assert ctl(etcd, "get", alias, name)[2] == \
        f"resource does not exist: {kind}({where}{name}) with error: <nil>\n"
