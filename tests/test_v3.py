"""Strict Calico v3 models (cni_calico.model.v3): good documents round-trip, bad ones name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cni_calico.model import v3
from cni_calico.model.v3 import (
    API_VERSION,
    ValidationFailure,
    default_types,
    to_stored,
    validate,
)


def res(kind: str, spec: Any = None, name: str = "x", **metadata: Any) -> dict[str, Any]:
    """A document; `spec=None` leaves spec out."""
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **metadata}}
    if spec is not None:
        doc["spec"] = spec
    return doc


def rule(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


def policy(*ingress: dict[str, Any], kind: str = "NetworkPolicy", **spec: Any) -> dict[str, Any]:
    meta = {"namespace": "default"} if kind == "NetworkPolicy" else {}
    return res(kind, {"ingress": list(ingress), **spec}, "p", **meta)


WEP_SPEC = {"orchestrator": "cni", "workload": "abc123", "node": "node1", "containerID": "abc123",
            "pod": "", "endpoint": "eth0", "interfaceName": "calic440f455693", "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": ["10.100.1.2/32"], "profiles": ["calico-net"]}


def wep(**spec: Any) -> dict[str, Any]:
    return res("WorkloadEndpoint", {**WEP_SPEC, **spec}, "node1-cni-abc123-eth0", namespace="default")


# ------------------------------------------------------------------ good documents

# Complete documents (every default already present): validate + to_stored gives them back.
GOOD = [
    res("IPPool", {"cidr": "10.1.0.0/16", "blockSize": 24, "ipipMode": "CrossSubnet", "vxlanMode": "Never",
                   "natOutgoing": True, "disabled": False, "disableBGPExport": False,
                   "nodeSelector": "zone == 'a'", "allowedUses": ["Workload", "Tunnel"],
                   "assignmentMode": "Automatic"}, "pool-a", labels={"tier": "gold"}),
    res("IPPool", {"cidr": "fd00:10::/48", "blockSize": 122, "ipipMode": "Never", "vxlanMode": "Always",
                   "nodeSelector": "all()", "namespaceSelector": "team == 'x'", "allowedUses": ["Workload"],
                   "assignmentMode": "Manual"}, "pool-v6"),
    res("IPPool", {"cidr": "10.9.0.0/28", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
                   "disabled": True, "nodeSelector": "all()", "allowedUses": ["LoadBalancer"],
                   "assignmentMode": "Automatic"}, "small-disabled"),  # size only checked enabled
    res("Node", {"bgp": {"ipv4Address": "192.0.2.11/24", "ipv6Address": "2001:db8::11/64", "asNumber": 64513,
                         "ipv4IPIPTunnelAddr": "10.100.0.1", "routeReflectorClusterID": "224.0.0.1"},
                 "ipv4VXLANTunnelAddr": "10.100.0.2", "vxlanTunnelMACAddr": "66:22:33:44:55:66",
                 "orchRefs": [{"nodeName": "node1", "orchestrator": "k8s"}],
                 "addresses": [{"address": "192.0.2.11", "type": "InternalIP"}]},
        "node1", labels={"kubernetes.io/hostname": "node1"}, annotations={"note": "anything at all"},
        uid="5c8e-11", creationTimestamp="2024-05-01T10:00:00Z"),
    res("Node", {}, "bare-node"),
    res("BGPConfiguration", {"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": False, "asNumber": 64512,
                             "listenPort": 179, "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
                             "serviceExternalIPs": [{"cidr": "198.51.100.0/24"}]}, "default"),
    res("BGPConfiguration", {"logSeverityScreen": "Debug"}, "node.node1"),
    res("BGPPeer", {"peerIP": "192.0.2.254", "asNumber": 65001}, "tor"),
    res("BGPPeer", {"node": "node1", "peerIP": "[2001:db8::1]:1179", "asNumber": 4200000000}, "node1.tor6"),
    res("BGPPeer", {"nodeSelector": "rack == 'a'", "peerSelector": "route-reflector == 'true'"}, "to-rr"),
    res("Profile", {"ingress": [rule(source={"selector": "role == 'db'"})], "egress": [rule()],
                    "labelsToApply": {"profile": "web", "tagged": ""}}, "kns.default"),
    policy(rule(ipVersion=4, protocol="TCP", notProtocol=17,
                source={"nets": ["10.0.0.0/8", "192.0.2.7"], "notNets": ["10.1.0.0/16"], "selector": "role == 'web'",
                        "notSelector": "has(quarantine)", "namespaceSelector": "team == 'shop'",
                        "ports": [1024, "2000:3000", "http"], "notPorts": [1025],
                        "serviceAccounts": {"names": ["api"], "selector": "app == 'x'"}},
                destination={"ports": [80, 443]}, metadata={"annotations": {"why": "web"}}),
           rule(action="Deny", protocol="ICMP", ipVersion=4, icmp={"type": 8, "code": 0}, notICMP={"type": 3}),
           rule(action="Log", protocol="ICMPv6", icmp={"type": 128}), selector="all()", types=["Ingress"]),
    policy(rule(action="Pass", protocol="SCTP", destination={"ports": [9000]}),
           egress=[rule(protocol="UDP", destination={"ports": [53], "nets": ["10.96.0.10/32"]})],
           order=100.5, selector="app == 'web'", types=["Ingress", "Egress"], serviceAccountSelector="all()"),
    policy(rule(), kind="GlobalNetworkPolicy", order=10, selector="has(host)", types=["Ingress"],
           preDNAT=True, applyOnForward=True, doNotTrack=False, namespaceSelector="all()"),
    policy(rule(source={"namespaceSelector": "global()"}), kind="GlobalNetworkPolicy", selector="all()",
           types=["Ingress"], doNotTrack=True, applyOnForward=True),
    wep(ipNATs=[{"internalIP": "10.100.1.2", "externalIP": "198.51.100.9"}],
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "hostPort": 8080, "hostIP": "0.0.0.0"},
               {"protocol": "UDP", "port": 53, "hostPort": 5353}],
        ipv4Gateway="169.254.1.1", serviceAccountName="default"),
    res("WorkloadEndpoint", {**WEP_SPEC, "orchestrator": "k8s", "pod": "nginx", "workload": "",
                             "ipNetworks": ["10.100.1.3/32", "fd00:10::3/128"], "profiles": ["kns.default"]},
        "node1-k8s-my--pod-eth0", namespace="shop",
        labels={"projectcalico.org/namespace": "shop", "projectcalico.org/orchestrator": "k8s"}),
    res("IPAMConfiguration", {"strictAffinity": True, "maxBlocksPerHost": 4, "autoAllocateBlocks": False}, "default"),
    res("ClusterInformation", {"clusterGUID": "0e1f", "clusterType": "bgp,cni", "calicoVersion": "v0.1.0",
                               "datastoreReady": True}, "default"),
]


@pytest.mark.parametrize("doc", GOOD, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_good_documents_round_trip_unchanged(doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    stored = to_stored(validate(doc))
    assert stored == original
    assert doc == original  # the input is not modified
    assert to_stored(validate(stored)) == stored  # and the stored form validates again


def test_kinds_are_calicos_spellings() -> None:
    assert sorted(v3.KINDS) == ["BGPConfiguration", "BGPPeer", "ClusterInformation", "GlobalNetworkPolicy",
                                "IPAMConfiguration", "IPPool", "NetworkPolicy", "Node", "Profile",
                                "WorkloadEndpoint"]
    assert all(isinstance(validate(doc), v3.KINDS[doc["kind"]]) for doc in GOOD)


# (document, what to_stored adds to it)
POOL_DEFAULTS = {"ipipMode": "Never", "vxlanMode": "Never", "nodeSelector": "all()",
                 "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic"}  # clientv3's

DEFAULTED = [
    (res("IPPool", {"cidr": "10.2.0.0/16"}), {"blockSize": 26, **POOL_DEFAULTS}),
    (res("IPPool", {"cidr": "fd00:20::/64", "nodeSelector": "", "allowedUses": []}),
     {"blockSize": 122, **POOL_DEFAULTS}),
    (res("IPPool", {"cidr": "FD00:0020:0::/64", "blockSize": 120}), {"cidr": "fd00:20::/64", **POOL_DEFAULTS}),
    (res("IPPool", {"cidr": "10.3.0.0/16", "allowedUses": ["Tunnel"], "assignmentMode": "Manual"}),
     {"blockSize": 26, **POOL_DEFAULTS, "allowedUses": ["Tunnel"], "assignmentMode": "Manual"}),
    (policy(), {"types": ["Ingress"], "selector": "all()"}),
    (policy(rule(), egress=[rule()]), {"types": ["Ingress", "Egress"], "selector": "all()"}),
    (policy(egress=[rule()]), {"types": ["Egress"], "selector": "all()"}),
    (policy(types=[]), {"types": ["Ingress"], "selector": "all()"}),
    (policy(kind="GlobalNetworkPolicy", egress=[rule()], types=["Ingress"]), {"selector": "all()"}),
    (res("IPAMConfiguration", {}, "default"),
     {"strictAffinity": False, "maxBlocksPerHost": 0, "autoAllocateBlocks": True}),
    (res("IPAMConfiguration", {"strictAffinity": True}, "default"),
     {"maxBlocksPerHost": 0, "autoAllocateBlocks": True}),
    (res("BGPPeer", {"peerIP": "192.0.2.1", "asNumber": "1.10"}), {"asNumber": 65546}),
    (res("BGPPeer", {"peerIP": "192.0.2.1", "asNumber": "64512"}), {"asNumber": 64512}),
    (policy(rule(protocol="TCP", destination={"ports": ["80", "81:81", "82:83"]})),
     {"ingress": [rule(protocol="TCP", destination={"ports": [80, 81, "82:83"]})],
      "types": ["Ingress"], "selector": "all()"}),
]


@pytest.mark.parametrize("doc, added", DEFAULTED)
def test_defaults_are_applied_as_calico_does(doc: dict[str, Any], added: dict[str, Any]) -> None:
    expected = copy.deepcopy(doc)
    expected["spec"].update(added)
    assert to_stored(validate(doc)) == expected


@pytest.mark.parametrize("kind", ["Node", "BGPConfiguration", "Profile", "GlobalNetworkPolicy", "ClusterInformation"])
def test_an_all_optional_spec_may_be_left_out(kind: str) -> None:
    stored = to_stored(validate(res(kind, None, "default")))
    assert isinstance(stored["spec"], dict)
    assert to_stored(validate({**res(kind, None, "default"), "spec": None})) == stored


@pytest.mark.parametrize("spec, expected", [
    ({}, ["Ingress"]),
    ({"ingress": [rule()]}, ["Ingress"]),
    ({"egress": [rule()]}, ["Egress"]),
    ({"ingress": [rule()], "egress": [rule()]}, ["Ingress", "Egress"]),
    ({"ingress": [], "egress": []}, ["Ingress"]),
    ({"types": ["Egress"], "ingress": [rule()]}, ["Egress"]),
    ({"types": [], "egress": [rule()]}, ["Egress"]),
])
def test_default_types(spec: dict[str, Any], expected: list[str]) -> None:
    assert default_types(spec) == expected
    model = validate(res("GlobalNetworkPolicy", spec))
    assert isinstance(model, v3.GlobalNetworkPolicy)
    assert default_types(model.spec) == expected
    assert to_stored(model)["spec"]["types"] == expected


def test_server_set_metadata_is_accepted_and_resource_version_is_not_stored() -> None:
    doc = res("IPPool", {"cidr": "10.3.0.0/16"}, "p", resourceVersion="1234", uid="u-1",
              creationTimestamp="2024-05-01T10:00:00Z")
    metadata = to_stored(validate(doc))["metadata"]
    assert metadata == {"name": "p", "uid": "u-1", "creationTimestamp": "2024-05-01T10:00:00Z"}


def test_namespace_is_not_defaulted_here() -> None:
    stored = to_stored(validate(res("NetworkPolicy", {}, "p")))
    assert "namespace" not in stored["metadata"]


# Calico's networkPolicyNameRegex / globalNetworkPolicyNameRegex: at most one dot, except the
# `knp.default.` / `ossg.default.` names Calico gives converted (Kubernetes, OpenStack) policies,
# which only a NetworkPolicy may carry.
@pytest.mark.parametrize("kind, name, accepted", [
    ("NetworkPolicy", "allow-web", True),
    ("NetworkPolicy", "default.allow-web", True),
    ("NetworkPolicy", "knp.default", True),  # just a one-dot name
    ("NetworkPolicy", "knp.default.allow-web", True),
    ("NetworkPolicy", "knp.default.allow.web.v2", True),  # the Kubernetes name is a subdomain
    ("NetworkPolicy", "ossg.default.sg-1", True),
    ("NetworkPolicy", "a.b.c", False),
    ("NetworkPolicy", "knp.other.allow-web", False),  # only the default tier
    ("NetworkPolicy", "knp.default.", False),
    ("NetworkPolicy", "knp.default.Allow-Web", False),
    ("NetworkPolicy", "knp.default.-web", False),
    ("NetworkPolicy", "kanp.default.allow-web", False),
    ("GlobalNetworkPolicy", "default.allow-web", True),
    ("GlobalNetworkPolicy", "knp.default.allow-web", False),  # Kubernetes policies are namespaced
])
def test_policy_names_as_calico_accepts_them(kind: str, name: str, accepted: bool) -> None:
    meta = {"namespace": "shop"} if kind == "NetworkPolicy" else {}
    doc = res(kind, {"ingress": [rule()]}, name, **meta)
    if accepted:
        assert to_stored(validate(doc))["metadata"]["name"] == name
    else:
        with pytest.raises(ValidationFailure) as caught:
            validate(doc)
        assert caught.value.field == "metadata.name"


def test_failure_shape() -> None:
    with pytest.raises(ValidationFailure) as caught:
        validate(res("IPPool", {"cidr": "x"}))
    failure = caught.value
    assert (failure.field, failure.message, str(failure)) == ("spec.cidr", "invalid CIDR 'x'",
                                                              "spec.cidr: invalid CIDR 'x'")
    assert isinstance(failure, ValueError)
    with pytest.raises(ValidationFailure) as caught:
        validate(["not", "a", "mapping"])
    assert (caught.value.field, str(caught.value)) == ("", "a resource must be a mapping")


# ------------------------------------------------------------------ bad documents

POOL = {"cidr": "10.4.0.0/16"}
PEER = {"peerIP": "192.0.2.1", "asNumber": 65001}
P6 = {"cidr": "fd00:30::/64"}

# (id, document, the field named, words the message holds)
BAD = [
    # the document itself
    ("not-a-mapping", "apiVersion: v3", "", "must be a mapping"),
    ("no-apiVersion", {"kind": "IPPool", "metadata": {"name": "p"}, "spec": POOL}, "apiVersion", "required"),
    ("wrong-apiVersion", {**res("IPPool", POOL), "apiVersion": "v1"}, "apiVersion",
     "must be 'projectcalico.org/v3', not 'v1'"),
    ("old-apiVersion", {**res("IPPool", POOL), "apiVersion": "projectcalico.org/v2"}, "apiVersion", "v2"),
    ("no-kind", {"apiVersion": API_VERSION, "metadata": {"name": "p"}}, "kind", "required"),
    ("unknown-kind", res("Gadget", {}), "kind", "unknown kind 'Gadget'"),
    ("kind-case", res("ipPool", POOL), "kind", "did you mean 'IPPool'?"),
    ("kind-not-string", {**res("IPPool", POOL), "kind": 7}, "kind", "unknown kind 7"),
    ("unknown-top-field", {**res("IPPool", POOL), "state": {}}, "state", "unknown field"),
    ("spec-not-mapping", res("IPPool", ["10.0.0.0/8"]), "spec", "must be a mapping"),
    ("spec-missing", res("IPPool"), "spec", "required field is missing"),
    # metadata
    ("no-metadata", {"apiVersion": API_VERSION, "kind": "IPPool", "spec": POOL}, "metadata", "required"),
    ("no-name", {**res("IPPool", POOL), "metadata": {}}, "metadata.name", "required field is missing"),
    ("name-upper", res("IPPool", POOL, "Pool1"), "metadata.name", "invalid name 'Pool1'"),
    ("name-underscore", res("IPPool", POOL, "my_pool"), "metadata.name", "invalid name"),
    ("name-trailing-dash", res("IPPool", POOL, "pool-"), "metadata.name", "invalid name"),
    ("name-too-long", res("IPPool", POOL, "a" * 254), "metadata.name", "too long"),
    ("unknown-metadata", res("IPPool", POOL, generations=3), "metadata.generations", "unknown field"),
    ("generation-not-int", res("IPPool", POOL, generation="3"), "metadata.generation", "must be an integer"),
    ("allowed-use-unknown", res("IPPool", {**POOL, "allowedUses": ["Pods"]}), "spec.allowedUses[0]",
     "must be 'Workload', 'Tunnel' or 'LoadBalancer'"),
    ("allowed-use-twice", res("IPPool", {**POOL, "allowedUses": ["Tunnel", "Tunnel"]}), "spec.allowedUses",
     "listed more than once"),
    ("load-balancer-mixed", res("IPPool", {**POOL, "allowedUses": ["LoadBalancer", "Workload"]}),
     "spec.allowedUses", "cannot be combined"),
    ("load-balancer-ipip", res("IPPool", {**POOL, "allowedUses": ["LoadBalancer"], "ipipMode": "Always"}),
     "spec.allowedUses", "cannot use IPIP or VXLAN"),
    ("assignment-mode", res("IPPool", {**POOL, "assignmentMode": "automatic"}), "spec.assignmentMode",
     "must be 'Automatic' or 'Manual'"),
    ("pool-status-shape", {**res("IPPool", POOL), "status": {"conditions": [{"type": "Allocatable"}]}},
     "status.conditions[0].status", "required field is missing"),
    ("policy-tier", policy(tier="admin"), "spec.tier", "only the default tier"),
    ("namespace-on-cluster-kind", res("IPPool", POOL, namespace="default"), "metadata.namespace",
     "IPPool is not namespaced"),
    ("bad-namespace", res("NetworkPolicy", {}, namespace="Shop"), "metadata.namespace", "invalid namespace"),
    ("label-value-type", res("IPPool", POOL, labels={"a": 1}), "metadata.labels.a", "must be a string"),
    ("label-key", res("IPPool", POOL, labels={"bad key": "x"}), "metadata.labels.bad key", "invalid key"),
    ("label-value", res("IPPool", POOL, labels={"a": "not ok!"}), "metadata.labels.a", "invalid label value"),
    ("annotation-key", res("IPPool", POOL, annotations={"a/b/c": "x"}), "metadata.annotations.a/b/c",
     "invalid key"),
    ("resourceVersion-int", res("IPPool", POOL, resourceVersion=12), "metadata.resourceVersion",
     "must be a string"),
    # IPPool
    ("pool-unknown-field", res("IPPool", {**POOL, "colour": "red"}), "spec.colour", "unknown field"),
    ("pool-v1-nat", res("IPPool", {**POOL, "nat-outgoing": True}), "spec.nat-outgoing", "natOutgoing"),
    ("pool-v1-ipip", res("IPPool", {**POOL, "ipip": {"enabled": True}}), "spec.ipip", "ipipMode"),
    ("pool-no-cidr", res("IPPool", {"natOutgoing": True}), "spec.cidr", "required field is missing"),
    ("pool-bad-cidr", res("IPPool", {"cidr": "x"}), "spec.cidr", "invalid CIDR 'x'"),
    ("pool-prefix-33", res("IPPool", {"cidr": "10.2.0.0/33"}), "spec.cidr", "invalid CIDR"),
    ("pool-no-prefix", res("IPPool", {"cidr": "10.2.0.0"}), "spec.cidr", "invalid CIDR"),
    ("pool-netmask", res("IPPool", {"cidr": "10.2.0.0/255.255.0.0"}), "spec.cidr", "invalid CIDR"),
    ("pool-host-bits", res("IPPool", {"cidr": "10.2.0.1/16"}), "spec.cidr",
     "not strictly masked: host bits are set (the network is 10.2.0.0/16)"),
    ("pool-link-local", res("IPPool", {"cidr": "169.254.0.0/16"}), "spec.cidr", "link-local"),
    ("pool-v6-link-local", res("IPPool", {"cidr": "fe80::/64"}), "spec.cidr", "link-local"),
    ("pool-cidr-type", res("IPPool", {"cidr": 10}), "spec.cidr", "must be a string"),
    ("blocksize-v4-low", res("IPPool", {**POOL, "blockSize": 19}), "spec.blockSize",
     "IPv4 block size must be between 20 and 32"),
    ("blocksize-v4-high", res("IPPool", {**POOL, "blockSize": 33}), "spec.blockSize", "between 20 and 32"),
    ("blocksize-v6-low", res("IPPool", {**P6, "blockSize": 115}), "spec.blockSize",
     "IPv6 block size must be between 116 and 128"),
    ("blocksize-v6-high", res("IPPool", {**P6, "blockSize": 129}), "spec.blockSize", "between 116 and 128"),
    ("blocksize-v6-default-on-v4", res("IPPool", {**POOL, "blockSize": 122}), "spec.blockSize", "20 and 32"),
    ("blocksize-string", res("IPPool", {**POOL, "blockSize": "26"}), "spec.blockSize", "must be an integer"),
    ("pool-smaller-than-block", res("IPPool", {"cidr": "10.5.0.0/27"}), "spec.cidr",
     "pool /27 is smaller than one block (/26)"),
    ("ipip-and-vxlan", res("IPPool", {**POOL, "ipipMode": "Always", "vxlanMode": "CrossSubnet"}),
     "spec.vxlanMode", "cannot enable both VXLAN and IPIP"),
    ("ipip-on-v6", res("IPPool", {**P6, "ipipMode": "Always"}), "spec.ipipMode", "IPv6"),
    ("ipip-mode-v1-spelling", res("IPPool", {**POOL, "ipipMode": "always"}), "spec.ipipMode",
     "must be 'Never', 'Always' or 'CrossSubnet', not 'always'"),
    ("nat-string", res("IPPool", {**POOL, "natOutgoing": "true"}), "spec.natOutgoing", "must be true or false"),
    ("pool-bad-selector", res("IPPool", {**POOL, "nodeSelector": "zone = 'a'"}), "spec.nodeSelector",
     "invalid selector"),
    # rules
    ("rule-unknown-field", policy(rule(colour="red")), "spec.ingress[0].colour", "unknown field"),
    ("entity-unknown-field", policy(rule(source={"tag": "db"})), "spec.ingress[0].source.tag", "unknown field"),
    ("rule-no-action", policy({"protocol": "TCP"}), "spec.ingress[0].action", "required field is missing"),
    ("rule-bad-action", policy(rule(action="allow")), "spec.ingress[0].action",
     "must be 'Allow', 'Deny', 'Log' or 'Pass', not 'allow'"),
    ("ports-without-protocol", policy(rule(destination={"ports": [80]})), "spec.ingress[0].destination.ports",
     "ports are only valid with protocol TCP, UDP or SCTP"),
    ("notports-with-icmp", policy(egress=[rule(protocol="ICMP", source={"notPorts": [1]})]),
     "spec.egress[0].source.notPorts", "only valid with protocol TCP, UDP or SCTP"),
    ("ports-with-udplite", policy(rule(protocol="UDPLite", destination={"ports": [80]})),
     "spec.ingress[0].destination.ports", "TCP, UDP or SCTP"),
    ("icmp-with-tcp", policy(rule(protocol="TCP", icmp={"type": 8})), "spec.ingress[0].icmp",
     "only valid with protocol ICMP or ICMPv6"),
    ("icmp-without-protocol", policy(rule(icmp={"type": 8})), "spec.ingress[0].icmp", "ICMP or ICMPv6"),
    ("icmp-code-without-type", policy(rule(protocol="ICMP", icmp={"code": 0})), "spec.ingress[0].icmp.code",
     "an ICMP code needs an ICMP type"),
    ("icmp-type-255", policy(rule(protocol="ICMP", icmp={"type": 255})), "spec.ingress[0].icmp.type",
     "must be at most 254"),
    ("icmp-unknown-field", policy(rule(protocol="ICMP", icmp={"kind": 8})), "spec.ingress[0].icmp.kind",
     "unknown field"),
    ("icmp-ipversion-6", policy(rule(protocol="ICMP", ipVersion=6)), "spec.ingress[0].ipVersion",
     "must be 4 with protocol ICMP"),
    ("icmpv6-ipversion-4", policy(rule(notProtocol="ICMPv6", ipVersion=4)), "spec.ingress[0].ipVersion",
     "must be 6 with protocol ICMPv6"),
    ("ipversion-5", policy(rule(ipVersion=5)), "spec.ingress[0].ipVersion", "must be 4 or 6, not 5"),
    ("protocol-300", policy(rule(protocol=300)), "spec.ingress[0].protocol", "protocol numbers are 1-255"),
    ("protocol-0", policy(rule(protocol=0)), "spec.ingress[0].protocol", "1-255"),
    ("protocol-lowercase", policy(rule(protocol="tcp")), "spec.ingress[0].protocol", "did you mean 'TCP'?"),
    ("protocol-unknown", policy(rule(notProtocol="GRE")), "spec.ingress[0].notProtocol", "invalid protocol 'GRE'"),
    ("protocol-bool", policy(rule(protocol=True)), "spec.ingress[0].protocol", "invalid protocol True"),
    ("port-range-reversed", policy(rule(protocol="TCP", destination={"ports": [80, "90:80"]})),
     "spec.ingress[0].destination.ports[1]", "invalid port range '90:80'"),
    ("port-0", policy(rule(protocol="TCP", destination={"ports": [0]})), "spec.ingress[0].destination.ports[0]",
     "port numbers are 1-65535"),
    ("port-65536", policy(rule(protocol="UDP", source={"ports": [65536]})), "spec.ingress[0].source.ports[0]",
     "1-65535"),
    ("port-range-too-high", policy(rule(protocol="UDP", source={"ports": ["1:70000"]})),
     "spec.ingress[0].source.ports[0]", "1-65535"),
    ("port-bad-name", policy(rule(protocol="TCP", destination={"ports": ["Http_Port"]})),
     "spec.ingress[0].destination.ports[0]", "invalid port name 'Http_Port'"),
    ("port-list-type", policy(rule(protocol="TCP", destination={"ports": 80})),
     "spec.ingress[0].destination.ports", "must be a list"),
    ("port-float", policy(rule(protocol="TCP", destination={"ports": [80.5]})),
     "spec.ingress[0].destination.ports[0]", "must be a port number"),
    ("nets-bad", policy(rule(source={"nets": ["10.0.0.0/8", "10.0.0.0/40"]})), "spec.ingress[0].source.nets[1]",
     "invalid CIDR '10.0.0.0/40'"),
    ("nets-host-bits", policy(rule(destination={"notNets": ["10.0.0.1/8"]})),
     "spec.ingress[0].destination.notNets[0]", "host bits set"),
    ("nets-vs-ipversion", policy(rule(ipVersion=6, source={"nets": ["10.0.0.0/8"]})),
     "spec.ingress[0].source.nets", "an IPv4 network in a rule with ipVersion 6"),
    ("nets-mixed", policy(rule(source={"nets": ["10.0.0.0/8"]}, destination={"nets": ["fd00::/8"]})),
     "spec.ingress[0].destination.nets", "mixes IPv4 and IPv6"),
    ("rule-bad-selector", policy(rule(source={"selector": "has(a"})), "spec.ingress[0].source.selector",
     "invalid selector 'has(a'"),
    ("rule-global-selector", policy(rule(destination={"selector": "global()"})),
     "spec.ingress[0].destination.selector", "global() can only be used in a namespaceSelector"),
    ("rule-global-combined", policy(rule(source={"namespaceSelector": "global() && a == 'b'"})),
     "spec.ingress[0].source.namespaceSelector", "cannot be combined"),
    # policies
    ("np-gnp-only-field", policy(doNotTrack=True), "spec.doNotTrack", "unknown field"),
    ("np-namespace-selector", policy(namespaceSelector="all()"), "spec.namespaceSelector", "unknown field"),
    ("np-name-two-dots", res("NetworkPolicy", {}, "a.b.c", namespace="default"), "metadata.name",
     "at most one '.'"),
    ("np-bad-selector", policy(selector="app ="), "spec.selector", "invalid selector"),
    ("np-global-selector", policy(selector="global()"), "spec.selector", "global()"),
    ("np-types-lowercase", policy(types=["ingress"]), "spec.types[0]", "must be 'Ingress' or 'Egress'"),
    ("np-types-twice", policy(types=["Ingress", "Ingress"]), "spec.types", "'Ingress' is listed more than once"),
    ("np-order-string", policy(order="100"), "spec.order", "must be a number"),
    ("np-egress-rule", policy(egress=[rule(action="Reject")]), "spec.egress[0].action", "not 'Reject'"),
    ("gnp-predNAT-without-forward", policy(kind="GlobalNetworkPolicy", preDNAT=True), "spec.applyOnForward",
     "must be true when preDNAT or doNotTrack is true"),
    ("gnp-predNAT-egress", policy(kind="GlobalNetworkPolicy", preDNAT=True, applyOnForward=True,
                                  egress=[rule()]), "spec.egress", "preDNAT policy cannot have egress rules"),
    ("gnp-predNAT-egress-type", policy(kind="GlobalNetworkPolicy", preDNAT=True, applyOnForward=True,
                                       types=["Egress"]), "spec.types", "cannot have type Egress"),
    ("gnp-predNAT-doNotTrack", policy(kind="GlobalNetworkPolicy", preDNAT=True, doNotTrack=True,
                                      applyOnForward=True), "spec.preDNAT", "cannot both be true"),
    ("gnp-namespace-global", policy(kind="GlobalNetworkPolicy", namespaceSelector="global()"),
     "spec.namespaceSelector", "global()"),
    ("profile-labels", res("Profile", {"labelsToApply": {"a": "b c"}}), "spec.labelsToApply.a",
     "invalid label value"),
    ("profile-rule", res("Profile", {"egress": [{"action": "Drop"}]}), "spec.egress[0].action", "not 'Drop'"),
    # BGP
    ("peer-node-and-nodeSelector", res("BGPPeer", {**PEER, "node": "n1", "nodeSelector": "all()"}),
     "spec.node", "must be empty when nodeSelector is set"),
    ("peer-ip-and-peerSelector", res("BGPPeer", {"peerIP": "192.0.2.1", "peerSelector": "all()"}),
     "spec.peerIP", "must be empty when peerSelector is set"),
    ("peer-as-and-peerSelector", res("BGPPeer", {"asNumber": 65001, "peerSelector": "all()"}),
     "spec.asNumber", "must be empty when peerSelector is set"),
    ("peer-neither", res("BGPPeer", {"asNumber": 65001}), "spec.peerIP", "give peerIP or peerSelector"),
    ("peer-no-as", res("BGPPeer", {"peerIP": "192.0.2.1"}), "spec.asNumber", "required field is missing"),
    ("peer-bad-ip", res("BGPPeer", {**PEER, "peerIP": "192.0.2"}), "spec.peerIP", "invalid peerIP '192.0.2'"),
    ("peer-port-0", res("BGPPeer", {**PEER, "peerIP": "192.0.2.1:0"}), "spec.peerIP", "1-65535"),
    ("peer-v6-unbracketed-port", res("BGPPeer", {**PEER, "peerIP": "fd00::1]:179"}), "spec.peerIP",
     "invalid peerIP"),
    ("peer-bad-selector", res("BGPPeer", {"peerSelector": "x ="}), "spec.peerSelector", "invalid selector"),
    ("peer-bad-node", res("BGPPeer", {**PEER, "node": "Node_1"}), "spec.node", "invalid name 'Node_1'"),
    ("as-0", res("BGPPeer", {**PEER, "asNumber": 0}), "spec.asNumber", "out of range 1-4294967295"),
    ("as-too-big", res("BGPPeer", {**PEER, "asNumber": 4294967296}), "spec.asNumber", "out of range"),
    ("as-text", res("BGPPeer", {**PEER, "asNumber": "sixty"}), "spec.asNumber", "invalid AS number 'sixty'"),
    ("as-dotted-too-big", res("BGPPeer", {**PEER, "asNumber": "65536.1"}), "spec.asNumber", "invalid AS number"),
    ("as-bool", res("BGPPeer", {**PEER, "asNumber": True}), "spec.asNumber", "invalid AS number"),
    ("bgpconfig-severity", res("BGPConfiguration", {"logSeverityScreen": "debug"}, "default"),
     "spec.logSeverityScreen", "not 'debug'"),
    ("bgpconfig-mesh-per-node", res("BGPConfiguration", {"nodeToNodeMeshEnabled": True}, "node.n1"),
     "spec.nodeToNodeMeshEnabled", "only be set in the BGPConfiguration named 'default'"),
    ("bgpconfig-as-per-node", res("BGPConfiguration", {"asNumber": 65000}, "node.n1"), "spec.asNumber",
     "named 'default'"),
    ("bgpconfig-listen-port", res("BGPConfiguration", {"listenPort": 0}, "default"), "spec.listenPort",
     "must be at least 1"),
    ("bgpconfig-service-cidr", res("BGPConfiguration", {"serviceClusterIPs": [{"cidr": "10.96.0.1/12"}]},
                                   "default"), "spec.serviceClusterIPs[0].cidr", "host bits set"),
    ("bgpconfig-unknown", res("BGPConfiguration", {"nodeMeshPassword": "x"}, "default"), "spec.nodeMeshPassword",
     "unknown field"),
    # Node
    ("node-empty-bgp", res("Node", {"bgp": {}}), "spec.bgp", "must not be empty"),
    ("node-v6-in-v4", res("Node", {"bgp": {"ipv4Address": "2001:db8::1/64"}}), "spec.bgp.ipv4Address",
     "invalid IPv4 address"),
    ("node-bad-address", res("Node", {"bgp": {"ipv4Address": "192.0.2.300/24"}}), "spec.bgp.ipv4Address",
     "invalid IPv4 address"),
    ("node-tunnel-cidr", res("Node", {"bgp": {"ipv4IPIPTunnelAddr": "10.0.0.1/32"}}),
     "spec.bgp.ipv4IPIPTunnelAddr", "invalid IPv4 address"),
    ("node-bgp-unknown", res("Node", {"bgp": {"ipv4Address": "192.0.2.1/24", "port": 179}}), "spec.bgp.port",
     "unknown field"),
    ("node-orchref", res("Node", {"orchRefs": [{"nodeName": "n"}]}), "spec.orchRefs[0].orchestrator",
     "required field is missing"),
    ("node-vxlan-mac", res("Node", {"vxlanTunnelMACAddr": "66:22:33"}), "spec.vxlanTunnelMACAddr",
     "invalid MAC address"),
    # WorkloadEndpoint
    ("wep-network-not-single", wep(ipNetworks=["10.100.1.0/24"]), "spec.ipNetworks[0]", "single address"),
    ("wep-network-bad", wep(ipNetworks=["10.100.1.2/33"]), "spec.ipNetworks[0]", "invalid CIDR"),
    ("wep-mac", wep(mac="ee:ee:ee"), "spec.mac", "invalid MAC address 'ee:ee:ee'"),
    ("wep-no-interface", res("WorkloadEndpoint", {k: v for k, v in WEP_SPEC.items() if k != "interfaceName"},
                             namespace="default"), "spec.interfaceName", "required field is missing"),
    ("wep-interface-long", wep(interfaceName="cali0123456789abcdef"), "spec.interfaceName",
     "invalid interface name"),
    ("wep-container-id", wep(containerID="abc_123"), "spec.containerID", "invalid container ID"),
    ("wep-profile-name", wep(profiles=["Calico_Net"]), "spec.profiles[0]", "invalid name 'Calico_Net'"),
    ("wep-port-icmp", wep(ports=[{"name": "ping", "protocol": "ICMP", "port": 1}]), "spec.ports[0].protocol",
     "only TCP, UDP and SCTP have ports"),
    ("wep-port-unnamed", wep(ports=[{"protocol": "TCP", "port": 80}]), "spec.ports[0].name",
     "unless hostPort is set"),
    ("wep-port-0", wep(ports=[{"name": "x", "protocol": "TCP", "port": 0}]), "spec.ports[0].port",
     "must be at least 1"),
    ("wep-nat-outside", wep(ipNATs=[{"internalIP": "10.9.9.9", "externalIP": "198.51.100.9"}]),
     "spec.ipNATs[0].internalIP", "not one of the endpoint's ipNetworks"),
    ("wep-nat-versions", wep(ipNATs=[{"internalIP": "10.100.1.2", "externalIP": "fd00::9"}]),
     "spec.ipNATs[0].externalIP", "same IP version"),
    ("wep-unknown", wep(hostname="h"), "spec.hostname", "unknown field"),
    ("wep-no-spec", res("WorkloadEndpoint", None, namespace="default"), "spec", "required field is missing"),
    # singletons
    ("ipam-not-default", res("IPAMConfiguration", {}, "global"), "metadata.name",
     "must be 'default': there is only one IPAMConfiguration"),
    ("ipam-negative", res("IPAMConfiguration", {"maxBlocksPerHost": -1}, "default"), "spec.maxBlocksPerHost",
     "must be at least 0"),
    ("ipam-bool", res("IPAMConfiguration", {"strictAffinity": "true"}, "default"), "spec.strictAffinity",
     "must be true or false"),
    ("ipam-unknown", res("IPAMConfiguration", {"strict_affinity": True}, "default"), "spec.strict_affinity",
     "unknown field"),
    ("clusterinfo-name", res("ClusterInformation", {}, "cluster"), "metadata.name", "must be 'default'"),
    ("clusterinfo-ready", res("ClusterInformation", {"datastoreReady": "yes"}, "default"),
     "spec.datastoreReady", "must be true or false"),
]


@pytest.mark.parametrize("doc, field, words", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_documents_name_the_field(doc: Any, field: str, words: str) -> None:
    with pytest.raises(ValidationFailure) as caught:
        validate(doc)
    assert caught.value.field == field
    assert words in caught.value.message
    assert str(caught.value) == (f"{field}: {caught.value.message}" if field else caught.value.message)
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_bad_case_ids_are_unique() -> None:
    assert len({case[0] for case in BAD}) == len(BAD)


# What `calicoctl get ippool -o yaml` prints on a current Calico cluster (Kubernetes datastore):
# server-set metadata, every default filled, and the status Calico keeps for a pool.
CLUSTER_POOL = {
    "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
    "metadata": {"creationTimestamp": "2025-11-20T09:12:41Z", "generation": 2, "name": "default-ipv4-ippool",
                 "resourceVersion": "1187", "uid": "0f5cc1a8-3a6d-4c1c-9d0a-6a2c4f2f3a55",
                 "managedFields": [{"manager": "operator", "operation": "Update"}], "finalizers": []},
    "spec": {"allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic", "blockSize": 26,
             "cidr": "192.168.0.0/16", "ipipMode": "Always", "natOutgoing": True, "nodeSelector": "all()",
             "vxlanMode": "Never"},
    "status": {"conditions": [{"lastTransitionTime": "2025-11-20T09:12:41Z", "message":
                               "IPPool is available for IP allocation.", "reason": "OK", "status": "True",
                               "type": "Allocatable"}]},
}


def test_a_pool_as_a_real_cluster_prints_it_is_accepted_and_stored_without_server_fields() -> None:
    stored = to_stored(validate(copy.deepcopy(CLUSTER_POOL)))
    assert stored == {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                      "metadata": {"name": "default-ipv4-ippool", "creationTimestamp": "2025-11-20T09:12:41Z",
                                   "uid": "0f5cc1a8-3a6d-4c1c-9d0a-6a2c4f2f3a55"},
                      "spec": CLUSTER_POOL["spec"]}


def test_read_defaults_fill_what_calico_fills_when_it_reads_an_old_pool() -> None:
    assert v3.pool_read_defaults({"cidr": "10.0.0.0/16", "natOutgoing": True}) == {
        "cidr": "10.0.0.0/16", "natOutgoing": True, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
        "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic"}
    complete = CLUSTER_POOL["spec"]
    assert v3.pool_read_defaults(complete) == complete
