"""`calicoctl convert` (cni_calico.ctl.k8s_convert): Kubernetes NetworkPolicy to Calico v3 as
Calico's K8sNetworkPolicyToCalico converts it, Calico v1 documents through documents.py, the
printed form, and one-line errors for documents Kubernetes would refuse."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_calico.ctl import documents
from cni_calico.ctl.k8s_convert import ConversionError, network_policy, render, to_v3
from cni_calico.ctl.main import run
from cni_calico.lab import binaries
from cni_calico.model import v3

K8S = "networking.k8s.io/v1"
PODS = "projectcalico.org/orchestrator == 'k8s'"  # what every converted pod selector starts with


def knp(spec: dict[str, Any] | None, name: str = "web", namespace: str | None = "shop",
        **metadata: Any) -> dict[str, Any]:
    """A Kubernetes NetworkPolicy document; `spec=None` leaves spec out."""
    meta: dict[str, Any] = {"name": name, **metadata}
    if namespace is not None:
        meta["namespace"] = namespace
    doc: dict[str, Any] = {"apiVersion": K8S, "kind": "NetworkPolicy", "metadata": meta}
    if spec is not None:
        doc["spec"] = spec
    return doc


def calico(spec: dict[str, Any], name: str = "knp.default.web", namespace: str = "shop") -> dict[str, Any]:
    return {"apiVersion": v3.API_VERSION, "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"order": 1000, **spec}}


def converted_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The converted spec, less the order every policy gets; to_v3 also validates it."""
    out = to_v3(knp(spec))["spec"]
    assert out.pop("order") == 1000
    return out


def allow(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


def ctl(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    """calicoctl in-process (the same `run` the executable calls); convert needs no etcd."""
    out, err = io.StringIO(), io.StringIO()
    old_in, old_err = sys.stdin, sys.stderr
    sys.stdin, sys.stderr = io.StringIO(stdin or ""), err
    try:
        code = run(list(argv), {}, out)
    finally:
        sys.stdin, sys.stderr = old_in, old_err
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, docs: Any) -> str:
    path = tmp_path / name
    path.write_text(docs if isinstance(docs, str) else yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


# ------------------------------------------------------------------ the common shapes

def test_deny_all_ingress() -> None:
    doc = knp({"podSelector": {}, "policyTypes": ["Ingress"]}, name="default-deny-ingress")
    assert to_v3(doc) == calico({"selector": PODS, "types": ["Ingress"]}, name="knp.default.default-deny-ingress")


def test_deny_all_egress_too() -> None:
    spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}
    assert converted_spec(spec) == {"selector": PODS, "types": ["Ingress", "Egress"]}


def test_allow_all_ingress_is_one_rule_matching_everything() -> None:
    assert converted_spec({"podSelector": {}, "ingress": [{}]}) == {
        "selector": PODS, "types": ["Ingress"], "ingress": [allow()]}


def test_allow_from_pods_with_a_label() -> None:
    spec = {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}]}
    assert converted_spec(spec) == {
        "selector": f"{PODS} && app == 'db'", "types": ["Ingress"],
        "ingress": [allow(source={"selector": f"{PODS} && role == 'frontend'"})]}


def test_allow_from_a_namespace() -> None:
    spec = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}]}
    assert converted_spec(spec)["ingress"] == [allow(source={"selector": PODS, "namespaceSelector": "team == 'ops'"})]


def test_an_empty_namespace_selector_is_every_namespace() -> None:
    spec = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}},
                                                      {"namespaceSelector": {"matchLabels": {}}}]}]}
    assert converted_spec(spec)["ingress"] == [allow(source={"selector": PODS, "namespaceSelector": "all()"})] * 2


def test_pod_and_namespace_selector_together_must_both_match() -> None:
    spec = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}},
                                                      "namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}
    assert converted_spec(spec)["ingress"] == [
        allow(source={"selector": f"{PODS} && role == 'client'", "namespaceSelector": "env == 'prod'"})]


def test_ip_block_with_except() -> None:
    spec = {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24", "172.17.2.9/24"]}},
        {"ipBlock": {"cidr": "fd00:10::1/48"}}]}]}
    # host bits are masked off, as Calico's ParseCIDR does
    assert converted_spec(spec)["ingress"] == [
        allow(source={"nets": ["172.17.0.0/16"], "notNets": ["172.17.1.0/24", "172.17.2.0/24"]}),
        allow(source={"nets": ["fd00:10::/48"]})]


