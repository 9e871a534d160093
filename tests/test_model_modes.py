"""One model per kind (cni_calico.model.v3), validated two ways: strictly on calicoctl's write
path, tolerantly when a component reads what is stored. Pure; the read-modify-writes against
real etcd are in test_node_startup."""

from __future__ import annotations

import json
from typing import Any

import netaddr
import pytest
from pydantic import ValidationError

from cni_calico.model import v3
from cni_calico.model.v3 import (
    API_VERSION,
    IPAMConfigurationSpec,
    IPPool,
    IPPoolSpec,
    Node,
    NodeBGPSpec,
    ObjectMeta,
    ValidationFailure,
    WorkloadEndpoint,
    WorkloadEndpointPort,
    WorkloadEndpointSpec,
    to_json,
    to_stored,
    validate,
)


def doc(kind: str, spec: dict[str, Any], name: str = "x", **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


WEP = doc("WorkloadEndpoint", {
    "orchestrator": "k8s", "workload": "", "node": "node1", "containerID": "abc123", "pod": "nginx",
    "endpoint": "eth0", "interfaceName": "calic440f455693", "mac": "ee:ee:ee:ee:ee:ee",
    "ipNetworks": ["10.100.1.2/32"], "profiles": ["kns.default", "ksa.default.web"],
    "serviceAccountName": "web", "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
    "ipNATs": [{"internalIP": "10.100.1.2", "externalIP": "203.0.113.9"}]},
    "node1-k8s-nginx-eth0", namespace="default", generateName="nginx-", annotations={},
    labels={"projectcalico.org/namespace": "default", "projectcalico.org/orchestrator": "k8s"})


# ------------------------------------------------------------------ unknown fields

@pytest.mark.parametrize("where, path", [
    (lambda d: d, "future"),
    (lambda d: d["metadata"], "metadata.future"),
    (lambda d: d["spec"], "spec.future"),
    (lambda d: d["spec"]["ports"][0], "spec.ports[0].future"),
    (lambda d: d["spec"]["ipNATs"][0], "spec.ipNATs[0].future"),
])
def test_strict_validation_refuses_an_unknown_field_tolerant_reading_keeps_it(where: Any, path: str) -> None:
    data = json.loads(json.dumps(WEP))
    where(data)["future"] = {"x": 1}
    with pytest.raises(ValidationFailure) as info:
        validate(data)
    assert (info.value.field, info.value.message) == (path, "unknown field")
    read = WorkloadEndpoint.model_validate_json(json.dumps(data))
    assert json.loads(to_json(read)) == data  # written back as it was read


def test_a_v1_field_in_a_v3_pool_is_named_as_such() -> None:
    with pytest.raises(ValidationFailure, match=r"^spec\.nat-outgoing: unknown field \(a Calico v1 field; "
                                                r"v3 has natOutgoing\)$"):
        validate(doc("IPPool", {"cidr": "10.1.0.0/16", "nat-outgoing": True}))


def test_a_field_problem_is_reported_before_an_unknown_field_beside_it() -> None:
    """As pydantic reports them with extra="forbid": fields first, then what is unknown."""
    with pytest.raises(ValidationFailure) as info:
        validate(doc("IPPool", {"future": 1, "cidr": "10.1.0.0/16", "blockSize": "26"}))
    assert info.value.field == "spec.blockSize"
    with pytest.raises(ValidationFailure) as info:  # and before the pool's own rules
        validate(doc("IPPool", {"cidr": "10.1.0.0/16", "ipipMode": "Always", "vxlanMode": "Always", "future": 1}))
    assert info.value.field == "spec.future"


# ------------------------------------------------------------------ rules and types

def test_calicos_rules_judge_what_is_written_not_what_is_read() -> None:
    stored = json.loads(json.dumps(WEP))
    stored["spec"]["containerID"] = "abc_123"  # a CNI container ID Calico's rule does not allow
    with pytest.raises(ValidationFailure, match=r"spec\.containerID: invalid container ID"):
        validate(stored)
    assert WorkloadEndpoint.model_validate(stored).spec.containerID == "abc_123"


def test_strict_validation_does_not_coerce_tolerant_reading_does() -> None:
    pool = doc("IPPool", {"cidr": "10.1.0.0/16", "blockSize": "26"})
    with pytest.raises(ValidationFailure, match=r"spec\.blockSize: must be an integer"):
        validate(pool)
    assert IPPool.model_validate(pool).spec.blockSize == 26


def test_a_stored_pool_must_still_be_usable_by_the_allocator() -> None:
    with pytest.raises(ValidationError, match="invalid CIDR"):
        IPPool.model_validate(doc("IPPool", {"cidr": "10.1.0"}))
    with pytest.raises(ValidationError, match=r"blockSize 26 is larger than the pool 10\.1\.0\.0/28"):
        IPPool.model_validate(doc("IPPool", {"cidr": "10.1.0.0/28"}))


# ------------------------------------------------------------------ defaults

def test_a_pool_reads_with_calicos_read_defaults_and_is_stored_with_its_write_defaults() -> None:
    read = IPPool.model_validate(doc("IPPool", {"cidr": "10.1.0.0/16"}))
    assert (read.spec.ipipMode, read.spec.vxlanMode, read.spec.natOutgoing, read.spec.nodeSelector,
            read.spec.allowedUses, read.spec.assignmentMode, read.spec.blockSize) == \
        ("Never", "Never", False, "all()", ["Workload", "Tunnel"], "Automatic", None)
    written = to_stored(validate(doc("IPPool", {"cidr": "10.1.0.0/16"})))
    assert written["spec"] == {"cidr": "10.1.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
                               "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"],
                               "assignmentMode": "Automatic"}  # natOutgoing & co. only when given
    assert to_stored(validate(doc("IPAMConfiguration", {}, "default")))["spec"] == {
        "strictAffinity": False, "maxBlocksPerHost": 0, "autoAllocateBlocks": True}


