"""Names derived from the workload identity: host veth and WorkloadEndpoint names (pure)."""

from __future__ import annotations

import hashlib

import pytest

from cni_calico.cni.identity import Workload, endpoint_name, host_veth_name


def test_pod_veth_is_the_hash_of_namespace_and_pod() -> None:
    assert host_veth_name(Workload("x", "default", "nginx")) == \
        "cali" + hashlib.sha1(b"default.nginx").hexdigest()[:11]


def test_runtime_hex_ids_keep_calicos_prefix_scheme() -> None:
    cid = "3f1c9a0b7d2e" + "0" * 52
    assert host_veth_name(Workload(cid)) == "cali3f1c9a0b7d2"


@pytest.mark.parametrize("a, b", [("cnitool-0123abc", "cnitool-0123abd"), ("151node-pod1", "151node-pod2"),
                                  ("short", "shorter")])
def test_ids_sharing_a_readable_prefix_get_different_veths(a: str, b: str) -> None:
    name_a, name_b = host_veth_name(Workload(a)), host_veth_name(Workload(b))
    assert name_a != name_b and len(name_a) == len(name_b) == 15


def test_endpoint_names_double_dashes_inside_segments() -> None:
    assert endpoint_name("node-1", Workload("c-1"), "eth0") == "node--1-cni-c--1-eth0"
    assert endpoint_name("n1", Workload("c", "ns", "web-0"), "eth0") == "n1-k8s-web--0-eth0"
