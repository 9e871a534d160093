"""Per-kind behaviour of the API server: defaulting, validation, what an update may change.

Only what a client can observe and that matters to the objects Calico reads is done: the
defaults real objects come back with (a Pod's restartPolicy, a NetworkPolicy's policyTypes, a
Namespace's `kubernetes.io/metadata.name` label...), the checks that refuse a malformed object,
and the split between a resource's main body and its /status subresource.
"""

from __future__ import annotations

import copy
import ipaddress
from datetime import UTC, datetime
from typing import Any

from ...ipnets import subnet_of
from . import resources as r
from .errors import Cause, bad_request
from .validation import (
    dns_label_errors,
    dns_subdomain_errors,
    label_key_errors,
    label_value_errors,
    micro_time_causes,
    name_causes,
)

Obj = dict[str, Any]


class Strategy:
    def __init__(self, rt: r.ResourceType) -> None:
        self.rt = rt

    def prepare_create(self, obj: Obj) -> None:
        """Defaults and server-owned fields of a new object (status is reset where the kind has /status)."""

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        """A write to the main resource keeps the old status."""
        if self.rt.has_status:
            obj.pop("status", None)
            if "status" in old:
                obj["status"] = copy.deepcopy(old["status"])

    def prepare_status_update(self, obj: Obj, old: Obj) -> Obj:
        """A write to /status changes the status only."""
        result = copy.deepcopy(old)
        result["metadata"]["resourceVersion"] = obj["metadata"].get("resourceVersion", "")
        result.pop("status", None)
        if "status" in obj:
            result["status"] = obj["status"]
        return result

    def default(self, obj: Obj) -> None:
        """Defaulting applied on every decode (create, update, patch)."""

    def validate(self, obj: Obj) -> list[Cause]:
        return []

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return self.validate(obj)

    def spec(self, obj: Obj) -> Any:
        """What `metadata.generation` counts changes of."""
        return obj.get("spec")


def _ip_causes(value: Any, path: str) -> list[Cause]:
    try:
        ipaddress.ip_address(value)
        return []
    except (ValueError, TypeError):
        return [Cause("FieldValueInvalid", f'Invalid value: "{value}": must be a valid IP address', path)]


def _cidr_causes(value: Any, path: str) -> list[Cause]:
    try:
        ipaddress.ip_network(value, strict=True)
        return []
    except (ValueError, TypeError):
        return [Cause("FieldValueInvalid", f'Invalid value: "{value}": must be a valid CIDR value, (e.g. 10.9.8.0/24 '
                                           f'or 2001:db8::/64)', path)]


def _required(path: str) -> Cause:
    return Cause("FieldValueRequired", "Required value", path)


def label_selector_causes(selector: Any, path: str) -> list[Cause]:
    """A metav1.LabelSelector (matchLabels and matchExpressions)."""
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [Cause("FieldValueInvalid", "Invalid value: must be a label selector", path)]
    causes = []
    for key, value in (selector.get("matchLabels") or {}).items():
        causes += [Cause("FieldValueInvalid", f'Invalid value: "{key}": {e}', f"{path}.matchLabels")
                   for e in label_key_errors(key)]
        causes += [Cause("FieldValueInvalid", f'Invalid value: "{value}": {e}', f"{path}.matchLabels")
                   for e in label_value_errors(str(value))]
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator"), expr.get("values") or []
        causes += [Cause("FieldValueInvalid", f'Invalid value: "{expr.get("key")}": {e}', f"{where}.key")
                   for e in label_key_errors(str(expr.get("key", "")))]
        if op in ("In", "NotIn") and not values:
            causes.append(Cause("FieldValueRequired", "Required value: must be specified when `operator` is 'In' or "
                                                      "'NotIn'", f"{where}.values"))
        elif op in ("Exists", "DoesNotExist") and values:
            causes.append(Cause("FieldValueForbidden", "Forbidden: may not be specified when `operator` is 'Exists' "
                                                       "or 'DoesNotExist'", f"{where}.values"))
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{op}": supported values: "In", '
                                                          f'"NotIn", "Exists", "DoesNotExist"', f"{where}.operator"))
    return causes