def test_ports_protocols_named_ports_and_ranges() -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [
        {"port": 80},  # TCP, Kubernetes' default
        {"protocol": "UDP", "port": 53},
        {"protocol": "TCP", "port": "https"},
        {"protocol": "SCTP", "port": 9000, "endPort": 9010},
        {"protocol": "UDP", "port": 5000, "endPort": 5000},  # a one-port range is the port
    ]}]}
    # one rule per protocol, in Calico's (sorted) order, each with all its ports
    assert converted_spec(spec)["ingress"] == [
        allow(protocol="SCTP", destination={"ports": ["9000:9010"]}),
        allow(protocol="TCP", destination={"ports": [80, "https"]}),
        allow(protocol="UDP", destination={"ports": [53, 5000]}),
    ]


def test_several_numeric_ports_become_the_fewest_ranges_after_the_names() -> None:
    """Calico's SimplifyPorts."""
    spec = {"podSelector": {}, "ingress": [{"ports": [
        {"port": 8081}, {"port": "metrics"}, {"port": 8080}, {"port": 8082, "endPort": 8090},
        {"port": 22}, {"port": 8085}, {"port": "http"}]}]}
    assert converted_spec(spec)["ingress"] == [
        allow(protocol="TCP", destination={"ports": ["metrics", "http", 22, "8080:8090"]})]


@pytest.mark.parametrize("ports", [[{"port": 80}, {"protocol": "TCP"}], [{}, {"port": 80}]])
def test_a_port_entry_without_a_port_is_every_port_of_its_protocol(ports: list[dict[str, Any]]) -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [*ports, {"protocol": "UDP", "port": 53}]}]}
    assert converted_spec(spec)["ingress"] == [allow(protocol="TCP"),
                                               allow(protocol="UDP", destination={"ports": [53]})]


def test_one_rule_per_protocol_and_per_peer() -> None:
    spec = {"podSelector": {}, "ingress": [{
        "from": [{"podSelector": {"matchLabels": {"a": "1"}}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"port": 53}]}]}
    a_pods = {"selector": f"{PODS} && a == '1'"}
    net = {"nets": ["10.0.0.0/8"]}
    dns = {"ports": [53]}
    assert converted_spec(spec)["ingress"] == [
        allow(protocol="TCP", source=a_pods, destination=dns), allow(protocol="TCP", source=net, destination=dns),
        allow(protocol="UDP", source=a_pods, destination=dns), allow(protocol="UDP", source=net, destination=dns)]


def test_egress_rules_put_the_peer_in_the_destination() -> None:
    spec = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.96.0.10/32"}}], "ports": [{"protocol": "UDP", "port": 53}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}]},
        {}]}
    assert converted_spec(spec) == {"selector": f"{PODS} && app == 'web'", "types": ["Egress"], "egress": [
        allow(protocol="UDP", destination={"nets": ["10.96.0.10/32"], "ports": [53]}),
        allow(destination={"selector": PODS, "namespaceSelector": "kubernetes.io/metadata.name == 'db'"}),
        allow()]}


@pytest.mark.parametrize("spec, types", [
    ({}, ["Ingress"]),
    ({"ingress": [{}]}, ["Ingress"]),
    ({"egress": [{}]}, ["Ingress", "Egress"]),  # as the API server defaults it: Ingress always
    ({"egress": []}, ["Ingress"]),
    ({"policyTypes": [], "egress": [{}]}, ["Ingress", "Egress"]),
    ({"policyTypes": ["Egress"]}, ["Egress"]),
    ({"policyTypes": ["Egress", "Ingress"]}, ["Ingress", "Egress"]),  # Calico's order
    ({"policyTypes": ["Ingress", "Ingress"]}, ["Ingress"]),
    ({"policyTypes": ["Ingress"], "egress": [{}]}, ["Ingress"]),  # given types are kept, as in Calico
])
def test_types_when_policy_types_are_absent_or_given(spec: dict[str, Any], types: list[str]) -> None:
    assert converted_spec({"podSelector": {}, **spec})["types"] == types


