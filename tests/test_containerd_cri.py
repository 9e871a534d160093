"""containerd's CRI on our plugins, driven as kubelet drives it: RunPodSandbox, PodSandboxStatus,
CreateContainer/StartContainer/ExecSync, StopPodSandbox and RemovePodSandbox over gRPC.

A private containerd (tests/containerd.py) runs inside the simulated host of a Lab with the CNI
network the seed deploys for Kubernetes: `calico` + `calico-ipam`, etcd through the lab's relay,
`policy: k8s` and a kubeconfig naming the Kubernetes API stand-in (relayed into the host as etcd
is), so the endpoint gets the labels of the Pod object. containerd passes the pod's identity in
CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID); the plugin runs standalone
or hands the call to the lab's calico-node (fast path), chosen by containerd's environment, which
containerd passes on to the plugins it execs. The sandbox image is built here and imported with
`ctr`: nothing is pulled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import netaddr
import pytest

from cni_calico.allocation.block import AllocationBlock
from cni_calico.cni.identity import Workload, endpoint_name, host_veth_name
from cni_calico.datastore import EtcdDatastore
from cni_calico.lab import binaries
from cni_calico.lab.k8s_api import K8sApiServer
from cni_calico.lab.relay import NetnsRelay
from cni_calico.model import keys

from .containerd import PrivateContainerd, busybox_image, sandbox_info
from .cri import CriClient
from .netlab import BASE_LINKS, NETNS_DIR, Lab

pytestmark = [pytest.mark.root, pytest.mark.etcd]

POOL = netaddr.IPNetwork("10.100.0.0/16")  # the conftest lab's pool
IMAGE = "localhost/cni-calico/busybox:1"  # the sandbox ("pause") image and the container's
NETWORK = "calico-k8s-network"
NAMESPACE, POD = "shop", "web"
NODE = "host1"  # the lab's calico-node's name, which the plugin reads from the file that agent writes
DEBIAN_CNI = Path("/usr/lib/cni")
TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "nsenter", "busybox")


def _missing() -> list[str]:
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    return missing + ([] if (DEBIAN_CNI / "loopback").exists() else [str(DEBIAN_CNI / "loopback")])


def seed_conf(lab: Lab, kubeconfig: Path, nodename_file: Path) -> dict[str, Any]:
    """The seed's /etc/cni/net.d/10-calico.conf, with the lab's etcd and the stand-in's kubeconfig.
    The seed's plugin finds its node in the file calico-node writes (/var/lib/calico/nodename);
    the lab's agent writes its own elsewhere, which `nodename_file` names."""
    return {"name": NETWORK, "cniVersion": "0.1.0", "type": "calico", "etcd_endpoints": lab.etcd,
            "log_level": "info", "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"},
            "kubernetes": {"kubeconfig": str(kubeconfig)}, "nodename_file": str(nodename_file)}


@pytest.fixture
def k8s_api(lab: Lab) -> Iterator[K8sApiServer]:
    with K8sApiServer() as api, NetnsRelay(api.port) as relay:
        relay.expose(f"{NETNS_DIR}/{lab.host}")  # the host sees the API at the kubeconfig's 127.0.0.1:<port>
        yield api


