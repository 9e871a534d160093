"""Which IPAM allocations nothing owns any more, judged as Calico's IPAM garbage collector does. Pure.

An allocation with pod attributes is owned while that pod exists, is bound to the allocation's
node (or to no node yet) and, once the kubelet has reported the pod's addresses, has this one
among them (a pod recreated under the same name with a new address no longer owns the old one).
Allocations without pod attributes (nothing says who owns them) are always presumed owned.
- The node is gone (its Kubernetes node deleted, or its Calico Node missing altogether): its
  tunnel address and every allocation with no owner are leaked at once; an owned one holds the
  node's clean-up back.
- The node lives: an allocation with no owner is a candidate, and becomes a leak only once it
  has stayed one for the grace period (15 min by default): a pod being recreated under the same
  allocation must not lose its address. Tunnel addresses of live nodes are always valid.
Only nodes the controller knows are Kubernetes' (or that no Calico Node claims) are judged.
A handle is released only when every allocation under it is leaked (all or none, so handle
counts and block bitmaps stay consistent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import netaddr

from ..allocation.audit import Allocation
from ..node.routing.ipip import handle_id as tunnel_handle

PodKey = tuple[str, str]  # (namespace, name)
POD_IPS_ANNOTATION = "cni.projectcalico.org/podIPs"
POD_IP_ANNOTATION = "cni.projectcalico.org/podIP"


@dataclass(frozen=True)
class PodSeen:
    """What the judgement needs of a pod: its node ("" while unscheduled) and the addresses
    reported for it (empty until the kubelet reports them)."""

    node: str
    ips: frozenset[str] = frozenset()


def pod_seen(pod: Mapping[str, Any]) -> PodSeen:
    """A Kubernetes Pod as the judgement sees it: addresses from Calico's annotations when set,
    else from the status the kubelet reports (as Calico's pod conversion reads them)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    status = pod.get("status") or {}
    texts = [t for t in str(annotations.get(POD_IPS_ANNOTATION) or annotations.get(POD_IP_ANNOTATION) or ""
                             ).split(",") if t.strip()]
    if not texts:
        texts = [str(entry.get("ip") or "") for entry in status.get("podIPs") or () if isinstance(entry, dict)]
        texts = [t for t in texts if t] or ([str(status["podIP"])] if status.get("podIP") else [])
    ips = set()
    for text in texts:
        try:
            ips.add(str(netaddr.IPNetwork(text.strip()).ip))
        except (netaddr.AddrFormatError, ValueError):
            continue  # an address that does not parse proves nothing either way
    return PodSeen(str((pod.get("spec") or {}).get("nodeName") or ""), frozenset(ips))


def owned(allocation: Allocation, pod: PodSeen | None, kubernetes_node: str) -> bool:
    """Whether the allocation's pod (`pod`, None when the API has none) still owns it; the
    allocation's node is Kubernetes node `kubernetes_node` ("" when unknown)."""
    if pod is None:
        return False
    if pod.node and kubernetes_node and pod.node != kubernetes_node:
        return False  # the pod now lives elsewhere
    return not pod.ips or str(netaddr.IPAddress(allocation.ip)) in pod.ips


@dataclass
class Judgement:
    leaked: list[Allocation] = field(default_factory=list)  # release now
    candidates: list[Allocation] = field(default_factory=list)  # no owner on a live node: wait the grace
    holding: dict[str, list[Allocation]] = field(default_factory=dict)  # gone node -> what keeps it


def _pod_of(allocation: Allocation) -> PodKey | None:
    attrs = allocation.attributes
    return (attrs["namespace"], attrs["pod"]) if attrs.get("pod") and attrs.get("namespace") else None


def has_owner(allocation: Allocation, pods: Mapping[PodKey, PodSeen], kubernetes_names: Mapping[str, str]) -> bool:
    """Owned by its pod, or by whoever made it when it names no pod."""
    pod = _pod_of(allocation)
    return pod is None or owned(allocation, pods.get(pod), kubernetes_names.get(allocation.node, allocation.node))


def judge(allocations: Iterable[Allocation], live_nodes: set[str], gone_nodes: set[str],
          pods: Mapping[PodKey, PodSeen], kubernetes_names: Mapping[str, str] | None = None) -> Judgement:
    """`pods`: every pod the API has. `kubernetes_names`: Calico node name -> Kubernetes node name
    where they differ ("" for a node whose Kubernetes name is unknown)."""
    names = kubernetes_names or {}
    out = Judgement()
    for allocation in allocations:
        node = allocation.node
        if node in gone_nodes:
            if allocation.handle == tunnel_handle(node) or not has_owner(allocation, pods, names):
                out.leaked.append(allocation)
            else:
                out.holding.setdefault(node, []).append(allocation)
        elif node in live_nodes and not has_owner(allocation, pods, names):
            out.candidates.append(allocation)
    return out


def whole_handles(leaked: Iterable[Allocation], all_allocations: Iterable[Allocation]) -> list[Allocation]:
    """The leaked allocations whose handle has no allocation that is not leaked."""
    leaked = list(leaked)
    chosen = {(a.ip, a.handle) for a in leaked}
    partial = {a.handle for a in all_allocations if a.handle and (a.ip, a.handle) not in chosen}
    return [a for a in leaked if a.handle is None or a.handle not in partial]


class GraceTracker:
    """Candidates seen continuously for the grace period become leaks; one that stops being a
    candidate (its pod came back) starts over."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._since: dict[tuple[str, str | None, int], float] = {}

    @staticmethod
    def _id(allocation: Allocation) -> tuple[str, str | None, int]:
        return allocation.ip, allocation.handle, allocation.sequence_number

    def confirmed(self, candidates: Iterable[Allocation], now: float) -> list[Allocation]:
        if self.grace <= 0:
            return []
        current = {self._id(a): a for a in candidates}
        self._since = {key: self._since.get(key, now) for key in current}
        return [a for key, a in current.items() if now - self._since[key] >= self.grace]

    def forget(self, allocations: Iterable[Allocation]) -> None:
        for allocation in allocations:
            self._since.pop(self._id(allocation), None)

    def __len__(self) -> int:
        return len(self._since)


@dataclass(frozen=True)
class BlockSeen:
    """What the empty-block judgement needs of a block."""

    cidr: str
    node: str  # the node it is affine to
    in_use: int
    free: int


def spare_blocks(blocks: Iterable[BlockSeen]) -> list[BlockSeen]:
    """Empty blocks a node can give back, as Calico's collector chooses them: the node keeps
    another affine block, and its other blocks have at least 3 free addresses between them (else
    its next pod would claim a block again). Chosen one after another, each choice leaving the
    rest, so a node never gives up its last block."""
    by_node: dict[str, list[BlockSeen]] = {}
    for block in blocks:
        by_node.setdefault(block.node, []).append(block)
    chosen = []
    for node_blocks in by_node.values():
        kept = list(node_blocks)
        for block in node_blocks:
            others = [b for b in kept if b is not block]
            if block.in_use == 0 and others and sum(b.free for b in others) >= 3:
                chosen.append(block)
                kept.remove(block)
    return chosen


class EmptyBlockTracker:
    """Spare blocks seen spare continuously for the grace period may go (Calico's
    blockReleaseTracker); one that is used again starts over. A grace of 0 keeps every block."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._since: dict[str, float] = {}

    def confirmed(self, spare: Iterable[BlockSeen], now: float) -> list[BlockSeen]:
        if self.grace <= 0:
            return []
        current = {b.cidr: b for b in spare}
        self._since = {cidr: self._since.get(cidr, now) for cidr in current}
        return [b for cidr, b in current.items() if now - self._since[cidr] >= self.grace]
