"""The calico plugin driven in process, as containernetworking's ptp tests run cmdAdd: the real
handlers through skel.run with the environment as a dict, an in-memory datastore, and the real
dataplane acting in a throwaway host namespace (never this machine's). A dataplane that fails or
hangs at each step shows what the undo leaves: nothing."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_calico.cni import skel
from cni_calico.cni.dataplane import LinuxDataplane
from cni_calico.datastore import Lent, MemoryDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.lab.hosts import NETNS_DIR, Namespaces, sh
from cni_calico.model import keys
from cni_calico.plugin import CalicoPlugin

from .faults import Faults, FaultyDataplane, FaultyStore

pytestmark = pytest.mark.root

CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "calico", "nodename": "host1", "ipam_lock_file": "",
        "ipam": {"type": "calico-ipam"}}


class Host:
    """A throwaway host namespace (an uplink and a default route) and pod namespaces."""

    def __init__(self) -> None:
        self.spaces = Namespaces()
        self.name = self.spaces.add("host")
        self.path = f"{NETNS_DIR}/{self.name}"
        for cmd in (["link", "add", "uplink", "type", "veth", "peer", "name", "peer"],
                    ["link", "set", "uplink", "up"], ["route", "add", "default", "dev", "uplink"]):
            sh("ip", "-n", self.name, *cmd)

    def netns(self, name: str) -> str:
        return f"{NETNS_DIR}/{self.spaces.add(name)}"

    def links(self) -> list[str]:
        out = sh("ip", "-n", self.name, "-o", "link", "show").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())

    def routes(self) -> str:
        return sh("ip", "-n", self.name, "route", "show").stdout

    def remove(self) -> None:
        self.spaces.remove_all()


BASE = ["lo", "peer", "uplink"]


@pytest.fixture
def host() -> Iterator[Host]:
    made = Host()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def store() -> MemoryDatastore:
    memory = MemoryDatastore()
    create_pool(memory, "p1", "10.100.0.0/16")
    return memory


def call(plugin: CalicoPlugin, command: str, netns: str, conf: dict[str, Any] | None = None,
         container_id: str = "cid-1") -> tuple[int, dict[str, Any] | None]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
    out = io.StringIO()
    status = skel.run(lambda: plugin, env, io.BytesIO(json.dumps(conf or CONF).encode()), out)
    return status, json.loads(out.getvalue()) if out.getvalue() else None


def leftovers(store: MemoryDatastore, host: Host) -> list[str]:
    found = [kv.key for kv in store.list(keys.HANDLE_PREFIX)]
    found += [kv.key for kv in store.list(keys.resource_prefix("workloadendpoints"))]
    return found + [link for link in host.links() if link not in BASE]


def test_add_check_del_in_process(host: Host, store: MemoryDatastore) -> None:
    plugin = CalicoPlugin(lambda conf, env: Lent(store), LinuxDataplane(host.path))
    pod = host.netns("pod")
    status, result = call(plugin, "ADD", pod)
    assert status == 0 and result is not None, result
    address = result["ips"][0]["address"].split("/")[0]
    veth = result["interfaces"][0]["name"]
    assert f"{address} dev {veth} scope link" in host.routes()
    assert [kv.key.rsplit("/", 1)[1] for kv in store.list(keys.HANDLE_PREFIX)] == ["net1.cid-1"]
    assert call(plugin, "CHECK", pod, {**CONF, "prevResult": result}) == (0, None)
    assert call(plugin, "DEL", pod) == (0, None)
    assert leftovers(store, host) == []


@pytest.mark.parametrize("step", ["ipam", "wire", "veth", "sysctl", "route", "endpoint"])
def test_a_dataplane_or_store_failing_at_each_step_leaves_nothing(host: Host, store: MemoryDatastore,
                                                                  step: str) -> None:
    faults = Faults({"CNI_CALICO_TEST_FAIL_AT": step})
    plugin = CalicoPlugin(lambda conf, env: FaultyStore(Lent(store), faults), FaultyDataplane(faults, host.path))
    status, out = call(plugin, "ADD", host.netns("pod"))
    assert status == 1 and out is not None and out["msg"] == f"injected failure at {step}"
    assert leftovers(store, host) == []


def test_a_hanging_dataplane_holds_the_attachment_until_it_fails_then_leaves_nothing(
        host: Host, store: MemoryDatastore, tmp_path: Path) -> None:
    release = threading.Event()
    marker = tmp_path / "hanging"
    faults = Faults({"CNI_CALICO_TEST_HANG_AT": f"sysctl:{marker}"}, release=release)
    plugin = CalicoPlugin(lambda conf, env: FaultyStore(Lent(store), faults), FaultyDataplane(faults, host.path))
    answer: list[tuple[int, dict[str, Any] | None]] = []
    adding = threading.Thread(target=lambda: answer.append(call(plugin, "ADD", host.netns("pod"))))
    adding.start()
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the ADD never reached the dataplane's configuration"
            time.sleep(0.02)
        # Mid-ADD: IPAM has its address, the veth pair exists, the endpoint (written meanwhile)
        # too; all of it is undone once the dataplane fails.
        held = leftovers(store, host)
        assert [kv.key.rsplit("/", 1)[1] for kv in store.list(keys.HANDLE_PREFIX)] == ["net1.cid-1"]
        assert len(held) == 3 and any("/workloadendpoints/" in key for key in held), held
    finally:
        release.set()
        adding.join(60)
    assert answer and answer[0][0] == 1
    assert answer[0][1] is not None and "after hanging at sysctl" in answer[0][1]["msg"]
    assert leftovers(store, host) == []
