"""Where the plugins' etcd connection comes from, resolved once, and said in every error."""

from __future__ import annotations

import pytest

from cni_calico.datastore import DEFAULT_ENDPOINT, EtcdSettings

from .conftest import REPO, run_cni


def test_the_config_wins_then_the_environment_then_the_default() -> None:
    env = {"ETCD_ENDPOINTS": "http://10.0.0.1:2379", "ETCD_CA_CERT_FILE": "/env/ca.pem"}
    from_config = EtcdSettings.resolve("http://10.0.0.2:2379", None, None, "/conf/ca.pem", env)
    assert (from_config.endpoints, from_config.ca_file, from_config.source) == \
        ("http://10.0.0.2:2379", "/conf/ca.pem", "etcd_endpoints")
    from_env = EtcdSettings.resolve(None, None, None, None, env)
    assert (from_env.endpoints, from_env.ca_file, from_env.source) == \
        ("http://10.0.0.1:2379", "/env/ca.pem", "ETCD_ENDPOINTS")
    default = EtcdSettings.resolve(None, None, None, None, {})
    assert default.endpoints == DEFAULT_ENDPOINT and "default" in default.source


def test_settings_are_equal_exactly_when_they_open_the_same_connection() -> None:
    a = EtcdSettings.resolve(None, None, None, None, {"ETCD_ENDPOINTS": "http://h:1", "ETCD_KEY_FILE": "/k"})
    b = EtcdSettings.resolve("http://h:1", "/k", None, None, {})
    assert a == b and hash(a) == hash(b)  # the source differs, the connection does not
    assert a != EtcdSettings.resolve("http://h:1", "/k", None, "/ca", {})


def test_the_example_config_leaves_the_endpoints_to_the_environment() -> None:
    import json

    conf = json.loads((REPO / "examples" / "10-calico.conf").read_text())
    assert "etcd_endpoints" not in conf  # else it would override ETCD_ENDPOINTS


CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "calico", "ipam": {"type": "calico-ipam"},
        "nodename": "n1", "ipam_lock_file": "", "fast_path": "off"}


@pytest.mark.parametrize("conf_extra, env, source", [
    ({}, {"ETCD_ENDPOINTS": "http://127.0.0.1:1"}, "(endpoints from ETCD_ENDPOINTS)"),
    ({"etcd_endpoints": "http://127.0.0.1:1"}, {"ETCD_ENDPOINTS": "http://127.0.0.1:9"},
     "(endpoints from etcd_endpoints)"),
])
def test_an_unreachable_etcd_error_says_where_the_endpoint_came_from(conf_extra: dict[str, str],
                                                                     env: dict[str, str], source: str) -> None:
    status, out, err = run_cni("calico-ipam", "ADD", {**CONF, **conf_extra}, extra_env=env)
    assert status == 1 and out is not None and out["code"] == 11, (out, err)
    assert "http://127.0.0.1:1" in out["msg"] and out["msg"].endswith(source), out["msg"]
    assert "Traceback" not in err