def test_the_components_stored_form_is_the_one_they_always_wrote() -> None:
    pool = IPPool(metadata=ObjectMeta(name="p", creationTimestamp="t"), spec=IPPoolSpec(cidr="10.1.0.0/16"))
    assert json.loads(to_json(pool)) == {
        "apiVersion": API_VERSION, "kind": "IPPool",
        "metadata": {"annotations": {}, "labels": {}, "name": "p", "creationTimestamp": "t"},
        "spec": {"allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic", "cidr": "10.1.0.0/16",
                 "disableBGPExport": False, "disabled": False, "ipipMode": "Never", "natOutgoing": False,
                 "nodeSelector": "all()", "vxlanMode": "Never"}}
    node = Node(metadata=ObjectMeta(name="n", resourceVersion="7"), spec={})
    assert json.loads(to_json(node)) == {"apiVersion": API_VERSION, "kind": "Node", "spec": {},
                                         "metadata": {"annotations": {}, "labels": {}, "name": "n"}}


# ------------------------------------------------------------------ the components' helpers

@pytest.mark.parametrize("spec, network, prefixlen, workloads, automatic", [
    ({"cidr": "10.1.0.5/16"}, "10.1.0.0/16", 26, True, True),
    ({"cidr": "fd00::/48"}, "fd00::/48", 122, True, True),
    ({"cidr": "10.1.0.0/16", "blockSize": 24, "allowedUses": ["Tunnel"]}, "10.1.0.0/16", 24, False, True),
    ({"cidr": "10.1.0.0/16", "allowedUses": [], "assignmentMode": "Manual"}, "10.1.0.0/16", 26, True, False),
])
def test_pool_helpers(spec: dict[str, Any], network: str, prefixlen: int, workloads: bool, automatic: bool) -> None:
    pool = IPPool.model_validate(doc("IPPool", spec, "pool-a"))
    assert pool.name == "pool-a" and pool.network == netaddr.IPNetwork(network) == pool.spec.network
    assert pool.spec.cidr == network  # read in canonical form
    assert (pool.spec.block_prefixlen, pool.spec.for_workloads, pool.spec.automatic) == \
        (prefixlen, workloads, automatic)


def test_node_helpers() -> None:
    node = Node.model_validate(doc("Node", {"bgp": {"ipv4Address": "192.0.2.11/24"}}, "n1"))
    assert node.name == "n1" and node.spec.bgp is not None and node.spec.bgp.ipv4 == "192.0.2.11"
    assert NodeBGPSpec().ipv4 is None


def test_ipam_configuration_in_the_ipams_own_spelling() -> None:
    assert IPAMConfigurationSpec.from_ipam_json(None) == IPAMConfigurationSpec()
    read = IPAMConfigurationSpec.from_ipam_json('{"strict_affinity": true, "maxBlocksPerHost": 2, "later": [1]}')
    assert (read.strictAffinity, read.maxBlocksPerHost, read.autoAllocateBlocks) == (True, 2, True)
    assert json.loads(read.ipam_json()) == {"strict_affinity": True, "auto_allocate_blocks": True,
                                            "maxBlocksPerHost": 2, "later": [1]}
    with pytest.raises(ValidationError):
        IPAMConfigurationSpec.model_validate({"maxBlocksPerHost": -1})


# ------------------------------------------------------------------ what the plugin writes in Kubernetes mode

def test_the_kubernetes_mode_endpoint_fields_are_modelled() -> None:
    read = WorkloadEndpoint.model_validate_json(json.dumps(WEP))
    spec, metadata = read.spec, read.metadata
    assert not spec.model_extra and not metadata.model_extra  # fields, not kept extras
    assert spec.serviceAccountName == "web" and metadata.generateName == "nginx-"
    assert spec.ports is not None and isinstance(spec.ports[0], WorkloadEndpointPort)
    assert (spec.ports[0].name, spec.ports[0].protocol, spec.ports[0].port) == ("http", "TCP", 80)
    assert spec.ipNATs is not None and spec.ipNATs[0].externalIP == "203.0.113.9"
    assert isinstance(validate(json.loads(to_json(read))), WorkloadEndpoint)  # and they pass Calico's rules


def test_a_kubernetes_mode_port_calico_would_refuse_is_a_strict_error_only() -> None:
    bad = {"protocol": "ICMP", "port": 80, "name": "x"}
    with pytest.raises(ValidationError, match="only TCP, UDP and SCTP have ports"):
        v3.strictly(WorkloadEndpointPort, bad)
    assert WorkloadEndpointSpec.model_validate({**WEP["spec"], "ports": [bad]}).ports is not None
