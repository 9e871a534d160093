"""The Calico objects Kubernetes objects call for, as Calico's conversions make them. Pure.

- NetworkPolicy -> NetworkPolicy `knp.default.<name>`: `calicoctl convert`'s conversion
  (ctl/k8s_convert), the one implementation for both.
- Namespace -> Profile `kns.<namespace>`: allow all in and out (policies restrict), labelsToApply
  the namespace's labels prefixed `pcns.` plus `pcns.projectcalico.org/name` (libcalico-go's
  NamespaceToProfile); calico-node reads namespace labels back from there.
- ServiceAccount -> Profile `ksa.<namespace>.<name>`: no rules, labelsToApply `pcsa.`
  (ServiceAccountToProfile).
- Pod -> the labels (and serviceAccountName) of its WorkloadEndpoints: the pod's labels plus
  `projectcalico.org/namespace`, `projectcalico.org/orchestrator: k8s` and
  `projectcalico.org/serviceaccount` (PodToWorkloadEndpoints); nothing else of the endpoint.

Documents are returned in their stored form (`v3.to_stored` after `v3.validate`, what calicoctl
writes), carrying the Kubernetes object's creationTimestamp and uid as Calico's do.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..ctl import k8s_convert
from ..model import v3

log = logging.getLogger(__name__)

Obj = dict[str, Any]

POLICY_PREFIX = k8s_convert.NAME_PREFIX  # "knp.default."
NAMESPACE_PROFILE_PREFIX = "kns."
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."
NAMESPACE_LABEL_PREFIX = "pcns."
SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa."
NAME_LABEL = "projectcalico.org/name"
NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
ORCHESTRATOR = "k8s"

_LABELS: TypeAdapter[dict[str, str]] = TypeAdapter(v3.Labels)


class NotConvertible(ValueError):
    """The object cannot be expressed in Calico (the message says why); its Calico object, if
    any, is left as it is rather than guessed at."""


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _provenance(obj: Obj) -> Obj:
    meta = _meta(obj)
    return {key: meta[key] for key in ("creationTimestamp", "uid") if meta.get(key)}


def _stored(document: Obj) -> Obj:
    try:
        return v3.to_stored(v3.validate(document))
    except v3.ValidationFailure as exc:
        raise NotConvertible(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None


def network_policy(policy: Obj) -> Obj:
    """A Kubernetes NetworkPolicy (as the API serves it) as the Calico NetworkPolicy to store."""
    document = {**policy, "apiVersion": k8s_convert.API_VERSION, "kind": "NetworkPolicy"}
    try:
        converted = k8s_convert.to_v3(document)
    except k8s_convert.ConversionError as exc:
        raise NotConvertible(str(exc)) from None
    converted["metadata"].update(_provenance(policy))
    return _stored(converted)


def policy_name(namespace: str, name: str) -> tuple[str, str]:
    """(namespace, Calico name) of the policy a NetworkPolicy becomes."""
    return namespace, POLICY_PREFIX + name


def _prefixed_labels(labels: dict[str, str], prefix: str, what: str) -> dict[str, str]:
    """Labels with `prefix` on their keys, each checked as Calico checks labels: one a prefix makes
    too long is left out (with a warning) rather than costing the whole profile."""
    out = {}
    for key, value in sorted(labels.items()):
        candidate = {prefix + key: str(value)}
        try:
            _LABELS.validate_python(candidate, context=v3.STRICT)
        except ValidationError:
            log.warning("%s: label %s=%s is left out of the profile: %s%s is no valid label key", what, key,
                        value, prefix, key)
            continue
        out.update(candidate)
    return out


def namespace_profile(namespace: Obj) -> Obj:
    name = str(_meta(namespace).get("name", ""))
    labels = _prefixed_labels(_meta(namespace).get("labels") or {}, NAMESPACE_LABEL_PREFIX, f"namespace {name}")
    labels[NAMESPACE_LABEL_PREFIX + NAME_LABEL] = name
    return _stored({
        "apiVersion": v3.API_VERSION, "kind": "Profile",
        "metadata": {"name": NAMESPACE_PROFILE_PREFIX + name, **_provenance(namespace)},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}], "labelsToApply": labels},
    })


def namespace_profile_name(namespace: str) -> str:
    return NAMESPACE_PROFILE_PREFIX + namespace


def service_account_profile(account: Obj) -> Obj:
    meta = _meta(account)
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    labels = _prefixed_labels(meta.get("labels") or {}, SERVICE_ACCOUNT_LABEL_PREFIX,
                              f"service account {namespace}/{name}")
    labels[SERVICE_ACCOUNT_LABEL_PREFIX + NAME_LABEL] = name
    return _stored({
        "apiVersion": v3.API_VERSION, "kind": "Profile",
        "metadata": {"name": service_account_profile_name(namespace, name), **_provenance(account)},
        "spec": {"labelsToApply": labels},
    })


def service_account_profile_name(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace}.{name}"


# ------------------------------------------------------------------ pods -> workload endpoints

def endpoint_labels(pod: Obj) -> dict[str, str]:
    meta = _meta(pod)
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels[NAMESPACE_LABEL] = str(meta.get("namespace", ""))
    labels[ORCHESTRATOR_LABEL] = ORCHESTRATOR
    account = service_account(pod)
    if account:
        labels[SERVICE_ACCOUNT_LABEL] = account
    return labels


def service_account(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "")


def has_endpoints(pod: Obj) -> bool:
    """Whether Calico networks the pod: scheduled, and not on the host's network."""
    spec = pod.get("spec") or {}
    return bool(spec.get("nodeName")) and not spec.get("hostNetwork")


def is_pods_endpoint(endpoint: Obj, namespace: str, pod: str) -> bool:
    spec = endpoint.get("spec") or {}
    return (spec.get("orchestrator") == ORCHESTRATOR and spec.get("pod") == pod
            and (_meta(endpoint).get("namespace") or "default") == namespace)


def endpoint_update(stored: str, pod: Obj) -> str | None:
    """The endpoint document (as stored) with the pod's labels and service account, everything
    else kept as it is; None when it has them already."""
    endpoint = json.loads(stored)
    meta = endpoint.setdefault("metadata", {})
    spec = endpoint.setdefault("spec", {})
    labels = endpoint_labels(pod)
    account = service_account(pod)
    if meta.get("labels") == labels and (spec.get("serviceAccountName") or "") == account:
        return None
    meta["labels"] = labels
    if account:
        spec["serviceAccountName"] = account
    else:
        spec.pop("serviceAccountName", None)
    return json.dumps(endpoint, sort_keys=True)
