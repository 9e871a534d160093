"""calico-kube-controllers' metrics (prometheus_client, through calico-node's small registry)."""

from __future__ import annotations

from ..node.metrics import Registry

DECLARED = (
    ("calico_kube_controllers_leader", "gauge", "1 while this instance leads (and writes), else 0", ()),
    ("calico_kube_controllers_lists_total", "counter", "Consistent lists of a Kubernetes resource", ("resource",)),
    ("calico_kube_controllers_resyncs_total", "counter", "Lists made again because the watch's version was gone",
     ("resource", "reason")),
    ("calico_kube_controllers_api_errors_total", "counter", "Failed lists and broken watch streams", ("resource",)),
    ("calico_kube_controllers_watch_events_total", "counter", "Watch events applied to the cache",
     ("resource", "type")),
    ("calico_kube_controllers_syncs_total", "counter", "Work items done (one object, or everything)",
     ("controller", "kind")),
    ("calico_kube_controllers_sync_errors_total", "counter", "Work items that failed (retried)", ("controller",)),
    ("calico_kube_controllers_writes_total", "counter", "Calico objects created, updated or deleted",
     ("controller", "outcome")),
    ("ipam_allocations_gc_candidates", "gauge", "Allocations whose pod is gone, waiting out the grace period", ()),
    ("ipam_allocations_gc_reclamations", "counter", "Allocations released as leaked", ()),
)


def registry() -> Registry:
    metrics = Registry()
    for name, kind, help_text, labels in DECLARED:
        metrics.declare(name, kind, help_text, labels)
    return metrics
