"""Shared fixtures. Tiers: unit (no marker), `etcd` (a real etcd started here), `root` (namespaces)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_calico.datastore import EtcdDatastore, MemoryDatastore
from cni_calico.lab import binaries
from cni_calico.lab.etcd import PrivateEtcd

REPO = Path(__file__).resolve().parent.parent


def pytest_runtest_setup(item: pytest.Item) -> None:
    """What a tier needs is checked per selected test, not at module import: `pytest -m "not root"`
    runs the rest as any user, and a selected test whose need is missing fails saying which."""
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.fail("needs root (network namespaces); deselect with -m 'not root'", pytrace=False)
    if item.get_closest_marker("bird") and not shutil.which("bird"):
        pytest.fail("needs BIRD 2 (Debian package bird2); deselect with -m 'not bird'", pytrace=False)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[PrivateEtcd]:
    server = PrivateEtcd()
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"cannot start a private etcd: {exc}")
    try:
        yield server
    finally:
        server.stop()


def wipe(ds: EtcdDatastore, prefix: str = "/") -> None:
    for kv in ds.list(prefix):
        ds.delete(kv.key, kv.mod_revision)


def running(etcd_server: PrivateEtcd) -> PrivateEtcd:
    """The private etcd, started again when a test stopped it."""
    if not etcd_server.healthy():
        etcd_server.kill()
        etcd_server.start()
    return etcd_server


@pytest.fixture
def etcd(etcd_server: PrivateEtcd) -> Iterator[str]:
    """The endpoint of a running private etcd, empty at the start of the test."""
    with EtcdDatastore(running(etcd_server).endpoint) as ds:
        wipe(ds)
    yield etcd_server.endpoint


@contextmanager
def pooled_cluster(etcd_server: PrivateEtcd, pool: str, cidr: str, hosts: int, **pool_spec: Any
                   ) -> Iterator[tuple[Any, EtcdDatastore]]:
    """For a module's tests: an empty etcd with one pool (blocks of /28 unless said), `hosts`
    simulated hosts with their agents running; everything removed afterwards, even on failure."""
    from cni_calico.lab import admin
    from cni_calico.lab.cluster import Cluster

    with EtcdDatastore(running(etcd_server).endpoint) as ds:
        wipe(ds)
        admin.create_pool(ds, pool, cidr, **{"blockSize": 28, **pool_spec})
        try:
            with Cluster(etcd_server.port, hosts=hosts) as cluster:
                cluster.start_agents()
                yield cluster, ds
        finally:
            wipe(ds)


@pytest.fixture
def etcd_store(etcd: str) -> Iterator[EtcdDatastore]:
    with EtcdDatastore(etcd) as ds:
        yield ds


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The same contract, run on the in-memory store and on real etcd."""
    if request.param == "memory":
        yield MemoryDatastore()
    else:
        yield request.getfixturevalue("etcd_store")


@pytest.fixture(params=["standalone", "fast-path"])
def lab(request: pytest.FixtureRequest, etcd_server: PrivateEtcd, etcd: str, etcd_store: EtcdDatastore
        ) -> Iterator[Any]:
    """A simulated host with pool 10.100.0.0/16; a test using it runs twice: the plugin doing the
    work itself, and handing it to calico-node."""
    from cni_calico.lab.admin import create_pool

    from .netlab import Lab

    create_pool(etcd_store, "p1", "10.100.0.0/16")
    lab = Lab(etcd_server.port, fast_path=request.param == "fast-path")
    try:
        yield lab.start()
    finally:
        lab.stop()


def run_cni(plugin: str, command: str, config: dict[str, Any] | str | bytes, *, container_id: str = "c1",
            netns: str = "/var/run/netns/none", ifname: str = "eth0", args: str = "",
            extra_env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict[str, Any] | None, str]:
    """Exec a plugin the way a runtime does, in this namespace (no netns work); returns (exit
    status, decoded stdout or None, stderr). An `extra_env` value None removes the variable."""
    from cni_calico.lab.hosts import clean_env, exec_cni

    env = {**clean_env(("CNI_", "ETCD_")), **(extra_env or {})}
    cni_env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
               "CNI_ARGS": args, "CNI_PATH": "/usr/lib/cni"}
    cni_env = {k: v for k, v in cni_env.items() if (extra_env or {}).get(k, "") is not None}
    outcome = exec_cni(binaries.command(plugin), cni_env, config,
                       env={k: v for k, v in env.items() if v is not None}, timeout=timeout)
    return outcome.status, outcome.result, outcome.stderr
