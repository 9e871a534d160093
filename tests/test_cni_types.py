"""CNI types (cni_calico.cni.types): results in every cniVersion, and network configuration parsing."""

from __future__ import annotations

import pytest

from cni_calico.cni.skel import SUPPORTED_VERSIONS
from cni_calico.cni.types import (
    DNS,
    CalicoNetConf,
    Interface,
    IpamConf,
    IPConfig,
    NetConf,
    Result,
    Route,
    parse_netconf,
)
from cni_calico.errors import DECODING_FAILURE, INVALID_NETWORK_CONFIG, CniError

LEGACY = ["0.1.0", "0.2.0"]
WITH_IP_VERSION = ["0.3.0", "0.3.1", "0.4.0"]
CURRENT = ["1.0.0", "1.1.0"]
assert list(SUPPORTED_VERSIONS) == LEGACY + WITH_IP_VERSION + CURRENT

DUAL = Result(
    interfaces=[Interface(name="cali1234567890a", mac="ee:ee:ee:ee:ee:ee"),
                Interface(name="eth0", mac="02:42:0a:41:01:05", sandbox="/var/run/netns/c1")],
    ips=[IPConfig(address="10.65.1.5/32", interface=1),
         IPConfig(address="fd00:10::5/128", gateway="fe80::ecee:eeff:feee:eeee", interface=1)],
    routes=[Route(dst="0.0.0.0/0", gw="169.254.1.1"), Route(dst="::/0", gw="fe80::ecee:eeff:feee:eeee"),
            Route(dst="10.96.0.0/12", gw="169.254.1.1", mtu=1400)],
    dns=DNS(nameservers=["10.96.0.10"], search=["default.svc.cluster.local"]),
)
IPAM_ONLY = Result(ips=[IPConfig(address="10.65.1.6/26")])  # the short form an IPAM plugin returns


# ---------------------------------------------------------------- encode