@pytest.fixture
def containerd(lab: Lab, k8s_api: K8sApiServer) -> Iterator[PrivateContainerd]:
    missing = _missing()
    if missing:
        pytest.fail(f"missing for the containerd test: {missing} "
                    "(apt-get install -y containerd runc busybox-static containernetworking-plugins util-linux)")
    root = Path(tempfile.mkdtemp(prefix=f"{lab.prefix}-cri-"))
    path = {"CALICO_CNI_FAST_PATH": "only", "CALICO_CNI_SOCKET": lab.socket} if lab.fast_path \
        else {"CALICO_CNI_FAST_PATH": "off"}
    runtime = PrivateContainerd(root, lab.host, IMAGE, env=path)
    try:
        binaries.bin_dir(root / "cni-bin")  # our plugins (frozen under `make test`)
        (root / "cni-bin" / "loopback").symlink_to(DEBIAN_CNI / "loopback")  # containerd sets up the pod's lo
        if lab.fast_path:  # the file the agent wrote when it started; standalone, as an agent would have
            nodename_file = Path(lab.workdir) / "nodename"
        else:
            nodename_file = root / "nodename"
            nodename_file.write_text(NODE)
        assert nodename_file.read_text().strip() == NODE
        conf = seed_conf(lab, k8s_api.kubeconfig, nodename_file)
        (root / "cni-conf" / "10-calico.conf").write_text(json.dumps(conf, indent=2))
        busybox = Path(os.path.realpath(shutil.which("busybox") or "/bin/busybox"))
        busybox_image(root / "image.tar", IMAGE, busybox, ["/bin/sleep", "2147483647"])
        runtime.start()
        runtime.ctr("images", "import", str(root / "image.tar"))
        yield runtime
    finally:
        print(f"containerd's log, last lines:\n{runtime.log_tail()}")  # shown when the test fails
        runtime.stop()


def endpoints(store: EtcdDatastore) -> list[dict[str, Any]]:
    return [json.loads(kv.value) for kv in store.list(keys.resource_prefix("workloadendpoints"))]


def addresses_in_use(store: EtcdDatastore) -> list[str]:
    blocks = [AllocationBlock.from_json(kv.value) for kv in store.list(keys.block_prefix(4))]
    return [str(ip) for block in blocks for ip, _ in block.allocated()]


def sandbox_config(runtime: PrivateContainerd, attempt: int) -> dict[str, Any]:
    return {"metadata": {"name": POD, "namespace": NAMESPACE, "uid": "0d5c7a9e-uid-web", "attempt": attempt},
            "hostname": POD, "log_directory": str(runtime.root / "logs" / f"{POD}-{attempt}"),
            "labels": {"app": "web"}, "linux": {"cgroup_parent": runtime.cgroup_parent}}


def exec_sync(cri: CriClient, container_id: str, *cmd: str) -> tuple[int, str]:
    out = cri.call("ExecSync", container_id=container_id, cmd=list(cmd), timeout=10, deadline=20)
    return out["exit_code"], (out["stdout"] + out["stderr"]).decode(errors="replace")


