"""Which IPAM allocations nothing owns any more, judged as Calico's IPAM garbage collector does. Pure.

Only allocations of Kubernetes nodes are judged (Calico Nodes whose orchRefs name a Kubernetes
node; the caller says which of them are live and which gone).
- The node is gone from Kubernetes: its tunnel address and every allocation whose pod is gone are
  leaked at once; an allocation whose pod is still bound to the node, or one that belongs to no
  pod at all (nothing says who owns it), is presumed valid and holds the node's clean-up back.
- The node lives: an allocation whose pod is gone (or bound to another node) is a candidate, and
  becomes a leak only once it has stayed one for the grace period (15 min by default): a pod
  being recreated under the same allocation must not lose its address.
Allocations without pod attributes, and tunnel addresses of live nodes, are always valid.
A handle is released only when every allocation under it is leaked (all or none, so handle
counts and block bitmaps stay consistent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..allocation.audit import Allocation
from ..node.routing.ipip import handle_id as tunnel_handle

PodKey = tuple[str, str]  # (namespace, name)


@dataclass
class Judgement:
    leaked: list[Allocation] = field(default_factory=list)  # release now
    candidates: list[Allocation] = field(default_factory=list)  # pod gone on a live node: wait the grace
    holding: dict[str, list[Allocation]] = field(default_factory=dict)  # gone node -> what keeps it


def _pod_of(allocation: Allocation) -> PodKey | None:
    attrs = allocation.attributes
    return (attrs["namespace"], attrs["pod"]) if attrs.get("pod") and attrs.get("namespace") else None


def judge(allocations: Iterable[Allocation], live_nodes: set[str], gone_nodes: set[str],
          pods: Mapping[PodKey, str]) -> Judgement:
    """`pods`: every pod the API has, to the node it is bound to ("" when unscheduled)."""
    out = Judgement()
    for allocation in allocations:
        node = allocation.node
        pod = _pod_of(allocation)
        if node in gone_nodes:
            if allocation.handle == tunnel_handle(node) or (pod is not None and pods.get(pod) != node):
                out.leaked.append(allocation)
            else:
                out.holding.setdefault(node, []).append(allocation)
        elif node in live_nodes and pod is not None and pods.get(pod) != node:
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
