"""calico-ipam, exec'd like a runtime does, against a real etcd: bad input is a clean CNI error that writes nothing.

Each bad input must give exit status 1, exactly one JSON error object on stdout with the expected
code and a message, no traceback on stderr, and leave every key under /calico untouched.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Iterator

import netaddr
import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.errors import (
    ADDRESS_OUTSIDE_POOLS,
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    NO_POOLS,
    NOT_AVAILABLE,
    POOL_EXHAUSTED,
    TRY_AGAIN_LATER,
    UNKNOWN_POOL,
)
from cni_calico.lab.admin import create_pool, delete_pool
from cni_calico.lab.etcd import free_port
from cni_calico.model import keys

from .conftest import run_cni

pytestmark = pytest.mark.etcd

POOL_CIDR = netaddr.IPNetwork("10.10.0.0/16")
ERROR_KEYS = {"cniVersion", "code", "msg", "details"}


def base_config(etcd: str, version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": version, "name": "net1", "type": "calico-ipam", "etcd_endpoints": etcd,
            "nodename": "n1", "ipam_lock_file": "", "ipam": {"type": "calico-ipam"}}


def snapshot(ds: EtcdDatastore) -> dict[str, tuple[int, str]]:
    return {kv.key: (kv.mod_revision, kv.value) for kv in ds.list("/calico")}


def ipam_keys(ds: EtcdDatastore) -> list[str]:
    return [kv.key for kv in ds.list(keys.IPAM)]


@pytest.fixture
def pooled(etcd_store: EtcdDatastore) -> Iterator[EtcdDatastore]:
    """The private etcd with pool p1 (10.10.0.0/16) and nothing else."""
    create_pool(etcd_store, "p1", str(POOL_CIDR))
    yield etcd_store


def _unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _with(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(conf: dict[str, Any]) -> dict[str, Any]:
        conf = copy.deepcopy(conf)
        for path, value in changes.items():
            target = conf
            *parents, last = path.split("__")
            for p in parents:
                target = target[p]
            target[last] = value
        return conf
    return edit


def _no_pool(ds: EtcdDatastore) -> None:
    delete_pool(ds, "p1")


def _unreachable_endpoint(conf: dict[str, Any]) -> dict[str, Any]:
    return {**conf, "etcd_endpoints": _unreachable()}


# id: (config edit -> config or raw stdin, extra env, CNI_ARGS, datastore setup, expected code)
BAD_INPUTS: dict[str, tuple[Callable[[dict[str, Any]], Any], dict[str, Any], str,
                            Callable[[EtcdDatastore], None] | None, int]] = {
    "malformed-json": (lambda c: json.dumps(c)[:-7] + "}{", {}, "", None, DECODING_FAILURE),
    "empty-stdin": (lambda c: "", {}, "", None, DECODING_FAILURE),
    "json-not-an-object": (lambda c: json.dumps([c]), {}, "", None, DECODING_FAILURE),
    "missing-CNI_COMMAND": (lambda c: c, {"CNI_COMMAND": None}, "", None, INVALID_ENVIRONMENT),
    "missing-CNI_CONTAINERID": (lambda c: c, {"CNI_CONTAINERID": None}, "", None, INVALID_ENVIRONMENT),
    "missing-CNI_NETNS": (lambda c: c, {"CNI_NETNS": None}, "", None, INVALID_ENVIRONMENT),
    "unknown-cniVersion": (_with(cniVersion="9.9.9"), {}, "", None, INCOMPATIBLE_VERSION),
    "bad-pool-cidr": (_with(ipam__ipv4_pools=["10.0.0.0/99"]), {}, "", None, INVALID_NETWORK_CONFIG),
    "unknown-pool": (_with(ipam__ipv4_pools=["10.99.0.0/16"]), {}, "", None, UNKNOWN_POOL),
    "unknown-pool-name": (_with(ipam__ipv4_pools=["nope"]), {}, "", None, UNKNOWN_POOL),
    "assign_ipv4-maybe": (_with(ipam__assign_ipv4="maybe"), {}, "", None, INVALID_NETWORK_CONFIG),
    "etcd-endpoint-ftp": (_with(etcd_endpoints="ftp://x"), {}, "", None, INVALID_NETWORK_CONFIG),
    "datastore-kubernetes": (_with(datastore_type="kubernetes"), {}, "", None, INVALID_NETWORK_CONFIG),
    "CNI_ARGS-IP-not-an-ip": (lambda c: c, {}, "IP=not-an-ip", None, INVALID_ENVIRONMENT),
    "CNI_ARGS-IP-outside-pools": (lambda c: c, {}, "IP=192.0.2.1", None, ADDRESS_OUTSIDE_POOLS),
    "no-pool-at-all": (lambda c: c, {}, "", _no_pool, NO_POOLS),
    "etcd-unreachable": (_unreachable_endpoint, {}, "", None, TRY_AGAIN_LATER),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_a_clean_error_and_writes_nothing(case: str, etcd: str, pooled: EtcdDatastore) -> None:
    edit, extra_env, cni_args, setup, code = BAD_INPUTS[case]
    if setup:
        setup(pooled)
    before = snapshot(pooled)
    ipam_before = ipam_keys(pooled)

    status, out, err = run_cni("calico-ipam", "ADD", edit(base_config(etcd)), args=cni_args, extra_env=extra_env)

    assert status == 1, (out, err)
    assert isinstance(out, dict), out  # run_cni decodes stdout as one JSON document
    assert set(out) <= ERROR_KEYS and {"code", "msg"} <= set(out), out
    assert out["code"] == code, out
    assert isinstance(out["msg"], str) and out["msg"].strip(), out
    assert "Traceback" not in err, err
    assert snapshot(pooled) == before
    assert ipam_keys(pooled) == ipam_before == []


def test_unknown_config_keys_are_tolerated(etcd: str, pooled: EtcdDatastore) -> None:
    conf = base_config(etcd)
    conf["someRuntimeKey"] = {"nested": [1, 2, 3]}
    conf["ipam"]["an_unknown_ipam_option"] = True
    conf["ipam"]["subnet"] = "usePodCidr"

    status, out, err = run_cni("calico-ipam", "ADD", conf, container_id="extra1")
    assert status == 0, (out, err)
    assert out is not None and out["cniVersion"] == "1.0.0"
    assert len(out["ips"]) == 1
    address = netaddr.IPNetwork(out["ips"][0]["address"])
    assert address.ip in POOL_CIDR
    assert address.prefixlen == 26
    assert pooled.get(keys.handle("net1.extra1")) is not None

    status, out, err = run_cni("calico-ipam", "DEL", conf, container_id="extra1")
    assert status == 0, (out, err)
    assert out is None
    assert pooled.get(keys.handle("net1.extra1")) is None
    assert not [kv.key for kv in pooled.list(keys.HANDLE_PREFIX)]


# ---------------------------------------------------------------- STATUS (1.1.0)

def _status(conf: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str]:
    # STATUS needs none of the per-container variables.
    return run_cni("calico-ipam", "STATUS", conf,
                   extra_env={"CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None})


def test_status_ok_with_room(etcd: str, pooled: EtcdDatastore) -> None:
    before = snapshot(pooled)
    status, out, err = _status(base_config(etcd, "1.1.0"))
    assert status == 0, (out, err)
    assert out is None
    assert snapshot(pooled) == before  # STATUS only reads


def test_status_50_when_etcd_unreachable(etcd: str, pooled: EtcdDatastore) -> None:
    status, out, err = _status(base_config(_unreachable(), "1.1.0"))
    assert status == 1, (out, err)
    assert out is not None and out["code"] == NOT_AVAILABLE, out
    assert out["msg"]
    assert "Traceback" not in err


def test_status_50_without_any_pool(etcd: str, etcd_store: EtcdDatastore) -> None:
    status, out, err = _status(base_config(etcd, "1.1.0"))
    assert status == 1, (out, err)
    assert out is not None and out["code"] == NOT_AVAILABLE, out


def test_status_follows_a_full_pool(etcd: str, etcd_store: EtcdDatastore) -> None:
    tiny = netaddr.IPNetwork("10.20.0.0/30")
    create_pool(etcd_store, "tiny", str(tiny), blockSize=30)
    conf = base_config(etcd, "1.1.0")
    assert _status(conf)[0] == 0

    got = set()
    for i in range(tiny.size):
        status, out, err = run_cni("calico-ipam", "ADD", conf, container_id=f"fill{i}")
        assert status == 0, (out, err)
        address = netaddr.IPNetwork(out["ips"][0]["address"])
        assert address.ip in tiny and address.prefixlen == 30
        got.add(address.ip)
    assert got == set(tiny)

    status, out, err = run_cni("calico-ipam", "ADD", conf, container_id="one-too-many")
    assert status == 1 and out["code"] == POOL_EXHAUSTED, (out, err)

    status, out, err = _status(conf)
    assert status == 1, (out, err)
    assert out["code"] == NOT_AVAILABLE and out["msg"], out
    assert "Traceback" not in err

    status, out, err = run_cni("calico-ipam", "DEL", conf, container_id="fill1")
    assert status == 0, (out, err)
    status, out, err = _status(conf)
    assert status == 0, (out, err)

    for i in range(tiny.size):
        assert run_cni("calico-ipam", "DEL", conf, container_id=f"fill{i}")[0] == 0
    assert not [kv.key for kv in etcd_store.list(keys.HANDLE_PREFIX)]
