"""A pod and its namespace as Calico sees them (libcalico-go's pod conversion). Pure.

The endpoint's labels are the pod's plus `projectcalico.org/namespace`,
`projectcalico.org/orchestrator: k8s` and `projectcalico.org/serviceaccount` (when the name is
shorter than 63 characters, as Calico); its profiles `kns.<namespace>` and, with a service
account, `ksa.<namespace>.<serviceaccount>`; its ports every container port (init containers
too) with a name or a host port, protocol TCP, UDP or SCTP. The namespace's profile, when the
plugin creates it, carries the namespace's labels as calico-kube-controllers writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ...errors import KUBERNETES_API_ERROR, CniError

NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
NAME_LABEL = "projectcalico.org/name"
NAMESPACE_PROFILE_PREFIX = "kns."
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."
NAMESPACE_LABEL_PREFIX = "pcns."
_PROTOCOLS = {"TCP": "TCP", "": "TCP", "UDP": "UDP", "SCTP": "SCTP"}


@dataclass(frozen=True)
class PodEndpoint:
    """What a pod gives its workload endpoint."""

    namespace: str
    labels: dict[str, str]
    profiles: list[str]
    service_account: str = ""
    generate_name: str = ""
    ports: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    namespace_annotations: dict[str, str] = field(default_factory=dict)


def namespace_profile_name(namespace: str) -> str:
    return NAMESPACE_PROFILE_PREFIX + namespace


def service_account_profile_name(namespace: str, service_account: str) -> str:
    return f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace}.{service_account}"


def pod_endpoint(pod: Mapping[str, Any], namespace: Mapping[str, Any]) -> PodEndpoint:
    """The pod (and its namespace) as read from the API."""
    meta = _mapping(pod, "metadata", "pod")
    spec = _mapping(pod, "spec", "pod")
    name = str(meta.get("namespace") or "")
    service_account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "")
    labels = {**_strings(meta, "labels", "pod"), NAMESPACE_LABEL: name, ORCHESTRATOR_LABEL: "k8s"}
    if service_account and len(service_account) < 63:
        labels[SERVICE_ACCOUNT_LABEL] = service_account
    profiles = [namespace_profile_name(name)]
    if service_account:
        profiles.append(service_account_profile_name(name, service_account))
    ns_meta = _mapping(namespace, "metadata", "namespace")
    return PodEndpoint(
        namespace=name, labels=labels, profiles=profiles, service_account=service_account,
        generate_name=str(meta.get("generateName") or ""),
        ports=[*_ports(spec, "containers"), *_ports(spec, "initContainers")],
        annotations=_strings(meta, "annotations", "pod"),
        namespace_labels=_strings(ns_meta, "labels", "namespace"),
        namespace_annotations=_strings(ns_meta, "annotations", "namespace"))


def namespace_profile_spec(namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The namespace's profile, as calico-kube-controllers writes it: all traffic allowed (policies
    restrict it) and the namespace's labels, prefixed `pcns.`, for namespace selectors."""
    to_apply = {NAMESPACE_LABEL_PREFIX + NAME_LABEL: namespace}
    to_apply.update((NAMESPACE_LABEL_PREFIX + key, value) for key, value in labels.items())
    return {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}], "labelsToApply": to_apply}


def _ports(spec: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    out = []
    for container in _list(spec, key):
        for port in _list(container, "ports") if isinstance(container, dict) else ():
            if not isinstance(port, dict):
                continue
            number, host_port, name = port.get("containerPort") or 0, port.get("hostPort") or 0, port.get("name") or ""
            if not number or not (host_port or name):
                continue
            protocol = _PROTOCOLS.get(str(port.get("protocol") or ""))
            if protocol is None:
                continue  # as Calico: a port of another protocol is left out
            entry: dict[str, Any] = {"protocol": protocol, "port": int(number)}
            if name:
                entry["name"] = str(name)
            if host_port:
                entry["hostPort"] = int(host_port)
            if port.get("hostIP"):
                entry["hostIP"] = str(port["hostIP"])
            out.append(entry)
    return out


def _mapping(document: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise CniError(KUBERNETES_API_ERROR, f"the Kubernetes API returned a {what} whose {key} is not an object")
    return value


def _strings(meta: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = _mapping(meta, key, what)
    return {str(k): str(v) for k, v in value.items()}


def _list(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key) or []
    return value if isinstance(value, list) else []