def test_match_expressions_of_each_operator_after_the_sorted_labels() -> None:
    selector = {"matchLabels": {"tier": "web", "app": "shop", "app.kubernetes.io/part-of": "store"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                    {"key": "zone", "operator": "NotIn", "values": ["a"]},
                    {"key": "canary", "operator": "Exists"},
                    {"key": "debug", "operator": "DoesNotExist", "values": []}]}
    expected = ("app == 'shop' && app.kubernetes.io/part-of == 'store' && tier == 'web'"
                " && env in { 'prod', 'staging' } && zone not in { 'a' } && has(canary) && ! has(debug)")
    spec = {"podSelector": selector, "ingress": [{"from": [{"namespaceSelector": selector}]}]}
    assert converted_spec(spec) == {"selector": f"{PODS} && {expected}", "types": ["Ingress"],
                                    "ingress": [allow(source={"selector": PODS, "namespaceSelector": expected})]}


def test_only_name_and_namespace_carry_over() -> None:
    doc = knp({"podSelector": {}}, labels={"app": "x"}, annotations={"note": "y"}, uid="1d2c", generation=3,
              resourceVersion="42", creationTimestamp="2024-05-01T10:00:00Z",
              managedFields=[{"manager": "kubectl"}])
    doc["status"] = {}
    assert to_v3(doc)["metadata"] == {"name": "knp.default.web", "namespace": "shop"}
    # no namespace: the converted policy has none either, so `apply -n` decides (default: default)
    assert to_v3(knp({"podSelector": {}}, namespace=None))["metadata"] == {"name": "knp.default.web"}


def test_the_input_is_not_modified() -> None:
    doc = knp({"podSelector": {}, "egress": [{"ports": [{"port": 80}]}]})
    before = json.dumps(doc)
    network_policy(doc)
    assert json.dumps(doc) == before


# ------------------------------------------------------------------ bad documents

def bad_spec(**spec: Any) -> dict[str, Any]:
    return knp({"podSelector": {}, **spec})


def ingress_from(*peers: Any) -> dict[str, Any]:
    return bad_spec(ingress=[{"from": list(peers)}])


def ingress_ports(*ports: Any) -> dict[str, Any]:
    return bad_spec(ingress=[{"ports": list(ports)}])


