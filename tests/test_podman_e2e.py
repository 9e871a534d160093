"""A real runtime on our plugins: podman (CNI backend) runs a container on `calico` -> `portmap` -> `tuning`.

Podman runs inside the simulated host network namespace of a Lab (nsenter --net), so the plugins it execs
run there and reach etcd through the relay. Its whole configuration (storage, engine, CNI dirs) is private
to a temp dir: nothing under /etc/containers or ~/.config is read or written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import netaddr
import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import binaries
from cni_calico.lab.admin import create_pool
from cni_calico.lab.etcd import PrivateEtcd
from cni_calico.model import keys

from .netlab import BASE_LINKS, NETNS_DIR, Lab

pytestmark = [pytest.mark.root, pytest.mark.etcd]


NETWORK = "calico-e2e"
POOL = netaddr.IPNetwork("10.100.0.0/16")
DEBIAN_CNI = Path("/usr/lib/cni")
BUSYBOX_APPLETS = ["sh", "sleep", "ip", "ifconfig", "cat", "hostname", "ping"]


def _missing() -> list[str]:
    need = [shutil.which("podman"), shutil.which("runc"), shutil.which("iptables"), shutil.which("nsenter")]
    need += [str(DEBIAN_CNI / p) if (DEBIAN_CNI / p).exists() else None for p in ("portmap", "tuning", "loopback")]
    need += [shutil.which("busybox")]
    names = ["podman", "runc", "iptables", "nsenter", "portmap", "tuning", "loopback", "busybox"]
    return [n for n, path in zip(names, need, strict=True) if not path]


class Podman:
    """podman with a private configuration, run inside the simulated host namespace."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root
        for d in ("cni-bin", "cni-conf", "graph", "run", "static", "tmp", "volumes", "rootfs"):
            (root / d).mkdir()
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
        (root / "containers.conf").write_text(f"""\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{root}/cni-bin"]
network_config_dir = "{root}/cni-conf"
default_network = "{NETWORK}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
runtime = "runc"
static_dir = "{root}/static"
tmp_dir = "{root}/tmp"
volume_path = "{root}/volumes"
""")
        (root / "registries.conf").write_text('unqualified-search-registries = []\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "ETCD_", "CONTAINERS_"))}
        self.env.update(CONTAINERS_CONF=str(root / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(root / "storage.conf"),
                        CONTAINERS_REGISTRIES_CONF=str(root / "registries.conf"))

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # nsenter, not `ip netns exec`: the latter remounts /sys in a private mount namespace, which hides
        # the cgroup mounts runc needs and the container netns podman bind-mounts under /run/netns.
        proc = subprocess.run(["nsenter", f"--net={NETNS_DIR}/{self.lab.host}", "podman", *args],
                              capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def install_plugins(self) -> None:
        binaries.bin_dir(self.root / "cni-bin")  # our plugins (frozen under `make test`)
        for name in ("portmap", "tuning", "loopback"):
            (self.root / "cni-bin" / name).symlink_to(DEBIAN_CNI / name)

    def write_network(self, calico: dict[str, Any]) -> None:
        conf = {k: v for k, v in calico.items() if k not in ("cniVersion", "name")}
        conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
            {**conf, "type": "calico"},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}},
        ]}
        (self.root / "cni-conf" / f"{NETWORK}.conflist").write_text(json.dumps(conflist, indent=2))

    def busybox_rootfs(self) -> Path:
        """A rootfs of static busybox, run with --rootfs: no image import (which would write containers/image's
        blob cache under /var/lib/containers)."""
        rootfs = self.root / "rootfs"
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            (rootfs / d).mkdir()
        shutil.copy2(os.path.realpath(shutil.which("busybox") or "/bin/busybox"), rootfs / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        return rootfs


@pytest.fixture(params=["standalone", "fast-path"])
def lab(request: pytest.FixtureRequest, etcd_server: PrivateEtcd, etcd: str, etcd_store: EtcdDatastore
        ) -> Iterator[Lab]:
    """Podman execs our plugin both ways: doing the work itself, and handing it to calico-node."""
    create_pool(etcd_store, "p1", str(POOL))
    lab = Lab(etcd_server.port, fast_path=request.param == "fast-path")
    try:
        yield lab.start()
    finally:
        lab.stop()


@pytest.fixture
def podman(lab: Lab) -> Iterator[Podman]:
    missing = _missing()
    if missing:
        pytest.fail(f"missing for the podman test: {missing} "
                    "(apt-get install -y podman runc busybox-static containernetworking-plugins iptables)")
    root = Path(tempfile.mkdtemp(prefix=f"{lab.prefix}-podman-"))
    try:
        pm = Podman(lab, root)
        pm.install_plugins()
        pm.write_network(lab.conf())
        yield pm
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_podman_runs_a_container_on_calico_portmap_tuning(lab: Lab, podman: Podman,
                                                         etcd_store: EtcdDatastore) -> None:
    assert "version" in podman("--version").stdout
    info = json.loads(podman("info", "--format", "json").stdout)
    assert info["host"]["networkBackend"] == "cni"
    assert info["store"]["graphDriverName"] == "vfs"
    rootfs = podman.busybox_rootfs()

    name = f"{lab.prefix}-web"
    try:
        podman("run", "-d", "--name", name, "--network", NETWORK, "-p", "18080:80", "--rootfs", str(rootfs),
               "sleep", "300")
        inspect = json.loads(podman("inspect", name).stdout)[0]
        cid = inspect["Id"]
        ip = inspect["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        assert netaddr.IPAddress(ip) in POOL, inspect["NetworkSettings"]

        # Our IPAM holds the address under a handle; the endpoint is a plain CNI workload
        # (podman passes K8S_POD_NAME without K8S_POD_NAMESPACE).
        handles = etcd_store.list(keys.HANDLE_PREFIX)
        assert len(handles) == 1 and cid in handles[0].key, [h.key for h in handles]
        weps = etcd_store.list(keys.resource_prefix("workloadendpoints"))
        assert len(weps) == 1, [w.key for w in weps]
        wep = json.loads(weps[0].value)
        assert wep["spec"]["orchestrator"] == "cni" and wep["spec"]["containerID"] == cid
        assert wep["spec"]["ipNetworks"] == [f"{ip}/32"]

        # Host side: a /32 route to a cali* veth inside the simulated host.
        veth = wep["spec"]["interfaceName"]
        assert veth.startswith("cali") and veth in lab.host_links()
        assert f"{ip} dev {veth} scope link" in lab.host_routes()

        # Container side: the address on eth0, default via 169.254.1.1.
        addr = podman("exec", name, "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert f"inet {ip}/32" in addr
        routes = podman("exec", name, "ip", "route").stdout
        assert "default via 169.254.1.1 dev eth0" in routes

        # tuning ran after calico, in the container's namespace.
        assert podman("exec", name, "cat", "/proc/sys/net/core/somaxconn").stdout.strip() == "512"

        # portmap ran (in the simulated host): its DNAT chain names the container's address.
        nat = lab.in_host("iptables", "-t", "nat", "-S").stdout
        assert "CNI-HOSTPORT-DNAT" in nat and f"{ip}:80" in nat, nat

        # Real packets: the container reaches the host's uplink address through the cali veth.
        ping = podman("exec", name, "ping", "-c", "1", "-W", "2", "192.0.2.1", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr

        podman("rm", "-f", "-t", "0", name)
        assert etcd_store.list(keys.HANDLE_PREFIX) == []
        assert etcd_store.list(keys.resource_prefix("workloadendpoints")) == []
        assert lab.host_links() == BASE_LINKS
        assert ip not in lab.host_routes()
        assert f"{ip}:80" not in lab.in_host("iptables", "-t", "nat", "-S").stdout
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
