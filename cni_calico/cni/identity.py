"""Who is asking: the node name and the workload identity carried in CNI_ARGS."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Mapping


def determine_nodename(nodename: str | None, nodename_file: str) -> str:
    """Config first, then the file calico-node writes, then the hostname (Calico's order)."""
    if nodename:
        return nodename
    try:
        with open(nodename_file, encoding="utf-8") as f:
            name = f.read().strip()
        if name:
            return name
    except OSError:
        pass
    return socket.gethostname().split(".")[0].lower()


@dataclass(frozen=True)
class Workload:
    """The workload an attachment belongs to: a Kubernetes pod, or a plain container (orchestrator cni)."""

    container_id: str
    namespace: str = ""
    pod: str = ""

    @classmethod
    def from_cni_args(cls, container_id: str, args: Mapping[str, str]) -> Workload:
        namespace, pod = args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", "")
        if namespace and pod:
            return cls(container_id, namespace, pod)
        return cls(container_id)

    @property
    def orchestrator(self) -> str:
        return "k8s" if self.pod else "cni"

    def allocation_attributes(self, node: str) -> dict[str, str]:
        attrs = {"node": node}
        if self.pod:
            attrs.update(namespace=self.namespace, pod=self.pod)
        attrs["timestamp"] = datetime.now(UTC).isoformat()
        return attrs


def handle_id(network: str, container_id: str) -> str:
    return f"{network}.{container_id}"


def _escape(segment: str) -> str:
    return segment.replace("-", "--")


_HEX = frozenset("0123456789abcdef")


def host_veth_name(workload: Workload) -> str:
    """`cali` + 11 hex of sha1("<namespace>.<pod>") for pods; for plain containers Calico's
    `cali` + the container ID's head when that head is a runtime's random hex ID. Other IDs
    (`cnitool-...`, names chosen by hand) share prefixes, and a shared name would replace the
    other container's veth as stale: those are hashed whole instead."""
    if workload.pod:
        return "cali" + hashlib.sha1(f"{workload.namespace}.{workload.pod}".encode()).hexdigest()[:11]
    head = workload.container_id[:11]
    if len(head) == 11 and set(head) <= _HEX:
        return "cali" + head
    return "cali" + hashlib.sha1(workload.container_id.encode()).hexdigest()[:11]


def endpoint_name(node: str, workload: Workload, ifname: str) -> str:
    """Calico's WorkloadEndpoint name: `<node>-k8s-<pod>-<iface>` or `<node>-cni-<containerID>-<iface>`."""
    middle = ("k8s", workload.pod) if workload.pod else ("cni", workload.container_id)
    return "-".join(_escape(s) for s in (node, middle[0], middle[1], ifname))


def endpoint_namespace(workload: Workload) -> str:
    return workload.namespace or "default"