BAD = [
    ("no-name", {**knp({"podSelector": {}}), "metadata": {"namespace": "shop"}}, "metadata.name",
     "required field is missing"),
    ("bad-name", knp({"podSelector": {}}, name="Web_1"), "metadata.name", "invalid name 'Web_1'"),
    ("bad-namespace", knp({"podSelector": {}}, namespace="Shop"), "metadata.namespace", "invalid namespace"),
    ("name-too-long", knp({"podSelector": {}}, name="a" * 250), "metadata.name", "too long"),
    ("metadata-unknown", knp({"podSelector": {}}, nmae="x"), "metadata.nmae", "unknown field"),
    ("no-spec", knp(None), "spec", "required field is missing"),
    ("no-pod-selector", knp({"ingress": [{}]}), "spec.podSelector", "required field is missing"),
    ("misspelt-pod-selector", knp({"podselector": {}}), "spec.podselector", "unknown field"),
    ("spec-unknown", bad_spec(egres=[{}]), "spec.egres", "unknown field"),
    ("policy-type", bad_spec(policyTypes=["ingress"]), "spec.policyTypes[0]", "'Ingress' or 'Egress'"),
    ("policy-types-three", bad_spec(policyTypes=["Ingress", "Egress", "Ingress"]), "spec.policyTypes",
     "more than two"),
    ("rule-unknown", bad_spec(ingress=[{"to": []}]), "spec.ingress[0].to", "unknown field"),
    ("rules-not-a-list", bad_spec(egress={"to": []}), "spec.egress", "must be a list"),
    ("label-value", knp({"podSelector": {"matchLabels": {"app": "it's"}}}), "spec.podSelector.matchLabels.app",
     "invalid label value"),
    ("label-value-number", knp({"podSelector": {"matchLabels": {"app": 1}}}), "spec.podSelector.matchLabels.app",
     "must be a string"),
    ("label-key", knp({"podSelector": {"matchLabels": {"a b": "x"}}}), "spec.podSelector.matchLabels.a b",
     "invalid key"),
    ("operator", knp({"podSelector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}}),
     "spec.podSelector.matchExpressions[0].operator", "'In', 'NotIn', 'Exists' or 'DoesNotExist'"),
    ("in-without-values", knp({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
     "spec.podSelector.matchExpressions[0].values", "must not be empty"),
    ("exists-with-values", ingress_from({"namespaceSelector": {"matchExpressions": [
        {"key": "a", "operator": "Exists", "values": ["x"]}]}}),
     "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values", "must be empty"),
    ("expression-key", knp({"podSelector": {"matchExpressions": [{"key": "-a", "operator": "Exists"}]}}),
     "spec.podSelector.matchExpressions[0].key", "invalid key '-a'"),
    ("expression-value", knp({"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "NotIn", "values": ["ok", "x' || all() || 'y"]}]}}),
     "spec.podSelector.matchExpressions[0].values[1]", "invalid label value"),
    ("empty-peer", ingress_from({}), "spec.ingress[0].from[0]", "must specify a peer"),
    ("ip-block-and-selector", ingress_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
     "spec.ingress[0].from[0]", "may not specify both ipBlock and another peer"),
    ("peer-unknown", ingress_from({"ipblock": {"cidr": "10.0.0.0/8"}}), "spec.ingress[0].from[0].ipblock",
     "unknown field"),
    ("no-cidr", ingress_from({"ipBlock": {"except": ["10.0.0.0/8"]}}), "spec.ingress[0].from[0].ipBlock.cidr",
     "required field is missing"),
    ("bad-cidr", ingress_from({"ipBlock": {"cidr": "10.0.0.0/33"}}), "spec.ingress[0].from[0].ipBlock.cidr",
     "invalid CIDR '10.0.0.0/33'"),
    ("cidr-without-prefix", bad_spec(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.1"}}]}]),
     "spec.egress[0].to[0].ipBlock.cidr", "invalid CIDR '10.0.0.1'"),
    ("cidr-netmask", ingress_from({"ipBlock": {"cidr": "10.0.0.0/255.0.0.0"}}),
     "spec.ingress[0].from[0].ipBlock.cidr", "invalid CIDR"),
    ("bad-except", ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "bogus"]}}),
     "spec.ingress[0].from[0].ipBlock.except[1]", "invalid CIDR 'bogus'"),
    ("except-outside", ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}),
     "spec.ingress[0].from[0].ipBlock.except[0]", "not a strict subset"),
    ("except-equal", ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}),
     "spec.ingress[0].from[0].ipBlock.except[0]", "not a strict subset"),
    ("except-other-family", ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}),
     "spec.ingress[0].from[0].ipBlock.except[0]", "not a strict subset"),
    ("protocol", ingress_ports({"protocol": "ICMP"}), "spec.ingress[0].ports[0].protocol", "'TCP', 'UDP' or 'SCTP'"),
    ("protocol-lowercase", ingress_ports({"protocol": "tcp", "port": 80}), "spec.ingress[0].ports[0].protocol",
     "not 'tcp'"),
    ("port-0", ingress_ports({"port": 0}), "spec.ingress[0].ports[0].port", "1-65535"),
    ("port-too-high", ingress_ports({"port": 80}, {"port": 65536}), "spec.ingress[0].ports[1].port", "1-65535"),
    ("port-quoted-number", ingress_ports({"port": "80"}), "spec.ingress[0].ports[0].port", "without quotes"),
    ("port-name", ingress_ports({"port": "Web_Port"}), "spec.ingress[0].ports[0].port", "invalid port name"),
    ("port-name-long", ingress_ports({"port": "a-very-long-port-name"}), "spec.ingress[0].ports[0].port",
     "at most 15"),
    ("port-float", ingress_ports({"port": 80.5}), "spec.ingress[0].ports[0].port", "port number or a port name"),
    ("port-bool", ingress_ports({"port": True}), "spec.ingress[0].ports[0].port", "port number or a port name"),
    ("end-port-below", ingress_ports({"port": 90, "endPort": 80}), "spec.ingress[0].ports[0].endPort",
     "at least the port (90)"),
    ("end-port-too-high", ingress_ports({"port": 90, "endPort": 70000}), "spec.ingress[0].ports[0].endPort",
     "1-65535"),
    ("end-port-named", ingress_ports({"port": "http", "endPort": 90}), "spec.ingress[0].ports[0].endPort",
     "named port"),
    ("end-port-alone", ingress_ports({"endPort": 90}), "spec.ingress[0].ports[0].endPort", "without a port"),
    ("end-port-string", ingress_ports({"port": 80, "endPort": "90"}), "spec.ingress[0].ports[0].endPort",
     "must be an integer"),
    ("unknown-kind", {"apiVersion": K8S, "kind": "Ingress", "metadata": {"name": "x"}}, "kind",
     "only NetworkPolicy"),
    ("unknown-api-version", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
     "apiVersion", "cannot convert 'apps/v1'"),
    ("old-api-version", {**knp({"podSelector": {}}), "apiVersion": "extensions/v1beta1"}, "apiVersion",
     "use networking.k8s.io/v1"),
    ("top-unknown", {**knp({"podSelector": {}}), "specs": {}}, "specs", "unknown field"),
]


