"""calicoctl's `-f FILE` reader (cni_calico.ctl.documents): YAML/JSON, Lists, stdin, Calico v1
conversion, and one-line errors naming the file and the document."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from cni_calico.ctl.documents import Document, DocumentError, describe, load, to_v3
from cni_calico.model import v3

V3 = "projectcalico.org/v3"

SEED_POOL = (Path(__file__).resolve().parent.parent / "examples" / "calico-pool.yaml").read_text()


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def pool(name: str, cidr: str) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}}


def names(docs: list[Document]) -> list[tuple[int, str, str]]:
    return [(d.index, d.data["kind"], d.data["metadata"]["name"]) for d in docs]


# ------------------------------------------------------------------ reading

def test_multi_document_yaml_skips_empty_documents(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", """\
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: a}
spec: {cidr: 10.1.0.0/16}
---
---
# only a comment
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.0.2.254
  asNumber: 65001
""")
    docs = load(path)
    assert names(docs) == [(1, "IPPool", "a"), (2, "BGPPeer", "tor")]
    assert all(d.source == path for d in docs)
    assert docs[0].data == pool("a", "10.1.0.0/16")
    assert describe(docs[1]) == f"{path}: document 2"


def test_json_object_and_array(tmp_path: Path) -> None:
    one = write(tmp_path, "one.json", json.dumps(pool("a", "10.1.0.0/16"), indent=2))
    assert [d.data for d in load(one)] == [pool("a", "10.1.0.0/16")]
    many = write(tmp_path, "many.json", "  \n" + json.dumps([pool("a", "10.1.0.0/16"), pool("b", "10.2.0.0/16")]))
    assert names(load(many)) == [(1, "IPPool", "a"), (2, "IPPool", "b")]


def test_yaml_flow_style_is_not_mistaken_for_json(tmp_path: Path) -> None:
    path = write(tmp_path, "flow.yaml", "{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: a}, "
                                        "spec: {cidr: 10.1.0.0/16}}\n")
    assert [d.data for d in load(path)] == [pool("a", "10.1.0.0/16")]


def test_lists_expand_to_their_items(tmp_path: Path) -> None:
    path = write(tmp_path, "lists.yaml", """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: first}
spec: {cidr: 10.1.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata: {resourceVersion: "42"}
items:
- metadata: {name: a}
  spec: {cidr: 10.2.0.0/16}
- kind: IPPool
  metadata: {name: b}
  spec: {cidr: 10.3.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: List
items:
- kind: BGPPeer
  metadata: {name: tor}
  spec: {peerIP: 192.0.2.254, asNumber: 65001}
- apiVersion: v1
  kind: ipPool
  metadata: {cidr: 10.4.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: NodeList
items: []
""")
    docs = load(path)
    assert names(docs) == [(1, "IPPool", "first"), (2, "IPPool", "a"), (3, "IPPool", "b"), (4, "BGPPeer", "tor"),
                           (5, "IPPool", "10-4-0-0-16")]
    assert docs[1].data == pool("a", "10.2.0.0/16")  # the list's apiVersion and kind filled in
    assert docs[3].data["apiVersion"] == V3


def test_a_top_level_yaml_list_is_a_list_of_documents(tmp_path: Path) -> None:
    """The seed's `calicoctl get pool -o yaml` printed its pools as a YAML list."""
    path = write(tmp_path, "shown.yaml", "- " + SEED_POOL.replace("\n", "\n  ").rstrip() + "\n"
                 + "- " + SEED_POOL.replace("10.100.0.0", "20.200.0.0").replace("\n", "\n  ").rstrip() + "\n")
    assert names(load(path)) == [(1, "IPPool", "10-100-0-0-16"), (2, "IPPool", "20-200-0-0-16")]


def test_get_output_round_trips_through_load(tmp_path: Path) -> None:
    """What `get -o yaml` prints (a List with server-set metadata) loads back as its items."""
    import yaml
    stored = v3.to_stored(v3.validate({**pool("a", "10.1.0.0/16"),
                                       "metadata": {"name": "a", "creationTimestamp": "2024-05-01T10:00:00Z"}}))
    shown = {"apiVersion": V3, "kind": "IPPoolList", "metadata": {"resourceVersion": "7"},
             "items": [{**stored, "metadata": {**stored["metadata"], "resourceVersion": "5"}}]}
    docs = load(write(tmp_path, "shown.yaml", yaml.safe_dump(shown)))
    assert v3.to_stored(v3.validate(docs[0].data)) == stored
    assert docs[0].data["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"  # a string, not a datetime


def test_stdin() -> None:
    docs = load("-", io.StringIO(json.dumps(pool("a", "10.1.0.0/16"))))
    assert [(d.source, d.index, d.data) for d in docs] == [("stdin", 1, pool("a", "10.1.0.0/16"))]
    assert describe(docs[0]) == "stdin: document 1"


def test_v3_documents_pass_through_unjudged() -> None:
    odd = {"apiVersion": "projectcalico.org/v2", "kind": "Gadget", "spec": {"x": 1}}
    assert to_v3(odd) is odd  # v3.validate is the judge


# ------------------------------------------------------------------ Calico v1

V1_POOLS = [
    (SEED_POOL, "10-100-0-0-16", {"cidr": "10.100.0.0/16", "ipipMode": "Never", "natOutgoing": True}),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.0.0/16}\nspec: {ipip: {enabled: true}}",
     "10-1-0-0-16", {"cidr": "10.1.0.0/16", "ipipMode": "Always", "natOutgoing": False}),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.0.0/16}\nspec: {ipip: {enabled: true, mode: always}}",
     "10-1-0-0-16", {"cidr": "10.1.0.0/16", "ipipMode": "Always", "natOutgoing": False}),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.0.0/16}\n"
     "spec: {ipip: {enabled: true, mode: cross-subnet}, nat-outgoing: true, disabled: true}",
     "10-1-0-0-16", {"cidr": "10.1.0.0/16", "ipipMode": "CrossSubnet", "natOutgoing": True, "disabled": True}),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.0.0/16}",
     "10-1-0-0-16", {"cidr": "10.1.0.0/16", "ipipMode": "Never", "natOutgoing": False}),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.2.3/16}",  # v1 masked host bits away
     "10-1-0-0-16", {"cidr": "10.1.0.0/16", "ipipMode": "Never", "natOutgoing": False}),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 'fd80:24e2:f998:72d6::/64'}",
     "fd80-24e2-f998-72d6---64", {"cidr": "fd80:24e2:f998:72d6::/64", "ipipMode": "Never", "natOutgoing": False}),
]


