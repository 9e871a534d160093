"""calicoctl's tables and summary lines, pure: checked against Calico's own expected output where
Calico's tests spell it out, and against golden files (tests/golden/calicoctl/) for every kind's
table and every message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cni_calico.ctl import output
from cni_calico.ctl.gotext import go_float
from cni_calico.ctl.kinds import KINDS, TableContext, known_kind
from cni_calico.ctl.summary import Outcome, summarize
from cni_calico.model.v3 import pool_read_defaults
from tests.golden import assert_matches_golden

GOLDEN = Path(__file__).parent / "golden" / "calicoctl"
V3 = "projectcalico.org/v3"


def pool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name}, "spec": pool_read_defaults(spec)}


# Calico's system tests (calicoctl/tests/st/utils/data.py) spell these out; their harness strips
# the output's trailing whitespace, so the last row's padding and the blank line are ours to add.
CALICO_POOL = pool("ippool-name1", cidr="10.0.1.0/24", ipipMode="Always", vxlanMode="Never", blockSize=27,
                   nodeSelector="foo == 'bar'")
CALICO_TABLE = ("NAME           CIDR          SELECTOR       \n"
                "ippool-name1   10.0.1.0/24   foo == 'bar'")
CALICO_WIDE = ("NAME           CIDR          NAT     IPIPMODE   VXLANMODE   DISABLED   "
               "DISABLEBGPEXPORT   SELECTOR       ASSIGNMENTMODE   \n"
               "ippool-name1   10.0.1.0/24   false   Always     Never       false      "
               "false              foo == 'bar'   Automatic")
CALICO_V6_TABLE = ("NAME           CIDR             SELECTOR   \n"
                   "ippool-name2   fed0:8001::/64   all()")


def render(kind: str, items: list[dict[str, Any]], fmt: str = "ps", named: bool = False, **kw: Any) -> str:
    return output.render(known_kind(kind), items, fmt, named=named, revision=7, **kw)


def test_pool_tables_are_calicos_character_for_character() -> None:
    assert render("IPPool", [CALICO_POOL], named=True).rstrip() == CALICO_TABLE
    assert render("IPPool", [CALICO_POOL], "wide", named=True).rstrip() == CALICO_WIDE
    v6 = pool("ippool-name2", cidr="fed0:8001::/64", blockSize=123)
    # two names: two tables, each closed by a blank line (Calico's test: table + "   \n\n" + table)
    assert render("IPPool", [CALICO_POOL, v6], named=True).rstrip() == CALICO_TABLE + "   \n\n" + CALICO_V6_TABLE


def test_every_cell_is_padded_and_a_blank_line_closes_the_table() -> None:
    assert output.table(["A", "LONGER"], [["x", ""]]) == "A    LONGER   \nx             \n\n"
    assert output.table(["NAME"], []) == "NAME   \n\n"


@pytest.mark.parametrize("value, text", [(100, "100"), (100.0, "100"), (100.5, "100.5"), (1e6, "1e+06"),
                                         (100000, "100000"), (-2.5, "-2.5"), (123456789.0, "1.23456789e+08"),
                                         (0.00001, "1e-05"), (0.5, "0.5")])
def test_orders_print_as_go_prints_a_float(value: float, text: str) -> None:
    assert go_float(float(value)) == text


SAMPLES: dict[str, list[dict[str, Any]]] = {
    "IPPool": [pool("default-ipv4-ippool", cidr="192.168.0.0/16", ipipMode="Always", natOutgoing=True),
               pool("10-100-0-0-16", cidr="10.100.0.0/16", natOutgoing=True, disableBGPExport=True,
                    nodeSelector="rack == 'a'", assignmentMode="Manual"),
               pool("lb", cidr="fd00:7::/112", blockSize=122, disabled=True, allowedUses=["LoadBalancer"])],
    "Node": [{"metadata": {"name": "node1"}, "spec": {"bgp": {"ipv4Address": "192.0.2.11/24", "asNumber": 65010}}},
             {"metadata": {"name": "node2"}, "spec": {"bgp": {"ipv4Address": "192.0.2.12/24",
                                                               "ipv6Address": "2001:db8::12/64"}}},
             {"metadata": {"name": "no-bgp"}, "spec": {}}],
    "BGPConfiguration": [{"metadata": {"name": "default"}, "spec": {"logSeverityScreen": "Info",
                                                                    "nodeToNodeMeshEnabled": True, "asNumber": 64513}},
                         {"metadata": {"name": "node.node1"}, "spec": {}}],
    "BGPPeer": [{"metadata": {"name": "tor"}, "spec": {"peerIP": "192.0.2.254", "asNumber": 65001}},
                {"metadata": {"name": "node1.tor"}, "spec": {"node": "node1", "peerIP": "192.0.2.253",
                                                             "asNumber": 65002}},
                {"metadata": {"name": "rack-a"}, "spec": {"nodeSelector": "rack == 'a'", "peerIP": "192.0.2.252",
                                                          "asNumber": 65003}},
                {"metadata": {"name": "to-rr"}, "spec": {"peerSelector": "rr == 'true'"}}],
    "Profile": [{"metadata": {"name": "kns.shop"}, "spec": {"labelsToApply": {"pcns.team": "b", "pcns.app": "a"}}},
                {"metadata": {"name": "calico-net"}, "spec": {}}],
    "NetworkPolicy": [{"metadata": {"name": "web", "namespace": "shop"},
                       "spec": {"order": 100, "selector": "app == 'web'"}},
                      {"metadata": {"name": "knp.default.deny", "namespace": "default"},
                       "spec": {"tier": "default", "order": 1000.5, "selector": "all()"}},
                      {"metadata": {"name": "no-order", "namespace": "default"}, "spec": {"selector": "all()"}}],
    "GlobalNetworkPolicy": [{"metadata": {"name": "deny-icmp"}, "spec": {"order": 1e6, "selector": "has(icmp)"}}],
    "WorkloadEndpoint": [
        {"metadata": {"name": "node1-cni-c1-eth0", "namespace": "default"},
         "spec": {"workload": "c1", "node": "node1", "ipNetworks": ["10.100.0.1/32"], "interfaceName": "cali0c1",
                  "profiles": ["calico-net"]}},
        {"metadata": {"name": "node1-k8s-web-eth0", "namespace": "shop"},
         "spec": {"pod": "web", "node": "node1", "ipNetworks": ["10.100.0.2/32", "fd00:10::2/128"],
                  "interfaceName": "caliweb", "profiles": ["kns.shop", "ksa.shop.default"],
                  "ipNATs": [{"internalIP": "10.100.0.2", "externalIP": "198.51.100.2"}]}}],
    "IPAMConfiguration": [{"metadata": {"name": "default"},
                           "spec": {"strictAffinity": True, "maxBlocksPerHost": 4, "autoAllocateBlocks": True}}],
    "ClusterInformation": [{"metadata": {"name": "default"},
                            "spec": {"clusterGUID": "0e1f2a", "clusterType": "bgp,cni", "calicoVersion": "v0.1.0",
                                     "datastoreReady": True}}],
}


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_every_kinds_tables(kind: str) -> None:
    """ps and wide, listed and named, and with NAMESPACE as -n or -A asks (for the kinds that have it)."""
    items = SAMPLES[kind]
    parts = []
    for title, text in (
            ("get", render(kind, items)),
            ("get -o wide", render(kind, items, "wide")),
            ("get -A", render(kind, items, with_namespace=True)),
            ("get -A -o wide", render(kind, items, "wide", with_namespace=True)),
            ("get NAME NAME", render(kind, items[:2], named=True)),
            ("get -o wide, BGPConfiguration default with asNumber 64600",
             render(kind, items, "wide", context=TableContext(default_as="64600")))):
        parts.append(f"$ calicoctl {title}\n{text}")
    assert_matches_golden(GOLDEN / "tables" / f"{kind}.txt", "".join(parts))


def test_yaml_and_json_of_named_and_listed_resources() -> None:
    one = [SAMPLES["IPPool"][0]]
    text = "".join([
        "$ get ippool NAME -o yaml\n", render("IPPool", one, "yaml", named=True),
        "$ get ippool NAME NAME -o yaml\n", render("IPPool", SAMPLES["IPPool"][:2], "yaml", named=True),
        "$ get ippool -o yaml\n", render("IPPool", one, "yaml"),
        "$ get ippool MISSING -o yaml\n", render("IPPool", [], "yaml", named=True),
        "$ get ippool NAME -o json\n", render("IPPool", one, "json", named=True),
        "$ get ippool -o json\n", render("IPPool", [], "json"),
    ])
    assert_matches_golden(GOLDEN / "yaml_json.txt", text)


FAILED_TO_EXIST = "resource does not exist: IPPool(gone) with error: <nil>"
EXISTS = "resource already exists: IPPool(default-ipv4-ippool)"
OVERLAP = ("error with field IPPool.Spec.CIDR = '10.5.0.0/16' (IPPool(small) CIDR overlaps with IPPool(big) "
           "CIDR 10.0.0.0/8)")
CONFLICT = "update conflict: IPPool(p)"

SCENARIOS = [
    ("create one", "create", [Outcome("IPPool")], False),
    ("create two kinds", "create", [Outcome("IPPool"), Outcome("BGPPeer")], False),
    ("create one that exists", "create", [Outcome("IPPool", EXISTS)], False),
    ("create one that overlaps", "create", [Outcome("IPPool", OVERLAP)], False),
    ("create two, both fail", "create", [Outcome("IPPool", EXISTS), Outcome("IPPool", OVERLAP)], False),
    ("create two kinds, both fail", "create", [Outcome("IPPool", EXISTS), Outcome("BGPPeer", "x")], False),
    ("create two, the second fails", "create", [Outcome("IPPool"), Outcome("IPPool", EXISTS)], False),
    ("create three, the third fails", "create", [Outcome("IPPool"), Outcome("IPPool"), Outcome("IPPool", EXISTS)],
     False),
    ("create three kinds, the third fails", "create",
     [Outcome("IPPool"), Outcome("BGPPeer"), Outcome("IPPool", EXISTS)], False),
    ("apply one", "apply", [Outcome("IPPool")], False),
    ("apply one with a stale resourceVersion", "apply", [Outcome("IPPool", CONFLICT)], False),
    ("apply three, the third fails", "apply", [Outcome("IPPool"), Outcome("IPPool"), Outcome("IPPool", CONFLICT)],
     False),
    ("apply two, both fail", "apply", [Outcome("IPPool", CONFLICT), Outcome("IPPool", OVERLAP)], False),
    ("replace two", "replace", [Outcome("IPPool"), Outcome("IPPool")], False),
    ("replace one that is missing", "replace", [Outcome("IPPool", FAILED_TO_EXIST)], False),
    ("replace one with a stale resourceVersion", "replace", [Outcome("IPPool", CONFLICT)], False),
    ("delete one by name", "delete", [Outcome("IPPool")], True),
    ("delete one that is missing", "delete", [Outcome("IPPool", FAILED_TO_EXIST)], True),
    ("delete two names, the second missing", "delete", [Outcome("IPPool"), Outcome("IPPool", FAILED_TO_EXIST)],
     True),
    ("delete -f of two kinds", "delete", [Outcome("IPPool"), Outcome("BGPPeer")], False),
    ("delete -f of two kinds, one missing", "delete",
     [Outcome("IPPool"), Outcome("BGPPeer", "resource does not exist: BGPPeer(x) with error: <nil>")], False),
    ("patch one", "patch", [Outcome("Node")], True),
    ("patch one that is missing", "patch",
     [Outcome("Node", "resource does not exist: Node(gone) with error: <nil>")], True),
]


def test_every_summary_message() -> None:
    parts = []
    for title, verb, outcomes, by_name in SCENARIOS:
        summary = summarize(verb, outcomes, by_name=by_name)
        parts.append(f"# {title}\n[stdout]\n{summary.out}[stderr]\n"
                     + (f"{summary.error}\n" if summary.error is not None else "")
                     + f"[exit {0 if summary.error is None else 1}]\n\n")
    assert_matches_golden(GOLDEN / "messages.txt", "".join(parts))


def test_the_lines_calicos_sources_spell_out() -> None:
    assert summarize("create", [Outcome("IPPool")]).out == "Successfully created 1 'IPPool' resource(s)\n"
    assert summarize("create", [Outcome("IPPool", EXISTS)]).error == \
        "Failed to create 'IPPool' resource: [resource already exists: IPPool(default-ipv4-ippool)]"
    partial = summarize("create", [Outcome("IPPool"), Outcome("IPPool"), Outcome("IPPool", EXISTS)])
    assert partial.out == "Partial success: created the first 2 out of 3 'IPPool' resources:\n"
    assert partial.error == f"Hit error: [{EXISTS}]"
    deleted = summarize("delete", [Outcome("IPPool", FAILED_TO_EXIST)], by_name=True)
    assert (deleted.out, deleted.error) == ("", f"Failed to delete 'IPPool' resource: {FAILED_TO_EXIST}\n")