@pytest.mark.parametrize("doc, field, words", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_documents_name_the_field(doc: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConversionError) as caught:
        to_v3(doc)
    assert caught.value.field == field
    assert words in caught.value.message
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_bad_case_ids_are_unique() -> None:
    assert len({case[0] for case in BAD}) == len(BAD)


# ------------------------------------------------------------------ Calico v1 and v3 documents

def test_v1_documents_are_converted_by_the_reader_and_v3_ones_pass_through(tmp_path: Path) -> None:
    v1_pool = {"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": "10.100.0.0/16"},
               "spec": {"nat-outgoing": True}}
    v3_peer = {"apiVersion": v3.API_VERSION, "kind": "BGPPeer", "metadata": {"name": "tor"},
               "spec": {"peerIP": "192.0.2.254", "asNumber": 65001}}
    docs = documents.load(write(tmp_path, "mixed.yaml", [v1_pool, v3_peer]))
    assert [to_v3(doc.data) for doc in docs] == [
        {"apiVersion": v3.API_VERSION, "kind": "IPPool", "metadata": {"name": "10-100-0-0-16"},
         "spec": {"cidr": "10.100.0.0/16", "ipipMode": "Never", "natOutgoing": True}},
        v3_peer]


def test_a_v3_document_that_fails_validation_is_refused() -> None:
    with pytest.raises(ConversionError) as caught:
        to_v3({"apiVersion": v3.API_VERSION, "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "x"}})
    assert (caught.value.field, caught.value.message) == ("spec.cidr", "invalid CIDR 'x' (v3 IPPool 'p')")


# ------------------------------------------------------------------ printing

def test_one_resource_prints_alone_several_as_a_list() -> None:
    one, two = to_v3(knp({"podSelector": {}})), to_v3(knp({"podSelector": {}}, name="db"))
    assert yaml.safe_load(render([one], "yaml")) == one
    assert json.loads(render([one], "json")) == one
    expected = {"apiVersion": "v1", "kind": "List", "items": [one, two], "metadata": {}}
    assert yaml.safe_load(render([one, two], "yml")) == expected
    assert json.loads(render([one, two], "json")) == expected
    assert render([one], "yaml").startswith("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n")
    assert render([one], "json").endswith("}\n")


# ------------------------------------------------------------------ the command

POLICIES = [
    knp({"podSelector": {}, "policyTypes": ["Ingress"]}, name="default-deny"),
    knp({"podSelector": {"matchLabels": {"app": "web"}},
         "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "lb"}}},
                               {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}],
                      "ports": [{"port": 8080, "endPort": 8100}, {"port": "http"},
                                {"protocol": "UDP", "port": 9000}]}],
         "egress": [{"to": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                    "values": ["db"]}]}}],
                     "ports": [{"port": 5432}]}]}, name="web"),
]