@pytest.mark.parametrize("text, name, spec", V1_POOLS)
def test_v1_pools_become_v3_pools(tmp_path: Path, text: str, name: str, spec: dict[str, Any]) -> None:
    [doc] = load(write(tmp_path, "calico-pool.yaml", text))
    assert doc.data == {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name}, "spec": spec}
    stored = v3.to_stored(v3.validate(doc.data))  # and the result is a valid v3 pool
    assert stored["spec"]["ipipMode"] == spec["ipipMode"] and stored["metadata"]["name"] == name


def test_the_seeds_pool_exactly(tmp_path: Path) -> None:
    [doc] = load(write(tmp_path, "calico-pool.yaml", SEED_POOL))
    assert v3.to_stored(v3.validate(doc.data)) == {
        "apiVersion": V3, "kind": "IPPool", "metadata": {"name": "10-100-0-0-16"},
        "spec": {"cidr": "10.100.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
                 "natOutgoing": True, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"],
                 "assignmentMode": "Automatic"}}


V1_OTHERS = [
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, peerIP: 192.0.2.254}\nspec: {asNumber: 65001}",
     {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "192-0-2-254"},
      "spec": {"peerIP": "192.0.2.254", "asNumber": 65001}}),
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: node, node: Rack1_Node, peerIP: '2001:db8::1'}\n"
     "spec: {asNumber: 65002}",
     {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "rack1-node.2001-0db8-0000-0000-0000-0000-0000-0001"},
      "spec": {"peerIP": "2001:db8::1", "asNumber": 65002, "node": "rack1-node"}}),
    ("apiVersion: v1\nkind: node\nmetadata: {name: 151node}\n"
     "spec: {bgp: {ipv4Address: 12.12.223.151/24, asNumber: 64512}, orchRefs: [{orchestrator: k8s, nodeName: n}]}",
     {"apiVersion": V3, "kind": "Node", "metadata": {"name": "151node"},
      "spec": {"bgp": {"asNumber": 64512, "ipv4Address": "12.12.223.151/24"},
               "orchRefs": [{"orchestrator": "k8s", "nodeName": "n"}]}}),
    ("apiVersion: v1\nkind: node\nmetadata: {name: Host.Example.COM}\nspec: {bgp: {ipv6Address: 'fd00::5'}}",
     {"apiVersion": V3, "kind": "Node", "metadata": {"name": "host.example.com"},
      "spec": {"bgp": {"ipv6Address": "fd00::5/128"}}}),
    ("apiVersion: v1\nkind: node\nmetadata: {name: bare}",
     {"apiVersion": V3, "kind": "Node", "metadata": {"name": "bare"}, "spec": {}}),
    ("""\
apiVersion: v1
kind: profile
metadata:
  name: k8s_ns.Foo
  labels: {stage: prod}
  tags: [web]
spec:
  ingress:
  - action: allow
    protocol: tcp
    source: {tag: db, selector: "calico/k8s_ns == 'shop'", net: 10.1.2.3/16, nets: [192.0.2.0/24]}
    destination: {ports: [80, "8000:8080"]}
  - action: next-tier
    notProtocol: icmpv6
    destination: {notTag: blocked, notNet: 10.9.0.0/16}
  - protocol: 6
  egress:
  - action: deny
""", {"apiVersion": V3, "kind": "Profile", "metadata": {"name": "kns.foo-33c978cd"},
      "spec": {"ingress": [
          {"action": "Allow", "protocol": "TCP",
           "source": {"nets": ["192.0.2.0/24", "10.1.0.0/16"],
                      "selector": "(projectcalico.org/namespace == 'shop') && db == ''"},
           "destination": {"ports": [80, "8000:8080"]}},
          {"action": "Pass", "notProtocol": "ICMPv6",
           "destination": {"notNets": ["10.9.0.0/16"], "notSelector": "blocked == ''"}},
          {"protocol": 6, "action": "Allow"}],
          "egress": [{"action": "Deny"}],
          "labelsToApply": {"stage": "prod", "web": ""}}}),
    ("apiVersion: v1\nkind: profile\nmetadata: {name: backend}",
     {"apiVersion": V3, "kind": "Profile", "metadata": {"name": "backend"}, "spec": {}}),
]


