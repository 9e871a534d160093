"""node: a Kubernetes Node deleted takes its Calico Node and its IPAM with it, and addresses no
pod owns any more are given back after the grace period.

A Calico Node is Kubernetes' when its `orchRefs` name a k8s node (what calico-node writes when
CALICO_K8S_NODE_REF is set); one of the same name as a Kubernetes Node that has none is given that
reference here, so the link survives a restart of the controllers. A Calico Node with no such
reference is never judged. Every pass (the first after a list, so at start-up; then on events and
every period) compares them with the Kubernetes Nodes: one whose Kubernetes node is not in the
cache, nor in the API when asked once more (Calico's re-confirmation: the cache may be behind),
is gone, whether or not the controllers saw it go; so is a node that allocations name but no
Calico Node stands for (as Calico's collector, which then releases only its empty blocks). When
it is gone: the allocations no pod owns are released at once (leaks.judge: the pod is gone, bound
elsewhere, or reports other addresses), then the node is cleaned up as `calicoctl delete node`
does (ctl/semantics.clean_up_node: its endpoints, their addresses, its tunnel address, its empty
blocks and affinities), then the Calico Node is deleted. An allocation that still has an owner (a
pod bound to the node, or one no pod claims) holds the clean-up back until a later pass. Every
release names the allocation's handle and sequence number, so an address handed out again
meanwhile is not freed (Calico's ReleaseOptions). An empty block of a remaining node that stays
spare for the grace period (the node keeps another block with room) goes back to the pool, as
Calico's empty-block collection does (leaks.spare_blocks).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Hashable

import netaddr

from ...allocation.audit import Allocation, allocations_of
from ...allocation.block import AllocationBlock
from ...allocation.client import IpamClient, ReleaseOptions
from ...ctl.semantics import clean_up_node
from ...datastore import KeyValue, read_modify_write
from ...model import keys
from ...model.v3 import K8S_ORCHESTRATOR
from .. import leaks
from ..client import NODES, PODS, Resource
from ..workqueue import FULL
from .base import Context, Controller

log = logging.getLogger(__name__)

ORCHESTRATOR = K8S_ORCHESTRATOR


def kubernetes_node_name(calico_node: dict[str, Any]) -> str | None:
    """The Kubernetes node a Calico Node stands for, from its orchRefs (None: not Kubernetes')."""
    for ref in (calico_node.get("spec") or {}).get("orchRefs") or ():
        if isinstance(ref, dict) and ref.get("orchestrator") == ORCHESTRATOR:
            return str(ref.get("nodeName") or (calico_node.get("metadata") or {}).get("name") or "") or None
    return None


def with_orch_ref(stored: str, kubernetes_name: str) -> str:
    node = json.loads(stored)
    spec = node.setdefault("spec", {})
    if kubernetes_node_name(node) is not None:
        return stored
    spec["orchRefs"] = [*(spec.get("orchRefs") or []), {"nodeName": kubernetes_name, "orchestrator": ORCHESTRATOR}]
    return json.dumps(node, sort_keys=True)


class NodeController(Controller):
    name = "node"
    resources = (NODES, PODS)

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.grace = leaks.GraceTracker(context.leak_grace_period)
        self.empty_blocks = leaks.EmptyBlockTracker(context.leak_grace_period)
        self._known_nodes: set[str] = set()
        self._held: dict[str, int] = {}  # gone node -> allocations holding it (logged when it changes)
        # A node has gone and its clean-up may wait for its pods: their deletions are worth a pass.
        self._clean_up_pending = False

    def item_for(self, resource: Resource, key: str) -> Hashable | None:
        # Node status updates come often and change nothing here: only arrivals and departures.
        if resource == NODES:
            present = self.informer(NODES).get(key) is not None
            if present == (key in self._known_nodes):
                return None
            (self._known_nodes.add if present else self._known_nodes.discard)(key)
            if not present:
                self._clean_up_pending = True
            return FULL
        if resource == PODS and self._clean_up_pending and self.informer(PODS).get(key) is None:
            return FULL  # a pod gone may be what holds a deleted node's clean-up
        return None  # pods gone from live nodes wait for the periodic pass (and the grace period)

    def sync(self, item: Hashable) -> None:
        self.sync_all()

    def sync_all(self) -> None:
        kubernetes_nodes = set(self.informer(NODES).keys())
        calico_nodes = self._calico_nodes(kubernetes_nodes)
        backed = {name: k8s for name, (_, k8s) in calico_nodes.items() if k8s is not None}
        gone = {name for name, k8s in backed.items() if k8s not in kubernetes_nodes and self._confirmed_gone(name, k8s)}
        live = set(backed) - gone
        blocks = self._blocks()
        allocations = [a for block in blocks for a in allocations_of(block)]
        # Allocations or blocks of a node no Calico Node stands for (deleted by hand, say): its
        # Kubernetes name is unknown, and it is judged gone, as Calico does.
        nameless = {a.node for a in allocations if a.node and a.node not in calico_nodes} | {
            b.host for b in blocks if b.host and b.host not in calico_nodes}
        names = {**backed, **dict.fromkeys(nameless, "")}
        judgement = leaks.judge(allocations, live, gone | nameless, self._pods(), names)
        self.context.metrics.set("ipam_allocations_gc_candidates", len(judgement.candidates))
        confirmed = self.grace.confirmed(judgement.candidates, time.monotonic())
        self._release(leaks.whole_handles(judgement.leaked + confirmed, allocations), gone | nameless, names)
        for name in sorted(gone | nameless):
            holding = judgement.holding.get(name, [])
            if holding:
                self._report_held(name, holding)
            else:
                self._remove_node(name, calico_nodes[name][0] if name in calico_nodes else None)
        self._clean_up_pending = bool(judgement.holding)
        self._release_spare_blocks(blocks, gone | nameless)

    # ---- reading

    def _calico_nodes(self, kubernetes_nodes: set[str]) -> dict[str, tuple[KeyValue, str | None]]:
        """Calico Nodes by name, with the Kubernetes node each stands for; same-named ones are
        claimed for Kubernetes on the way."""
        out: dict[str, tuple[KeyValue, str | None]] = {}
        for listed in self.ds.list(keys.resource_prefix("nodes")):
            try:
                node = json.loads(listed.value)
                name = str(node["metadata"]["name"])
            except (ValueError, KeyError, TypeError):
                log.warning("node: ignoring %s: not a Node document", listed.key)
                out[listed.key.rsplit("/", 1)[-1]] = (listed, None)  # there, so never judged nameless
                continue
            kubernetes_name = kubernetes_node_name(node)
            if kubernetes_name is None and name in kubernetes_nodes:
                self._link(listed.key, name)
                kubernetes_name = name
            out[name] = (self.ds.get(listed.key) or listed, kubernetes_name) if kubernetes_name else (listed, None)
        return out

    def _confirmed_gone(self, name: str, kubernetes_name: str) -> bool:
        """The cache has no Kubernetes node `kubernetes_name`: so says the API too? Anything but a
        404 (it is there, or the API cannot be asked) keeps Calico node `name` for a later pass."""
        ask = self.context.node_exists
        exists = ask(kubernetes_name) if ask is not None else False
        if exists is not False:
            log.info("node: Kubernetes node %s of Calico node %s is not in the cache, but the API %s; "
                     "looking again next pass", kubernetes_name, name, "has it" if exists else "cannot tell")
        return exists is False

    def _link(self, key: str, name: str) -> None:
        def change(current: str | None) -> str | None:
            return with_orch_ref(current, name) if current is not None else None

        read_modify_write(self.ds, key, change, f"linking node {name} to Kubernetes")
        log.info("node: Calico node %s is Kubernetes node %s (orchRefs written)", name, name)

    def _blocks(self) -> list[AllocationBlock]:
        found = []
        for version in (4, 6):
            for kv in self.ds.list(keys.block_prefix(version)):
                try:
                    found.append(AllocationBlock.from_json(kv.value))
                except ValueError as exc:
                    log.warning("node: ignoring block %s: %s", kv.key, exc)
        return found

    def _pods(self) -> dict[leaks.PodKey, leaks.PodSeen]:
        out = {}
        for pod in self.informer(PODS).items():
            meta = pod.get("metadata") or {}
            out[(str(meta.get("namespace", "")), str(meta.get("name", "")))] = leaks.pod_seen(pod)
        return out

    # ---- writing

    def _release(self, chosen: list[Allocation], gone: set[str], names: dict[str, str]) -> None:
        """Release the chosen allocations, each checked once more against the pods as they are now
        (Calico's final re-validation: a pod that came back keeps its address)."""
        if not chosen:
            return
        pods = self._pods()
        still = [a for a in chosen if a.attributes.get("pod") is None or not leaks.has_owner(a, pods, names)]
        options = [ReleaseOptions(netaddr.IPAddress(a.ip), a.handle, a.sequence_number) for a in still]
        released, skipped = IpamClient(self.ds, "").release_addresses(options)
        self.grace.forget(still)
        for a in still:
            if netaddr.IPAddress(a.ip) in released:
                why = "its node is gone" if a.node in gone else "its pod is gone"
                log.info("node: released %s (handle %s, node %s): %s", a.ip, a.handle, a.node, why)
        self.context.metrics.inc("ipam_allocations_gc_reclamations", len(released))
        if skipped:
            log.info("node: %d allocation(s) changed meanwhile and were left: %s", len(skipped),
                     ", ".join(map(str, skipped)))

    def _release_spare_blocks(self, blocks: list[AllocationBlock], removed: set[str]) -> None:
        """Empty blocks of the remaining nodes that stayed spare for the grace period go back to
        the pool (Calico's empty-block collection); a block used meanwhile is kept by the CAS."""
        seen = [leaks.BlockSeen(str(b.network), b.host, b.in_use, b.free) for b in blocks
                if b.host and b.host not in removed]
        for block in self.empty_blocks.confirmed(leaks.spare_blocks(seen), time.monotonic()):
            why = IpamClient(self.ds, block.node).release_block_if_empty(netaddr.IPNetwork(block.cidr))
            if why is None:
                log.info("node: released empty block %s of %s (spare for the grace period)", block.cidr, block.node)
            else:
                log.info("node: kept block %s of %s: %s", block.cidr, block.node, why)

    def _report_held(self, name: str, holding: list[Allocation]) -> None:
        if self._held.get(name) != len(holding):
            self._held[name] = len(holding)
            owners = ", ".join(sorted(f"{a.ip} ({a.attributes.get('namespace', '')}/{a.attributes.get('pod', '')})"
                                      if a.attributes.get("pod") else f"{a.ip} (handle {a.handle})" for a in holding))
            log.warning("node: %s is gone, but %d allocation(s) still have an owner: %s; "
                        "cleaning up once they go", name, len(holding), owners)

    def _remove_node(self, name: str, seen: KeyValue | None) -> None:
        if seen is None:  # no Calico Node: only its empty blocks and their affinities are left to go
            IpamClient(self.ds, name).release_empty_blocks()
            self._held.pop(name, None)
            log.info("node: released the empty blocks of %s, which no Calico Node stands for", name)
            return
        for warning in clean_up_node(self.ds, name):
            log.warning("node: %s", warning)
        current = self.ds.get(seen.key)
        if current is not None and current.mod_revision == seen.mod_revision and self.ds.delete(
                seen.key, seen.mod_revision):
            self._held.pop(name, None)
            self.count_writes({seen.key: "deleted"})
            return
        if current is not None:
            log.info("node: Calico node %s changed during its clean-up; looking again next pass", name)
            self.queue.retry(FULL)
