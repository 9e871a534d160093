"""workloadendpoint: a pod's labels (and service account) reach its WorkloadEndpoints.

The CNI plugin writes a pod's endpoints; this controller only keeps their labels and
`serviceAccountName` those of the pod, leaving every other field as it is, and never creates or
deletes an endpoint (Calico's pod controller, in etcd mode). A pod's endpoints are those of its
namespace whose orchestrator is k8s and whose `spec.pod` names it (one per interface).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Hashable

from ...datastore import read_modify_write
from ...model import keys
from .. import desired
from ..client import PODS
from .base import Context, Controller

log = logging.getLogger(__name__)

PLURAL = "workloadendpoints"


class WorkloadEndpointController(Controller):
    name = "workloadendpoint"
    resources = (PODS,)

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        # What each pod's endpoints were last seen to carry: pods change status far more often than
        # labels, and a status change needs no read of the namespace's endpoints. Only pods whose
        # endpoints were found are remembered, so a pod seen before the CNI plugin wrote its
        # endpoint is looked at again on its next event (the kubelet's status update, say).
        self._applied: dict[str, tuple[object, ...]] = {}

    def sync(self, item: Hashable) -> None:
        key = str(item)
        pod = self.informer(PODS).get(key)
        if pod is None or not desired.has_endpoints(pod):
            self._applied.pop(key, None)
            return  # a deleted pod's endpoints are the CNI plugin's to remove
        if self._applied.get(key) == _wanted(pod):
            return
        namespace, _, name = key.partition("/")
        found = False
        for kv in self.ds.list(keys.resource_prefix(PLURAL, namespace)):
            endpoint = _parsed(kv.value)
            if endpoint is not None and desired.is_pods_endpoint(endpoint, namespace, name):
                self._update(kv.key, pod)
                found = True
        if found:
            self._applied[key] = _wanted(pod)

    def sync_all(self) -> None:
        pods = self.informer(PODS)
        applied: dict[str, tuple[object, ...]] = {}
        for kv in self.ds.list(keys.resource_prefix(PLURAL)):
            endpoint = _parsed(kv.value)
            if endpoint is None or (endpoint.get("spec") or {}).get("orchestrator") != desired.ORCHESTRATOR:
                continue
            namespace = (endpoint.get("metadata") or {}).get("namespace") or "default"
            pod_key = f"{namespace}/{(endpoint.get('spec') or {}).get('pod', '')}"
            pod = pods.get(pod_key)
            if pod is not None and desired.has_endpoints(pod):
                self._update(kv.key, pod)
                applied[pod_key] = _wanted(pod)
        self._applied = applied

    def _update(self, key: str, pod: dict[str, Any]) -> None:
        changed = [False]

        def change(current: str | None) -> str | None:
            if current is None:
                return None  # removed meanwhile (the pod went): nothing to label
            updated = desired.endpoint_update(current, pod)
            changed[0] = updated is not None
            return updated if updated is not None else current

        read_modify_write(self.ds, key, change, f"labelling {key}")
        if changed[0]:
            self.count_writes({key: "updated"})


def _wanted(pod: dict[str, Any]) -> tuple[object, ...]:
    return tuple(sorted(desired.endpoint_labels(pod).items())), desired.service_account(pod)


def _parsed(value: str) -> dict[str, Any] | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