@pytest.mark.parametrize("text, expected", V1_OTHERS)
def test_other_v1_kinds_convert_as_calicos_upgrade_did(tmp_path: Path, text: str, expected: dict[str, Any]) -> None:
    [doc] = load(write(tmp_path, "v1.yaml", text))
    assert doc.data == expected
    v3.validate(doc.data)  # convertible into something valid


# ------------------------------------------------------------------ errors, one line each

@pytest.mark.parametrize("text, message", [
    # parsing
    ("apiVersion: v1\nkind: [ipPool\n", "line 3: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("kind: IPPool\n  apiVersion: v3\n", "line 2: invalid YAML: mapping values are not allowed here"),
    ("kind: IPPool\nkind: Node\n", "line 2: invalid YAML: found duplicate key 'kind'"),
    ("kind: IPPool\n\tapiVersion: x\n", "line 2: invalid YAML: found character '\\t' that cannot start any token"),
    # no documents
    ("", "no resources in {path}"),
    ("---\n---\n# nothing\n", "no resources in {path}"),
    ("[]", "no resources in {path}"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: []\n", "no resources in {path}"),
    # documents that are not resources
    (f"{json.dumps(pool('a', '10.1.0.0/16'))}\n---\njust words\n",
     "document 2: a resource must be a mapping, not a string"),
    ("- [1, 2]\n", "document 1: a resource must be a mapping, not a list"),
    ("kind: IPPool\nmetadata: {name: a}\n", "document 1: apiVersion: required field is missing"),
    ("apiVersion: projectcalico.org/v3\nmetadata: {name: a}\n", "document 1: kind: required field is missing"),
    ("apiVersion: projectcalico.org/v3\nkind: 3\n", "document 1: kind: must be a string, not a number"),
    ("apiVersion: 3\nkind: IPPool\n", "document 1: apiVersion: must be a string, not a number"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: {a: 1}\n",
     "document 1: items: must be a list, not a mapping"),
    ("apiVersion: projectcalico.org/v3\nkind: List\nitems: 0\n", "document 1: items: must be a list, not a number"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPoolList\n", "no resources in {path}"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata: {name: a}\n- 7\n",
     "document 2: a resource must be a mapping, not a number"),
    # v1 documents that cannot be converted
    ("apiVersion: v1\nkind: policy\nmetadata: {name: p}\n",
     "document 1: kind: cannot convert Calico v1 'policy' (convertible: bgpPeer, ipPool, node, profile)"),
    ("apiVersion: v1\nkind: IPPool\nmetadata: {name: p}\n", "document 1: kind: cannot convert Calico v1 'IPPool' "
     "(convertible: bgpPeer, ipPool, node, profile); for the v3 kind use apiVersion: projectcalico.org/v3"),
    ("apiVersion: v1\nkind: ipPool\nspec: {}\n", "document 1: metadata: required field is missing"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {}\n", "document 1: metadata.cidr: required field is missing"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/33}\n",
     "document 1: metadata.cidr: invalid CIDR '10.0.0.0/33'"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0}\n",
     "document 1: metadata.cidr: invalid CIDR '10.0.0.0'"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8, name: x}\n",
     "document 1: metadata.name: unknown field"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {natOutgoing: true}\n",
     "document 1: spec.natOutgoing: unknown field"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {ipip: {enabled: yes please}}\n",
     "document 1: spec.ipip.enabled: must be true or false"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {ipip: {enabled: true, mode: Always}}\n",
     "document 1: spec.ipip.mode: must be 'always' or 'cross-subnet', not 'Always'"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {ipip: true}\n",
     "document 1: spec.ipip: must be a mapping, not a boolean"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {nat-outgoing: 1}\n",
     "document 1: spec.nat-outgoing: must be true or false"),
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 192.0.2.1}\n",
     "document 1: metadata.scope: required field is missing"),
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: cluster, peerIP: 192.0.2.1}\n",
     "document 1: metadata.scope: must be 'global' or 'node', not 'cluster'"),
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, node: n1, peerIP: 192.0.2.1}\n",
     "document 1: metadata.node: must be empty when the scope is global"),
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: node, peerIP: 192.0.2.1}\n",
     "document 1: metadata.node: must be a non-empty string"),
    ("apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, peerIP: 192.0.2.0/24}\n",
     "document 1: metadata.peerIP: invalid IP address '192.0.2.0/24'"),
    ("apiVersion: v1\nkind: node\nmetadata: {name: n1}\nspec: {bgp: {asNumber: 64512}}\n",
     "document 1: spec.bgp: needs ipv4Address or ipv6Address"),
    ("apiVersion: v1\nkind: node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 'fd00::1/64'}}\n",
     "document 1: spec.bgp.ipv4Address: invalid IPv4 address 'fd00::1/64'"),
    ("apiVersion: v1\nkind: profile\nmetadata: {name: p, tags: [a], labels: {a: b}}\n",
     "document 1: metadata.tags[0]: tag 'a' clashes with the label of the same name"),
    ("apiVersion: v1\nkind: profile\nmetadata: {name: p}\nspec: {ingress: [{action: allow, source: {ips: []}}]}\n",
     "document 1: spec.ingress[0].source.ips: unknown field"),
    ("apiVersion: v1\nkind: profile\nmetadata: {name: p}\nspec: {egress: {action: allow}}\n",
     "document 1: spec.egress: must be a list"),
])
def test_errors_are_one_line_naming_the_file_and_document(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "in.yaml", text)
    with pytest.raises(DocumentError) as caught:
        load(path)
    expected = message.format(path=path)
    assert str(caught.value) == (expected if expected.startswith("no resources") else f"{path}: {expected}")
    assert "\n" not in str(caught.value)