class PodStrategy(Strategy):
    MUTABLE_SPEC = ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations", "schedulingGates")

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        for key, value in (("restartPolicy", "Always"), ("terminationGracePeriodSeconds", 30),
                           ("dnsPolicy", "ClusterFirst"), ("securityContext", {}),
                           ("schedulerName", "default-scheduler"), ("enableServiceLinks", True),
                           ("preemptionPolicy", "PreemptLowerPriority"), ("priority", 0)):
            spec.setdefault(key, value)
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if not isinstance(container, dict):
                continue
            container.setdefault("resources", {})
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            image = str(container.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")

    def validate(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        containers = spec.get("containers")
        if not containers or not isinstance(containers, list):
            return [_required("spec.containers")]
        seen: set[str] = set()
        for i, container in enumerate(containers):
            name = container.get("name") if isinstance(container, dict) else None
            if not name:
                causes.append(_required(f"spec.containers[{i}].name"))
            else:
                causes += [Cause("FieldValueInvalid", f'Invalid value: "{name}": {e}', f"spec.containers[{i}].name")
                           for e in dns_label_errors(name)]
                if name in seen:
                    causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{name}"',
                                        f"spec.containers[{i}].name"))
                seen.add(name)
            if not isinstance(container, dict) or not container.get("image"):
                causes.append(_required(f"spec.containers[{i}].image"))
        if spec.get("restartPolicy") not in ("Always", "OnFailure", "Never"):
            causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{spec.get("restartPolicy")}": '
                                f'supported values: "Always", "OnFailure", "Never"', "spec.restartPolicy"))
        if spec.get("nodeName"):
            causes += name_causes(spec["nodeName"], False, "spec.nodeName")
        status = obj.get("status") or {}
        if status.get("podIP"):
            causes += _ip_causes(status["podIP"], "status.podIP")
        for i, entry in enumerate(status.get("podIPs") or []):
            causes += _ip_causes((entry or {}).get("ip"), f"status.podIPs[{i}].ip")
        pod_ips = status.get("podIPs") or []
        if status.get("podIP") and pod_ips and pod_ips[0].get("ip") != status["podIP"]:
            causes.append(Cause("FieldValueInvalid", "Invalid value: must match status.podIP", "status.podIPs[0].ip"))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        causes = self.validate(obj)
        new_spec, old_spec = copy.deepcopy(obj.get("spec") or {}), copy.deepcopy(old.get("spec") or {})
        for spec in (new_spec, old_spec):
            for key in self.MUTABLE_SPEC:
                spec.pop(key, None)
            for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                if isinstance(container, dict):
                    container.pop("image", None)
        if new_spec != old_spec:
            causes.append(Cause("FieldValueForbidden", "Forbidden: pod updates may not change fields other than "
                                "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                                "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                                "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
                                "was previously negative)", "spec"))
        return causes


def qos_class(spec: Obj) -> str:
    containers = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                  if isinstance(c, dict)]
    resources = [c.get("resources") or {} for c in containers]
    if not any(res.get("requests") or res.get("limits") for res in resources):
        return "BestEffort"
    for res in resources:
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for kind in ("cpu", "memory"):
            if kind not in limits or requests.get(kind, limits[kind]) != limits[kind]:
                return "Burstable"
    return "Guaranteed"


class NamespaceStrategy(Strategy):
    NAME_LABEL = "kubernetes.io/metadata.name"

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])

    def default(self, obj: Obj) -> None:
        meta = obj["metadata"]
        meta.setdefault("labels", {})
        if isinstance(meta["labels"], dict):
            meta["labels"][self.NAME_LABEL] = meta.get("name", "")

    def validate(self, obj: Obj) -> list[Cause]:
        phase = (obj.get("status") or {}).get("phase")
        if phase not in (None, "Active", "Terminating"):
            return [Cause("FieldValueNotSupported", f'Unsupported value: "{phase}": supported values: "Active", '
                                                    f'"Terminating"', "status.phase")]
        return []