EXPECTED_IPS_1X = [
    {"address": "10.65.1.5/32", "interface": 1},
    {"address": "fd00:10::5/128", "gateway": "fe80::ecee:eeff:feee:eeee", "interface": 1},
]
EXPECTED_ROUTES = [
    {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
    {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"},
    {"dst": "10.96.0.0/12", "gw": "169.254.1.1", "mtu": 1400},
]
EXPECTED_INTERFACES = [
    {"name": "cali1234567890a", "mac": "ee:ee:ee:ee:ee:ee"},
    {"name": "eth0", "mac": "02:42:0a:41:01:05", "sandbox": "/var/run/netns/c1"},
]
EXPECTED_DNS = {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]}


@pytest.mark.parametrize("version", LEGACY)
def test_encode_legacy_uses_ip4_ip6_with_routes_by_family(version):
    assert DUAL.encode(version) == {
        "cniVersion": version,
        "ip4": {"ip": "10.65.1.5/32",
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "10.96.0.0/12", "gw": "169.254.1.1"}]},
        "ip6": {"ip": "fd00:10::5/128", "gateway": "fe80::ecee:eeff:feee:eeee",
                "routes": [{"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}]},
        "dns": EXPECTED_DNS,
    }


@pytest.mark.parametrize("version", WITH_IP_VERSION)
def test_encode_03x_04_adds_ip_version(version):
    assert DUAL.encode(version) == {
        "cniVersion": version,
        "interfaces": EXPECTED_INTERFACES,
        "ips": [{"version": "4", **EXPECTED_IPS_1X[0]}, {"version": "6", **EXPECTED_IPS_1X[1]}],
        "routes": EXPECTED_ROUTES,
        "dns": EXPECTED_DNS,
    }


@pytest.mark.parametrize("version", CURRENT)
def test_encode_1x_has_no_ip_version(version):
    out = DUAL.encode(version)
    assert out == {
        "cniVersion": version,
        "interfaces": EXPECTED_INTERFACES,
        "ips": EXPECTED_IPS_1X,
        "routes": EXPECTED_ROUTES,
        "dns": EXPECTED_DNS,
    }
    assert all("version" not in ip for ip in out["ips"])


@pytest.mark.parametrize("version, expected", [
    ("0.1.0", {"cniVersion": "0.1.0", "ip4": {"ip": "10.65.1.6/26"}, "dns": {}}),
    ("0.2.0", {"cniVersion": "0.2.0", "ip4": {"ip": "10.65.1.6/26"}, "dns": {}}),
    ("0.3.0", {"cniVersion": "0.3.0", "ips": [{"version": "4", "address": "10.65.1.6/26"}], "dns": {}}),
    ("0.3.1", {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.65.1.6/26"}], "dns": {}}),
    ("0.4.0", {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.65.1.6/26"}], "dns": {}}),
    ("1.0.0", {"cniVersion": "1.0.0", "ips": [{"address": "10.65.1.6/26"}], "dns": {}}),
    ("1.1.0", {"cniVersion": "1.1.0", "ips": [{"address": "10.65.1.6/26"}], "dns": {}}),
])
def test_encode_ipam_short_form(version, expected):
    assert IPAM_ONLY.encode(version) == expected


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_encode_ipv6_only(version):
    result = Result(ips=[IPConfig(address="fd00::7/128", interface=0)], routes=[Route(dst="::/0")])
    out = result.encode(version)
    if version in LEGACY:
        assert "ip4" not in out
        assert out["ip6"] == {"ip": "fd00::7/128", "routes": [{"dst": "::/0"}]}
    else:
        ip = {"address": "fd00::7/128", "interface": 0}  # index 0 is kept, not dropped as falsy
        assert out["ips"] == ([{"version": "6", **ip}] if version in WITH_IP_VERSION else [ip])
        assert out["routes"] == [{"dst": "::/0"}]


def test_encode_does_not_change_the_result():
    before = DUAL.model_dump()
    for version in SUPPORTED_VERSIONS:
        DUAL.encode(version)
    assert DUAL.model_dump() == before


# ---------------------------------------------------------------- decode

@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("result", [DUAL, IPAM_ONLY], ids=["dual", "ipam-only"])
def test_decode_round_trips_every_version(version, result):
    encoded = result.encode(version)
    decoded = Result.decode(encoded)
    assert decoded.cniVersion == version
    assert decoded.encode(version) == encoded


@pytest.mark.parametrize("version", WITH_IP_VERSION + CURRENT)
def test_decode_of_modern_forms_keeps_everything(version):
    decoded = Result.decode(DUAL.encode(version))
    assert decoded == DUAL.model_copy(update={"cniVersion": version})
    assert [ip.interface for ip in decoded.ips] == [1, 1]


@pytest.mark.parametrize("version", LEGACY)
def test_decode_of_legacy_forms_keeps_addresses_and_routes(version):
    decoded = Result.decode(DUAL.encode(version))
    assert [(ip.address, ip.gateway) for ip in decoded.ips] == [
        ("10.65.1.5/32", None), ("fd00:10::5/128", "fe80::ecee:eeff:feee:eeee")]
    assert [(r.dst, r.gw) for r in decoded.routes] == [
        ("0.0.0.0/0", "169.254.1.1"), ("10.96.0.0/12", "169.254.1.1"), ("::/0", "fe80::ecee:eeff:feee:eeee")]
    assert decoded.dns == DUAL.dns
    assert decoded.interfaces == []  # 0.1/0.2 have no interfaces


def test_decode_a_go_plugin_040_result():
    data = {  # as Debian's ptp + host-local print it
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "veth1", "mac": "aa:bb:cc:dd:ee:ff"},
                       {"name": "eth0", "mac": "11:22:33:44:55:66", "sandbox": "/var/run/netns/x"}],
        "ips": [{"version": "4", "interface": 1, "address": "10.1.1.2/24", "gateway": "10.1.1.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
    decoded = Result.decode(data)
    assert decoded.ips == [IPConfig(address="10.1.1.2/24", gateway="10.1.1.1", interface=1)]
    assert decoded.interfaces[1].sandbox == "/var/run/netns/x"
    assert decoded.encode("0.4.0") == data


def test_decode_without_version_defaults():
    assert Result.decode({"ips": [{"address": "10.0.0.1/32"}]}).cniVersion == "1.1.0"
    assert Result.decode({"ip4": {"ip": "10.0.0.1/32"}}).cniVersion == "0.2.0"


@pytest.mark.parametrize("data", [
    {"cniVersion": "1.0.0", "ips": [{"gateway": "10.0.0.1"}]},  # no address
    {"cniVersion": "1.0.0", "ips": "10.0.0.1/32"},
    {"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]},      # no name
    {"cniVersion": "1.0.0", "routes": [{"gw": "1.2.3.4"}]},     # no dst
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/32", "interface": "eth0"}]},
    ["not", "an", "object"],
])
def test_decode_rejects_malformed_results_with_code_6(data):
    with pytest.raises(CniError) as info:
        Result.decode(data)
    assert info.value.code == DECODING_FAILURE
    assert "cannot read CNI result" in info.value.msg


# ---------------------------------------------------------------- parse_netconf

BASE = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico"}


def test_parse_netconf_defaults():
    conf = parse_netconf(BASE)
    assert conf.name == "k8s-pod-network"
    assert conf.cniVersion == "1.0.0"
    assert conf.datastore_type == "etcdv3"
    assert conf.log_level == "warning"
    assert conf.nodename is None
    assert conf.nodename_file == "/var/lib/calico/nodename"
    assert conf.ipam_lock_file == "/var/run/calico/ipam.lock"
    assert conf.ipam == IpamConf()
    assert conf.prevResult is None


def test_parse_netconf_tolerates_unknown_keys():
    conf = parse_netconf({**BASE, "mtu": 1440, "policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": "/x"},
                          "capabilities": {"portMappings": True},
                          "ipam": {"type": "calico-ipam", "somethingNew": 1, "assign_ipv6": "true"}})
    assert conf.model_extra == {"mtu": 1440, "policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": "/x"},
                                "capabilities": {"portMappings": True}}
    assert conf.ipam.type == "calico-ipam"
    assert conf.ipam.model_extra == {"somethingNew": 1}
    assert conf.ipam.wants_ipv6() is True


def test_parse_netconf_reads_calico_fields():
    conf = parse_netconf({**BASE, "etcd_endpoints": "http://127.0.0.1:2379", "nodename": "node-a",
                          "log_level": "DEBUG", "datastore_type": "etcdv3",
                          "ipam": {"type": "calico-ipam", "ipv4_pools": ["10.65.0.0/16", "rack1"],
                                   "assign_ipv4": "false", "assign_ipv6": "TRUE"},
                          "prevResult": {"cniVersion": "1.0.0", "ips": []}})
    assert conf.etcd_endpoints == "http://127.0.0.1:2379"
    assert conf.nodename == "node-a"
    assert conf.log_level == "DEBUG"
    assert conf.ipam.ipv4_pools == ["10.65.0.0/16", "rack1"]
    assert (conf.ipam.wants_ipv4(), conf.ipam.wants_ipv6()) == (False, True)
    assert conf.prevResult == {"cniVersion": "1.0.0", "ips": []}


@pytest.mark.parametrize("config, field", [
    ({**BASE, "ipam": {"assign_ipv4": "yes"}}, "ipam.assign_ipv4"),
    ({**BASE, "ipam": {"assign_ipv6": "1"}}, "ipam.assign_ipv6"),
    ({**BASE, "ipam": {"assign_ipv4": True}}, "ipam.assign_ipv4"),  # Calico spells it as a string
    ({**BASE, "ipam": {"ipv4_pools": ["  "]}}, "ipam.ipv4_pools"),
    ({**BASE, "ipam": {"ipv6_pools": "fd00::/48"}}, "ipam.ipv6_pools"),
    ({**BASE, "ipam": "calico-ipam"}, "ipam"),
    ({**BASE, "datastore_type": "kubernetes"}, "datastore_type"),
    ({**BASE, "log_level": "verbose"}, "log_level"),
    ({**BASE, "log_level": 3}, "log_level"),
    ({"cniVersion": "1.0.0", "type": "calico"}, "name"),
    ({**BASE, "prevResult": "x"}, "prevResult"),
])
def test_parse_netconf_errors_are_code_7_naming_the_field(config, field):
    with pytest.raises(CniError) as info:
        parse_netconf(config)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert info.value.msg.startswith(f"invalid network configuration: {field}: ")


def test_parse_netconf_error_messages_explain():
    with pytest.raises(CniError) as info:
        parse_netconf({**BASE, "ipam": {"assign_ipv4": "yes"}})
    assert 'must be "true" or "false"' in info.value.msg
    with pytest.raises(CniError) as info:
        parse_netconf({**BASE, "datastore_type": "kubernetes"})
    assert "'kubernetes' is not supported" in info.value.msg
    with pytest.raises(CniError) as info:
        parse_netconf({**BASE, "log_level": "verbose"})
    assert "unknown log_level 'verbose'" in info.value.msg


@pytest.mark.parametrize("level", ["debug", "INFO", "warning", "warn", "error", "critical", "fatal", "panic"])
def test_parse_netconf_known_log_levels(level):
    assert parse_netconf({**BASE, "log_level": level}).log_level == level


# ---------------------------------------------------------------- IpamConf

@pytest.mark.parametrize("ipam, v4, v6", [
    ({}, True, False),
    ({"assign_ipv4": "true"}, True, False),
    ({"assign_ipv4": "false"}, False, False),
    ({"assign_ipv4": "False", "assign_ipv6": "True"}, False, True),
    ({"assign_ipv6": "true"}, True, True),
    ({"assign_ipv6": "false"}, True, False),
    ({"assign_ipv4": None, "assign_ipv6": None}, True, False),
])
def test_ipam_conf_wants(ipam, v4, v6):
    conf = IpamConf.model_validate(ipam)
    assert conf.wants_ipv4() is v4
    assert conf.wants_ipv6() is v6
    assert NetConf.model_validate({**BASE, "ipam": ipam}).ipam.wants_ipv4() is v4


def test_labels_from_the_cni_args_convention():
    from cni_calico.cni.types import CalicoNetConf

    conf = parse_netconf({"name": "n", "args": {"cni": {"labels": [
        {"key": "app", "value": "web"}, {"key": "example.com/tier", "value": "front-1"}, {"key": "flag"}]},
        "other": {"ignored": True}}}, CalicoNetConf)
    assert conf.labels() == {"app": "web", "example.com/tier": "front-1", "flag": ""}
    assert parse_netconf({"name": "n"}, CalicoNetConf).labels() == {}


@pytest.mark.parametrize("label", [{"key": "", "value": "x"}, {"key": "has space", "value": "x"},
                                   {"key": "app", "value": "it's"}, {"key": "UPPER.com/x", "value": "x"},
                                   {"key": "a" * 64, "value": "x"}, {"value": "x"}])
def test_bad_labels_are_config_errors(label):
    from cni_calico.cni.types import CalicoNetConf

    with pytest.raises(CniError) as info:
        parse_netconf({"name": "n", "args": {"cni": {"labels": [label]}}}, CalicoNetConf)
    assert info.value.code == INVALID_NETWORK_CONFIG and "args.cni.labels.0" in info.value.msg


@pytest.mark.parametrize("key", ["a..b/x", "-a/x", "a/", "x" * 64, "a/b/c"])
def test_args_labels_use_calicos_one_label_rule(key: str) -> None:
    from cni_calico.model import labels

    assert labels.key_problem(key) is not None
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "calico",
            "args": {"cni": {"labels": [{"key": key, "value": "v"}]}}}
    with pytest.raises(CniError) as failure:
        parse_netconf(conf, CalicoNetConf)
    assert failure.value.code == 7