def test_document_numbers_count_list_items(tmp_path: Path) -> None:
    path = write(tmp_path, "in.yaml", json.dumps(
        [pool("a", "10.1.0.0/16"), {"apiVersion": V3, "kind": "List", "items": [pool("b", "10.2.0.0/16"), "x"]}]))
    with pytest.raises(DocumentError, match=r"in\.yaml: document 3: a resource must be a mapping, not a string$"):
        load(path)


def test_json_syntax_errors_in_a_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, "pool.json", '{\n  "kind": "IPPool",\n  "apiVersion": 1,,\n}\n')
    with pytest.raises(DocumentError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: line 3: invalid JSON: Expecting property name enclosed in double quotes"


def test_stdin_errors_name_stdin() -> None:
    with pytest.raises(DocumentError) as caught:
        load("-", io.StringIO("kind: IPPool\n"))
    assert str(caught.value) == "stdin: document 1: apiVersion: required field is missing"
    with pytest.raises(DocumentError) as caught:
        load("-", io.StringIO(""))
    assert str(caught.value) == "no resources in stdin"


def test_unreadable_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(DocumentError) as caught:
        load(missing)
    assert str(caught.value) == f"{missing}: no such file or directory"
    with pytest.raises(DocumentError) as caught:
        load(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: is a directory"
    binary = write(tmp_path, "pool.bin", b"kind: \xff\xfe\n")
    with pytest.raises(DocumentError) as caught:
        load(binary)
    assert str(caught.value) == f"{binary}: not UTF-8 text"


def test_to_v3_errors_carry_no_source() -> None:
    """Standalone to_v3 names the field; load() adds the file and document."""
    with pytest.raises(DocumentError) as caught:
        to_v3({"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": "x/8"}})
    assert str(caught.value) == "metadata.cidr: invalid CIDR 'x/8'"
