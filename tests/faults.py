"""Fault injection for tests only: the calico plugin (or a calico-node serving it) with a
dataplane and a datastore that fail, or hang, at a named step of ADD. Nothing here ships: the
executables never read these variables.

    python tests/faults.py calico        # a standalone plugin, as packaging/calico.py
    python tests/faults.py calico-node   # calico-node, whose fast path serves the faulty plugin

A call's environment names the step: CNI_CALICO_TEST_FAIL_AT=<step> fails there with CNI error
108 "injected failure at <step>"; CNI_CALICO_TEST_HANG_AT=<step>:<marker file> creates the marker
and hangs there until killed. Steps, in ADD's order:
    ipam      IPAM's first read (the veth pair is being made meanwhile)
    wire      before the veth pair is made (IPAM is in flight)
    veth      after the pair is made
    sysctl    before the pair is configured (the endpoint is being written meanwhile)
    route     after the pair is configured
    endpoint  the endpoint's write
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cni_calico import ipam as calico_ipam
from cni_calico import plugin
from cni_calico.cni.dataplane import LinuxDataplane, Pair, Wiring
from cni_calico.cni.skel import CmdArgs
from cni_calico.datastore import Datastore, KeyValue
from cni_calico.errors import DATAPLANE_FAILURE, CniError

FAIL_AT = "CNI_CALICO_TEST_FAIL_AT"
HANG_AT = "CNI_CALICO_TEST_HANG_AT"


class Faults:
    """The steps one call asked to fail or hang at."""

    def __init__(self, env: Mapping[str, str], release: threading.Event | None = None) -> None:
        self.fail_at = env.get(FAIL_AT, "")
        self.hang_at, _, self.marker = env.get(HANG_AT, "").partition(":")
        self.release = release  # in process: the hang ends (with a failure) when this is set

    def at(self, step: str) -> None:
        if self.fail_at == step:
            raise CniError(DATAPLANE_FAILURE, f"injected failure at {step}")
        if self.hang_at == step:
            Path(self.marker).touch()
            if self.release is None:
                time.sleep(600)  # until killed
            self.release.wait(60)
            raise CniError(DATAPLANE_FAILURE, f"injected failure after hanging at {step}")


class FaultyWiring(Wiring):
    faults: Faults

    def create(self, mtu: int) -> Pair:
        self.faults.at("wire")
        pair = super().create(mtu)
        self.faults.at("veth")
        return pair

    def configure(self, pair: Pair, addresses: list[Any], allow_ip_forwarding: bool) -> None:
        self.faults.at("sysctl")
        super().configure(pair, addresses, allow_ip_forwarding)
        self.faults.at("route")


class FaultyDataplane(LinuxDataplane):
    def __init__(self, faults: Faults, host_netns: str | None = None) -> None:
        super().__init__(host_netns)
        self.faults = faults

    @contextlib.contextmanager
    def wiring(self, container_netns: str, host_ifname: str, ifname: str) -> Iterator[Wiring]:
        with super().wiring(container_netns, host_ifname, ifname) as wiring:
            wiring.__class__ = FaultyWiring
            assert isinstance(wiring, FaultyWiring)
            wiring.faults = self.faults
            yield wiring


class FaultyStore(Datastore):
    """Another store whose first batched read is the `ipam` step and whose endpoint write is the
    `endpoint` step."""

    def __init__(self, inner: Datastore, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    def get(self, key: str) -> KeyValue | None:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[KeyValue]:
        return self.inner.list(prefix)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        self.faults.at("ipam")
        return self.inner.read_many(wanted, prefixes)

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        if any("/workloadendpoints/" in key for key in (put or {})):
            self.faults.at("endpoint")
        return self.inner.txn(expect, put, delete)

    def close(self) -> None:
        self.inner.close()


RealCalicoPlugin = plugin.CalicoPlugin  # kept: calico-node's copy of the name is replaced below


class FaultyCalicoPlugin(RealCalicoPlugin):
    """The real plugin, with each call's faults read from its environment."""

    def __init__(self, datastore_factory: Any = calico_ipam.datastore_from_conf, **more: Any) -> None:
        super().__init__(datastore_factory, **more)
        self._factory = datastore_factory
        self._more = more  # what calico-node gives its plugin besides the store (its API clients)

    def add(self, args: CmdArgs) -> dict[str, Any]:
        faults = Faults(args.env)
        call = RealCalicoPlugin(lambda conf, env: FaultyStore(self._factory(conf, env), faults),
                                FaultyDataplane(faults, self.dataplane.host_netns), **self._more)
        return call.add(args)


def main() -> None:
    which = sys.argv.pop(1)
    if which == "calico":
        from cni_calico.cni import skel

        skel.main(FaultyCalicoPlugin)
    elif which == "calico-node":
        vars(plugin)["CalicoPlugin"] = FaultyCalicoPlugin  # what its fast path serves
        from cni_calico.node.main import main as node_main

        node_main()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} calico|calico-node")


if __name__ == "__main__":
    main()
