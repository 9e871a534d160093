"""The CNI fast path's own promises: who serves, what happens when nobody does, and that an
accepted call is never run a second time in-process."""

from __future__ import annotations

import os
import re
import stat
import time
from typing import Any, Iterator

import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.lab.etcd import PrivateEtcd

from .netlab import Lab

pytestmark = [pytest.mark.root, pytest.mark.etcd]


@pytest.fixture
def lab(etcd_server: PrivateEtcd, etcd: str, etcd_store: EtcdDatastore) -> Iterator[Lab]:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    lab = Lab(etcd_server.port, fast_path=True)
    try:
        yield lab.start()
    finally:
        lab.stop()


def served_calls(lab: Lab) -> int:
    """The calls the agent served: each ends with one summary line in its log."""
    with open(f"{lab.workdir}/agent.log") as log:
        return sum(1 for line in log
                   if re.search(r" cni_calico\.cni\.skel \d+: calico [A-Z]+ (finished|failed) in ", line))


def test_socket_is_root_only(lab: Lab) -> None:
    mode = os.stat(lab.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_auto_uses_the_agent_and_falls_back_when_it_is_gone(lab: Lab) -> None:
    conf: dict[str, Any] = {**lab.conf(), "fast_path": "auto"}
    status, out, err = lab.cni("ADD", conf, container_id="c1", netns=lab.pod("p1"))
    assert status == 0, (out, err)
    assert served_calls(lab) == 1
    assert lab.agent is not None
    lab.agent.terminate()
    lab.agent.wait(timeout=15)
    assert not os.path.exists(lab.socket)  # removed on the way out
    status, out, err = lab.cni("ADD", conf, container_id="c2", netns=lab.pod("p2"))
    assert status == 0, (out, err)  # done in-process
    assert served_calls(lab) == 1
    assert lab.cni("DEL", conf, container_id="c1", netns=f"/var/run/netns/{lab.prefix}-p1")[0] == 0


def test_only_without_an_agent_is_error_11(lab: Lab) -> None:
    conf = {**lab.conf(), "fast_path_socket": f"{lab.workdir}/nobody.sock"}
    status, out, _ = lab.cni("ADD", conf, container_id="c1", netns=lab.pod("p1"))
    assert status == 1 and out is not None and out["code"] == 11
    assert "not served" in out["msg"] and out["cniVersion"] == conf["cniVersion"]


def test_an_accepted_call_that_times_out_is_error_11_and_not_run_again(etcd_server: PrivateEtcd, etcd: str,
                                                                      etcd_store: EtcdDatastore, tmp_path: Any) -> None:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    lab = Lab(etcd_server.port, fast_path=True, faulty=True)  # its calico-node hangs where asked
    lab.start()
    try:
        _times_out_once(lab, tmp_path)
    finally:
        lab.stop()


def _times_out_once(lab: Lab, tmp_path: Any) -> None:
    marker = tmp_path / "reached-ipam"
    conf = {**lab.conf(), "fast_path": "auto", "fast_path_timeout": 2}
    started = time.monotonic()
    status, out, _ = lab.cni("ADD", conf, container_id="slow", netns=lab.pod("slow"),
                             env={"CNI_CALICO_TEST_HANG_AT": f"ipam:{marker}"})
    took = time.monotonic() - started
    assert marker.exists()  # the agent took the call and is stuck in it
    assert status == 1 and out is not None and out["code"] == 11 and "did not answer" in out["msg"]
    assert out["cniVersion"] == conf["cniVersion"]
    assert took < 30  # an in-process second attempt would have hung at the same step for minutes


def test_serving_many_calls_keeps_the_agents_descriptors_flat(lab: Lab) -> None:
    """Each worker keeps one netlink socket; nothing is left behind per call (pyroute2 opens a
    socket and an event loop for every thread that uses an IPRoute, so sharing one across the
    calls' threads once leaked two descriptors per call)."""
    assert lab.agent is not None
    fds = f"/proc/{lab.agent.pid}/fd"  # `ip netns exec` execs calico-node: the same process

    def cycles(start: int, count: int) -> None:
        for n in range(start, start + count):
            netns = lab.pod(f"fd{n}")
            assert lab.cni("ADD", lab.conf(), container_id=f"fd{n}", netns=netns)[0] == 0
            assert lab.cni("DEL", lab.conf(), container_id=f"fd{n}", netns=netns)[0] == 0

    cycles(0, 5)  # warm: the workers and their sockets exist now
    before = len(os.listdir(fds))
    cycles(5, 20)
    assert len(os.listdir(fds)) - before <= 8, "descriptors grew with the calls"


def test_pooled_connections_are_keyed_on_everything_that_opens_them(tmp_path: Any) -> None:
    """Two calls differing only in the ETCD_* TLS variables must not share a connection."""
    from cni_calico.cni.types import CalicoNetConf, parse_netconf
    from cni_calico.node.cni_server import DatastorePool

    ca_a, ca_b = tmp_path / "ca-a.pem", tmp_path / "ca-b.pem"
    ca_a.write_text("a")
    ca_b.write_text("b")
    conf = parse_netconf({"cniVersion": "1.0.0", "name": "n", "type": "calico",
                          "etcd_endpoints": "https://127.0.0.1:1"}, CalicoNetConf)
    pool = DatastorePool()
    try:
        first = pool.factory(conf, {"ETCD_CA_CERT_FILE": str(ca_a)})
        again = pool.factory(conf, {"ETCD_CA_CERT_FILE": str(ca_a)})
        other = pool.factory(conf, {"ETCD_CA_CERT_FILE": str(ca_b)})
        assert first.owner is again.owner
        assert other.owner is not first.owner
        assert other.owner._tls == (None, None, str(ca_b))
    finally:
        pool.close()