class NodeStrategy(Strategy):
    def validate(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        if spec.get("podCIDR"):
            causes += _cidr_causes(spec["podCIDR"], "spec.podCIDR")
        for i, cidr in enumerate(spec.get("podCIDRs") or []):
            causes += _cidr_causes(cidr, f"spec.podCIDRs[{i}]")
        if spec.get("podCIDR") and spec.get("podCIDRs") and spec["podCIDRs"][0] != spec["podCIDR"]:
            causes.append(Cause("FieldValueInvalid", "Invalid value: must match the first element of podCIDRs",
                                "spec.podCIDRs"))
        for i, address in enumerate((obj.get("status") or {}).get("addresses") or []):
            if not isinstance(address, dict) or not address.get("type"):
                causes.append(_required(f"status.addresses[{i}].type"))
        return causes

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if spec.get("podCIDR") and not spec.get("podCIDRs"):
            spec["podCIDRs"] = [spec["podCIDR"]]

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        causes = self.validate(obj)
        old_cidrs = (old.get("spec") or {}).get("podCIDRs")
        if old_cidrs and (obj.get("spec") or {}).get("podCIDRs") != old_cidrs:
            causes.append(Cause("FieldValueForbidden", "Forbidden: node updates may not change podCIDR except from "
                                                       "\"\" to valid", "spec.podCIDRs"))
        return causes


class NetworkPolicyStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        obj.pop("status", None)  # NetworkPolicyStatus is gone from v1
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for port in (rule or {}).get("ports") or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")

    def validate(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [_required("spec")]
        causes: list[Cause] = []
        if "podSelector" not in spec:
            causes.append(_required("spec.podSelector"))
        causes += label_selector_causes(spec.get("podSelector"), "spec.podSelector")
        for i, policy_type in enumerate(spec.get("policyTypes") or []):
            if policy_type not in ("Ingress", "Egress"):
                causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{policy_type}": supported values: '
                                                              f'"Ingress", "Egress"', f"spec.policyTypes[{i}]"))
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for i, listed in enumerate(spec.get(direction) or []):
                rule = listed or {}
                for j, port in enumerate(rule.get("ports") or []):
                    causes += self._port_causes(port, f"spec.{direction}[{i}].ports[{j}]")
                for j, peer in enumerate(rule.get(peers_key) or []):
                    causes += self._peer_causes(peer or {}, f"spec.{direction}[{i}].{peers_key}[{j}]")
        return causes

    @staticmethod
    def _port_causes(port: Obj, path: str) -> list[Cause]:
        causes = []
        if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
            causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{port.get("protocol")}": supported '
                                                          f'values: "SCTP", "TCP", "UDP"', f"{path}.protocol"))
        number = port.get("port")
        if isinstance(number, int) and not 1 <= number <= 65535:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {number}: must be between 1 and 65535, "
                                                     f"inclusive", f"{path}.port"))
        if "endPort" in port:
            if not isinstance(number, int):
                causes.append(Cause("FieldValueInvalid", "Invalid value: may not be specified when `port` is "
                                                         "non-numeric", f"{path}.endPort"))
            elif port["endPort"] < number:
                causes.append(Cause("FieldValueInvalid", "Invalid value: must be greater than or equal to `port`",
                                    f"{path}.endPort"))
        return causes

    @staticmethod
    def _peer_causes(peer: Obj, path: str) -> list[Cause]:
        given = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if k in peer]
        if not given:
            return [Cause("FieldValueRequired", "Required value: must specify a peer", path)]
        if "ipBlock" in peer and len(given) > 1:
            return [Cause("FieldValueForbidden", "Forbidden: may not specify more than 1 peer type", path)]
        causes = label_selector_causes(peer.get("podSelector"), f"{path}.podSelector")
        causes += label_selector_causes(peer.get("namespaceSelector"), f"{path}.namespaceSelector")
        block = peer.get("ipBlock")
        if block is not None:
            causes += _cidr_causes(block.get("cidr"), f"{path}.ipBlock.cidr")
            if not causes:
                network = ipaddress.ip_network(block["cidr"])
                for k, excluded in enumerate(block.get("except") or []):
                    more = _cidr_causes(excluded, f"{path}.ipBlock.except[{k}]")
                    if not more and not subnet_of(ipaddress.ip_network(excluded), network):
                        more = [Cause("FieldValueInvalid", f'Invalid value: "{excluded}": must be a strict subset '
                                                           f'of `cidr`', f"{path}.ipBlock.except[{k}]")]
                    causes += more
        return causes


class LeaseStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        for field in ("acquireTime", "renewTime"):
            # A MicroTime that does not parse fails the decoding of the body, before validation.
            for cause in micro_time_causes(spec.get(field), f"spec.{field}"):
                raise bad_request(f'Lease in version "v1" cannot be handled as a Lease: parsing time '
                                  f'"{spec.get(field)}" as "2006-01-02T15:04:05.000000Z07:00": {cause.message}')
            if spec.get(field):  # it comes back as Go writes it: in UTC, with a Z
                parsed = datetime.fromisoformat(spec[field].replace("Z", "+00:00"))
                spec[field] = parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def validate(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {duration}: must be greater than 0",
                                "spec.leaseDurationSeconds"))
        transitions = spec.get("leaseTransitions")
        if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {transitions}: must be greater than or equal "
                                                     f"to 0", "spec.leaseTransitions"))
        if spec.get("preferredHolder") and not spec.get("strategy"):
            causes.append(Cause("FieldValueForbidden", "Forbidden: preferredHolder can only be set when strategy is "
                                                       "set", "spec.preferredHolder"))
        return causes


class ServiceAccountStrategy(Strategy):
    def validate(self, obj: Obj) -> list[Cause]:
        causes = []
        for i, secret in enumerate(obj.get("secrets") or []):
            name = (secret or {}).get("name", "")
            causes += [Cause("FieldValueInvalid", f'Invalid value: "{name}": {e}', f"secrets[{i}].name")
                       for e in dns_subdomain_errors(name)]
        return causes

    def spec(self, obj: Obj) -> Any:
        return None


STRATEGIES: dict[str, Strategy] = {
    r.PODS.id: PodStrategy(r.PODS), r.NAMESPACES.id: NamespaceStrategy(r.NAMESPACES),
    r.SERVICE_ACCOUNTS.id: ServiceAccountStrategy(r.SERVICE_ACCOUNTS), r.NODES.id: NodeStrategy(r.NODES),
    r.NETWORK_POLICIES.id: NetworkPolicyStrategy(r.NETWORK_POLICIES), r.LEASES.id: LeaseStrategy(r.LEASES),
}


def strategy(rt: r.ResourceType) -> Strategy:
    return STRATEGIES[rt.id]