def run_pod(lab: Lab, runtime: PrivateContainerd, store: EtcdDatastore, attempt: int) -> dict[str, float]:
    """One pod's life as kubelet drives it; returns how long the network calls took."""
    cri = runtime.cri
    assert cri is not None
    config = sandbox_config(runtime, attempt)
    timings: dict[str, float] = {}
    start = time.monotonic()
    sandbox = cri.call("RunPodSandbox", config=config)["pod_sandbox_id"]
    timings["RunPodSandbox"] = time.monotonic() - start

    # containerd's view: ready, with an address from the pool, which our plugin returned.
    answer = cri.call("PodSandboxStatus", pod_sandbox_id=sandbox, verbose=True)
    status, info = answer["status"], sandbox_info(answer)
    assert status["state"] == "SANDBOX_READY" and status["metadata"] == config["metadata"], status
    ip = status["network"]["ip"]
    assert ip and netaddr.IPAddress(ip) in POOL, status
    eth0 = info["cniResult"]["Interfaces"]["eth0"]  # the seed's cniVersion 0.1.0 result, as containerd converted it
    assert [c["IP"] for c in eth0["IPConfigs"]] == [ip], info["cniResult"]
    netns = next(ns["path"] for ns in info["runtimeSpec"]["linux"]["namespaces"] if ns["type"] == "network")
    assert netns.startswith(str(runtime.root)), netns  # the pod's netns is containerd's, in its state dir

    # etcd: the endpoint names the pod and its namespace (from CNI_ARGS), carries the Pod's labels
    # (from the API) and the sandbox's ID (the infra container); the address is held under its handle.
    weps = endpoints(store)
    assert len(weps) == 1, weps
    wep = weps[0]
    assert wep["metadata"]["name"] == endpoint_name(NODE, Workload("", NAMESPACE, POD), "eth0")
    assert wep["metadata"]["namespace"] == NAMESPACE
    assert wep["metadata"]["labels"] == {"app": "web", "projectcalico.org/namespace": NAMESPACE,
                                         "projectcalico.org/orchestrator": "k8s",
                                         "projectcalico.org/serviceaccount": "default"}
    spec = wep["spec"]
    assert (spec["orchestrator"], spec["pod"], spec["containerID"], spec["node"]) == ("k8s", POD, sandbox, NODE)
    assert spec["ipNetworks"] == [f"{ip}/32"] and spec["profiles"] == [f"kns.{NAMESPACE}", f"ksa.{NAMESPACE}.default"]
    assert [kv.key for kv in store.list(keys.HANDLE_PREFIX)] == [keys.handle(f"{NETWORK}.{sandbox}")]
    assert addresses_in_use(store) == [ip]

    # The host: the pod's veth and its /32 route; the pod answers ping from the host's namespace.
    veth = host_veth_name(Workload("", NAMESPACE, POD))
    assert spec["interfaceName"] == veth and veth in lab.host_links()
    assert f"{ip} dev {veth} scope link" in lab.host_routes()
    ping = lab.in_host("ping", "-c", "1", "-W", "2", ip, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # A busybox container in the pod shares its network: the address, the route via 169.254.1.1,
    # and a ping out to the host's uplink address through the cali veth.
    container = cri.call("CreateContainer", pod_sandbox_id=sandbox, sandbox_config=config, config={
        "metadata": {"name": "box"}, "image": {"image": IMAGE}, "command": ["/bin/sleep", "3600"],
        "log_path": "box.log"})["container_id"]
    cri.call("StartContainer", container_id=container)
    code, out = exec_sync(cri, container, "ip", "-o", "-4", "addr", "show", "eth0")
    assert code == 0 and f"inet {ip}/32" in out, out
    code, out = exec_sync(cri, container, "ip", "route")
    assert code == 0 and "default via 169.254.1.1 dev eth0" in out, out
    code, out = exec_sync(cri, container, "ping", "-c", "1", "-W", "2", "192.0.2.1")
    assert code == 0, out

    # StopPodSandbox: the plugin's DEL releases everything; a second stop is fine (kubelet repeats it).
    start = time.monotonic()
    cri.call("StopPodSandbox", pod_sandbox_id=sandbox)
    timings["StopPodSandbox"] = time.monotonic() - start
    assert cri.call("PodSandboxStatus", pod_sandbox_id=sandbox)["status"]["state"] == "SANDBOX_NOTREADY"
    assert store.list(keys.HANDLE_PREFIX) == [] and addresses_in_use(store) == []
    assert endpoints(store) == []
    assert lab.host_links() == BASE_LINKS
    assert ip not in lab.host_routes()
    assert not os.path.exists(netns)
    cri.call("StopPodSandbox", pod_sandbox_id=sandbox)

    # RemovePodSandbox takes the container with it; removing again is no error either.
    cri.call("RemovePodSandbox", pod_sandbox_id=sandbox)
    assert cri.call("ListPodSandbox")["items"] == []
    cri.call("RemovePodSandbox", pod_sandbox_id=sandbox)
    with pytest.raises(grpc.RpcError) as gone:
        cri.call("PodSandboxStatus", pod_sandbox_id=sandbox)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    return timings


def test_containerd_cri_runs_pods_on_the_seed_network(lab: Lab, k8s_api: K8sApiServer,
                                                      containerd: PrivateContainerd,
                                                      etcd_store: EtcdDatastore) -> None:
    cri = containerd.cri
    assert cri is not None
    version = cri.call("Version", version="v1")
    assert version["runtime_name"] == "containerd" and version["runtime_api_version"] == "v1", version

    # The objects kubelet's pod comes from, in the API the plugin reads with policy k8s.
    k8s_api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})  # + its "default" SA
    k8s_api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": NAMESPACE,
                                                                      "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "box", "image": IMAGE}]}})

    # The same pod twice (kubelet's second attempt after the first sandbox went): the second run
    # finds nothing of the first in its way and leaves nothing behind either.
    for attempt in (0, 1):
        timings = run_pod(lab, containerd, etcd_store, attempt)
        print(f"attempt {attempt}: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