def test_convert_prints_what_apply_accepts_unchanged(tmp_path: Path) -> None:
    """The output round-trips: read back as `apply -f` reads it, it validates to itself."""
    path = write(tmp_path, "k8s-policy.yaml", POLICIES)
    for fmt in ("yaml", "json"):
        code, out, err = ctl("convert", "-f", path, "-o", fmt)
        assert (code, err) == (0, "")
        printed = json.loads(out) if fmt == "json" else yaml.safe_load(out)
        assert printed["kind"] == "List" and printed["apiVersion"] == "v1"
        items = printed["items"]
        assert [item["metadata"]["name"] for item in items] == ["knp.default.default-deny", "knp.default.web"]
        read_back = documents.load(write(tmp_path, f"out.{fmt}", out))
        assert [doc.data for doc in read_back] == items
        for item in items:
            stored = v3.to_stored(v3.validate(item))
            assert stored == item  # nothing for validation to default or normalise
    assert items[1]["spec"]["ingress"][0] == allow(
        protocol="TCP", source={"selector": f"{PODS} && role == 'lb'", "namespaceSelector": "all()"},
        destination={"ports": ["http", "8080:8100"]})


def test_convert_reads_stdin_and_a_kubernetes_list() -> None:
    listed = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": POLICIES}
    code, out, err = ctl("convert", "-f", "-", stdin=json.dumps(listed))
    assert (code, err) == (0, "")
    assert [item["metadata"]["name"] for item in yaml.safe_load(out)["items"]] == [
        "knp.default.default-deny", "knp.default.web"]
    single = yaml.safe_dump(POLICIES[0])
    code, out, err = ctl("convert", "-f", "-", stdin=single)
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == calico({"selector": PODS, "types": ["Ingress"]}, name="knp.default.default-deny")


@pytest.mark.parametrize("text, words", [
    (None, "no such file or directory"),
    ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a\n", "line 4: invalid YAML"),
    ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec: {podSelector: {}}\n",
     "document 1: metadata: required field is missing"),
    (yaml.safe_dump_all([POLICIES[0], {**POLICIES[1], "kind": "Ingress"}]), "document 2: kind: cannot convert"),
    (yaml.safe_dump(ingress_from({"ipBlock": {"cidr": "300.0.0.0/8"}})),
     "document 1: spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR '300.0.0.0/8'"),
    (yaml.safe_dump(ingress_ports({"port": 99999})), "document 1: spec.ingress[0].ports[0].port: invalid port 99999"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/33}\n", "document 1: metadata.cidr: invalid CIDR"),
    ("# nothing\n", "no resources in"),
])
def test_bad_input_is_one_line_exit_1_and_nothing_printed(tmp_path: Path, text: str | None, words: str) -> None:
    path = str(tmp_path / "missing.yaml") if text is None else write(tmp_path, "k8s-policy.yaml", text)
    code, out, err = ctl("convert", "-f", path)
    assert (code, out) == (1, "")
    assert path in err and err.endswith("\n") and err.count("\n") == 1 and not err.startswith("calicoctl")
    assert words in err


def test_convert_flags() -> None:
    code, out, err = ctl("convert", "-f", "-", "-o", "wide")
    assert (code, out, err) == (1, "", "Invalid option: 'calicoctl convert -f - -o wide'. Use flag '--help' to "
                                       "read about a specific subcommand.\n")  # Calico's words
    code, out, err = ctl("convert")
    assert (code, out) == (1, "") and err.startswith("Invalid option: 'calicoctl convert'.")


def test_the_calicoctl_executable_converts_and_fails_cleanly(tmp_path: Path) -> None:
    """The real entry point (frozen or source), with no etcd configured anywhere."""
    env = {"PATH": "/usr/bin:/bin"}
    good = subprocess.run([*binaries.command("calicoctl"), "convert", "-f", "-", "-o", "json"],
                          input=yaml.safe_dump(POLICIES[1]), capture_output=True, text=True, env=env, timeout=60)
    assert (good.returncode, good.stderr) == (0, "")
    v3.validate(json.loads(good.stdout))
    bad = subprocess.run([*binaries.command("calicoctl"), "convert", "-f", "-"],
                         input=yaml.safe_dump(ingress_ports({"port": 80, "endPort": 79})),
                         capture_output=True, text=True, env=env, timeout=60)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == ("stdin: document 1: spec.ingress[0].ports[0].endPort: "
                          "must be at least the port (80), not 79\n")
