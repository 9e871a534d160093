"""Kubernetes mode, pure parts: a pod as its endpoint's labels, ports and profiles, and the IPAM
annotations (pod over namespace over the network config, validated, gated by feature_control)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cni_calico.cni.k8s import ipam_annotations as ann
from cni_calico.cni.k8s.client import _answer
from cni_calico.cni.k8s.ipam_annotations import IpamAnnotations
from cni_calico.cni.k8s.pod import namespace_profile_spec, pod_endpoint
from cni_calico.cni.k8s.settings import ApiSettings
from cni_calico.cni.skel import CmdArgs
from cni_calico.cni.types import CalicoNetConf
from cni_calico.errors import CniError
from cni_calico.model import v3

NS = {"metadata": {"name": "shop", "labels": {"team": "a", "kubernetes.io/metadata.name": "shop"},
                   "annotations": {"cni.projectcalico.org/ipv4pools": '["ns-pool"]'}}}


def pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, sa: str = "default",
        containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers or [{"name": "c", "image": "i"}]}
    if sa:
        spec["serviceAccountName"] = sa
    if init:
        spec["initContainers"] = init
    return {"metadata": {"name": "web-1", "namespace": "shop", "labels": labels or {},
                         "annotations": annotations or {}, **meta}, "spec": spec}


# ---- pod -> endpoint -------------------------------------------------------------------------------
def test_labels_service_account_and_profiles() -> None:
    facts = pod_endpoint(pod({"app": "web", "projectcalico.org/namespace": "forged"}, sa="frontend",
                             generateName="web-"), NS)
    assert facts.labels == {"app": "web", "projectcalico.org/namespace": "shop",
                            "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": "frontend"}
    assert facts.profiles == ["kns.shop", "ksa.shop.frontend"]
    assert (facts.service_account, facts.generate_name) == ("frontend", "web-")
    assert facts.namespace_labels == NS["metadata"]["labels"]


def test_without_service_account_or_with_a_long_one() -> None:
    facts = pod_endpoint(pod(sa=""), NS)
    assert facts.profiles == ["kns.shop"] and "projectcalico.org/serviceaccount" not in facts.labels
    long = "s" * 63  # a label value must stay under 63 characters: Calico leaves the label out
    facts = pod_endpoint(pod(sa=long), NS)
    assert "projectcalico.org/serviceaccount" not in facts.labels and facts.profiles[1] == f"ksa.shop.{long}"


def test_named_and_host_ports_of_containers_and_init_containers() -> None:
    containers = [{"name": "c", "image": "i", "ports": [
        {"name": "http", "containerPort": 80},  # protocol defaults to TCP
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"containerPort": 8080},  # neither named nor a host port: not an endpoint port
        {"containerPort": 9000, "hostPort": 30000, "hostIP": "192.0.2.1"},
        {"name": "odd", "containerPort": 7, "protocol": "ICMP"},  # not a port protocol: left out
    ]}]
    init = [{"name": "i", "image": "i", "ports": [{"name": "sctp-x", "containerPort": 9, "protocol": "SCTP"}]}]
    facts = pod_endpoint(pod(containers=containers, init=init), NS)
    assert facts.ports == [
        {"name": "http", "protocol": "TCP", "port": 80},
        {"name": "dns", "protocol": "UDP", "port": 53},
        {"protocol": "TCP", "port": 9000, "hostPort": 30000, "hostIP": "192.0.2.1"},
        {"name": "sctp-x", "protocol": "SCTP", "port": 9},
    ]
    for port in facts.ports:  # what calicoctl would accept
        v3.strictly(v3.WorkloadEndpointPort, port)


def test_the_namespace_profile_is_valid_and_carries_the_namespace_labels() -> None:
    spec = namespace_profile_spec("shop", NS["metadata"]["labels"])
    assert spec["labelsToApply"] == {"pcns.projectcalico.org/name": "shop", "pcns.team": "a",
                                     "pcns.kubernetes.io/metadata.name": "shop"}
    v3.validate({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "kns.shop"},
                 "spec": spec})


def test_a_malformed_pod_is_error_110() -> None:
    with pytest.raises(CniError) as exc:
        pod_endpoint({"metadata": {"name": "p", "labels": ["x"]}, "spec": {}}, NS)
    assert exc.value.code == 110


# ---- IPAM annotations --------------------------------------------------------------------------------
def conf(**extra: Any) -> CalicoNetConf:
    return CalicoNetConf.model_validate({"name": "net", "policy": {"type": "k8s"},
                                         "ipam": {"type": "calico-ipam", "ipv4_pools": ["conf-pool"]}, **extra})


def read(pod_ann: dict[str, str], ns_ann: dict[str, str] | None = None, **extra: Any) -> IpamAnnotations:
    return ann.read(pod_ann, ns_ann or {}, conf(**extra))


def fails(pod_ann: dict[str, str], ns_ann: dict[str, str] | None = None, **extra: Any) -> CniError:
    with pytest.raises(CniError) as exc:
        read(pod_ann, ns_ann, **extra)
    return exc.value


V4, V6 = "cni.projectcalico.org/ipv4pools", "cni.projectcalico.org/ipv6pools"


def test_pools_pod_over_namespace_over_network_config() -> None:
    ns = {V4: '["ns-v4"]', V6: '["fd00:ns::/64"]'}
    assert read({}) == IpamAnnotations()  # the config's pools stay
    assert read({}, ns) == IpamAnnotations(ipv4_pools=["ns-v4"], ipv6_pools=["fd00:ns::/64"])
    assert read({V4: '["10.65.0.0/24", "pod-v4"]'}, ns) == \
        IpamAnnotations(ipv4_pools=["10.65.0.0/24", "pod-v4"], ipv6_pools=["fd00:ns::/64"])
    assert read({V4: ""}, ns).ipv4_pools == ["ns-v4"]  # an empty value is no value
    assert read({V4: "[]"}, ns).ipv4_pools == []  # an empty list: every pool, as Calico
    # Applied over the config: the annotations' pools replace the config's, the rest stays.
    applied = ann.ipam_conf(conf(), read({}, ns))
    assert (applied.ipam.ipv4_pools, applied.ipam.ipv6_pools, applied.name) == (["ns-v4"], ["fd00:ns::/64"], "net")
    assert ann.ipam_conf(conf(), read({})).ipam.ipv4_pools == ["conf-pool"]


def test_pools_are_ignored_by_another_ipam_plugin() -> None:
    assert read({V4: '["x"]'}, {V6: '["y"]'}, ipam={"type": "host-local"}) == IpamAnnotations()


def test_ip_addrs_become_an_ip_request() -> None:
    wanted = read({"cni.projectcalico.org/ipAddrs": '["10.100.7.9", "fd00::0:9"]'})
    assert wanted.ip_addrs == ("10.100.7.9", "fd00::9")
    args = CmdArgs("ADD", "cid", "/ns", "eth0", {"K8S_POD_NAME": "p", "IP": "10.0.0.1"}, (), b"", {})
    assert ann.ipam_args(args, wanted).args == {"K8S_POD_NAME": "p", "IP": "10.100.7.9,fd00::9"}
    assert ann.ipam_args(args, replace(wanted, ip_addrs=())) is args
    # namespaces cannot ask for addresses (as Calico: only pools come from the namespace)
    assert read({}, {"cni.projectcalico.org/ipAddrs": '["10.100.7.9"]'}).ip_addrs == ()


def test_gated_features() -> None:
    no_ipam = {"cni.projectcalico.org/ipAddrsNoIpam": '["10.200.0.5"]'}
    floating = {"cni.projectcalico.org/floatingIPs": '["203.0.113.7", "2001:db8::7"]'}
    for annotation, feature in ((no_ipam, "ip_addrs_no_ipam"), (floating, "floating_ips")):
        err = fails(annotation)
        assert err.code == 111 and "the feature is not enabled" in err.msg and feature in err.details
    assert read(no_ipam, feature_control={"ip_addrs_no_ipam": True}).no_ipam == ("10.200.0.5",)
    wanted = read(floating, feature_control={"floating_ips": True})
    assert wanted.floating_ips == ("203.0.113.7", "2001:db8::7")
    assert ann.ip_nats(wanted.floating_ips, ["10.100.0.4/32", "fd00::4/128"]) == [
        {"internalIP": "10.100.0.4", "externalIP": "203.0.113.7"},
        {"internalIP": "fd00::4", "externalIP": "2001:db8::7"}]
    with pytest.raises(CniError) as exc:
        ann.ip_nats(wanted.floating_ips, ["10.100.0.4/32"])
    assert exc.value.code == 111 and "no IPv6 address" in exc.value.msg
    assert ann.host_networks(("10.200.0.5", "fd00::5")) == ["10.200.0.5/32", "fd00::5/128"]


@pytest.mark.parametrize("annotations,extra,problem", [
    ({V4: "not json"}, {}, "is not JSON"),
    ({V4: '"10.0.0.0/8"'}, {}, "not a JSON list of strings"),
    ({V4: "[1, 2]"}, {}, "not a JSON list of strings"),
    ({V6: '[" "]'}, {}, "must not be empty"),
    ({"cni.projectcalico.org/ipAddrs": '["10.0.0.300"]'}, {}, "is not an IP address"),
    ({"cni.projectcalico.org/ipAddrs": '["10.0.0.1", "10.0.0.2"]'}, {}, "more than one IPv4 address"),
    ({"cni.projectcalico.org/ipAddrs": '["fd00::1", "fd00::2"]'}, {}, "more than one IPv6 address"),
    ({"cni.projectcalico.org/ipAddrs": "[]"}, {}, "is set but empty"),
    ({"cni.projectcalico.org/ipAddrs": '["10.0.0.1"]', "cni.projectcalico.org/ipAddrsNoIpam": '["10.0.0.2"]'},
     {"feature_control": {"ip_addrs_no_ipam": True}}, "cannot have both"),
    ({"cni.projectcalico.org/ipAddrs": '["10.0.0.1"]'}, {"ipam": {"type": "host-local"}}, "not compatible with IPAM"),
    ({"cni.projectcalico.org/floatingIPs": '["nope"]'}, {"feature_control": {"floating_ips": True}},
     "is not an IP address"),
])
def test_bad_annotations_are_error_111(annotations: dict[str, str], extra: dict[str, Any], problem: str) -> None:
    err = fails(annotations, **extra)
    assert err.code == 111 and problem in err.msg, err.msg


def test_a_bad_namespace_annotation_is_error_111_too() -> None:
    err = fails({}, {V4: "{"})
    assert err.code == 111 and V4 in err.msg


# ---- the API's answers -------------------------------------------------------------------------------
SETTINGS = ApiSettings(secure=True, host="h", port=6443, source="kubeconfig /k")


@pytest.mark.parametrize("status,code,text", [
    (404, 110, "pod shop/web-1 does not exist"), (401, 110, "refused to show pod shop/web-1"),
    (403, 110, "refused to show"), (429, 11, "could not answer"), (500, 11, "could not answer"),
    (503, 11, "could not answer"), (400, 110, "answered 400"),
])
def test_answers_other_than_200(status: int, code: int, text: str) -> None:
    body = b'{"kind":"Status","message":"pods \\"web-1\\" not found"}'
    with pytest.raises(CniError) as exc:
        _answer(status, body, "pod shop/web-1", SETTINGS)
    assert exc.value.code == code and text in exc.value.msg
    assert exc.value.details == f'HTTP {status}: pods "web-1" not found'


def test_a_200_must_be_a_json_object() -> None:
    assert _answer(200, b'{"kind": "Pod"}', "pod", SETTINGS) == {"kind": "Pod"}
    for body in (b"<html>", b"[1]"):
        with pytest.raises(CniError) as exc:
            _answer(200, body, "pod", SETTINGS)
        assert exc.value.code == 110
