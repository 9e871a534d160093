"""`calicoctl convert`: Kubernetes `networking.k8s.io/v1` NetworkPolicy to Calico v3. Pure.

The conversion is Calico's own (libcalico-go `lib/backend/k8s/conversion`, K8sNetworkPolicyToCalico),
applied after what the Kubernetes API server does first and we have no server to do: its defaults
(policyTypes, a port's protocol) and its validation, so a document Kubernetes would refuse is
refused here too, naming the field. Calico v1 documents are converted by `documents.to_v3` as the
file is read; v3 documents pass through. Everything returned has passed `v3.validate`, so it can
be fed to `calicoctl apply -f -`. `render` prints the result as calicoctl convert does.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..ipnets import Network, subnet_of
from ..model import v3

API_VERSION = "networking.k8s.io/v1"
NAME_PREFIX = "knp.default."  # Calico's name for a converted policy: tier `default`
ORDER = 1000  # every converted policy sits at this order in Calico
ORCHESTRATOR_SELECTOR = "projectcalico.org/orchestrator == 'k8s'"


class ConversionError(ValueError):
    """One problem in a document: `field` is a dotted path into it ('' for the whole document)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


# ------------------------------------------------------------------ the Kubernetes input

class _K8s(BaseModel):
    # Strict like Kubernetes' decoder (a quoted number is a string) and like `kubectl apply`'s
    # strict field validation: a misspelt field is refused, not silently dropped - a dropped
    # `podSelector` would make a policy select every pod.
    model_config = ConfigDict(extra="forbid", strict=True)


class LabelSelectorRequirement(_K8s):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(_K8s):
    matchLabels: dict[str, str] | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None


class IPBlock(_K8s):
    cidr: str
    except_: list[str] | None = Field(default=None, alias="except")


class NetworkPolicyPeer(_K8s):
    podSelector: LabelSelector | None = None
    namespaceSelector: LabelSelector | None = None
    ipBlock: IPBlock | None = None


class NetworkPolicyPort(_K8s):
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    port: Any = None  # a number or a port name: judged by _port_value, which names the field
    endPort: int | None = None


class IngressRule(_K8s):
    from_: list[NetworkPolicyPeer] | None = Field(default=None, alias="from")
    ports: list[NetworkPolicyPort] | None = None


class EgressRule(_K8s):
    to: list[NetworkPolicyPeer] | None = None
    ports: list[NetworkPolicyPort] | None = None


class NetworkPolicySpec(_K8s):
    podSelector: LabelSelector  # required by Kubernetes; `{}` selects every pod of the namespace
    policyTypes: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[IngressRule] | None = None
    egress: list[EgressRule] | None = None


class ObjectMeta(_K8s):
    name: v3.Name  # a DNS subdomain, as Kubernetes requires of a NetworkPolicy's name
    namespace: str | None = None  # judged by v3.validate: the converted policy keeps it as it is
    # Kubernetes' other metadata (as `kubectl get -o yaml` shows it): allowed, and like Calico's
    # conversion none of it is carried over.
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generateName: Any = None
    selfLink: Any = None
    uid: Any = None
    resourceVersion: Any = None
    generation: Any = None
    creationTimestamp: Any = None
    deletionTimestamp: Any = None
    deletionGracePeriodSeconds: Any = None
    ownerReferences: Any = None
    finalizers: Any = None
    managedFields: Any = None


class NetworkPolicy(_K8s):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: ObjectMeta
    spec: NetworkPolicySpec
    status: Any = None  # server-set; nothing in it to convert


# ------------------------------------------------------------------ entry points

def to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """A document as `documents.load` gives it (v1 already converted) in validated v3 form.
    Raises ConversionError naming the field."""
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version == API_VERSION and kind == "NetworkPolicy":
        converted = network_policy(data)
    elif api_version == API_VERSION:
        raise ConversionError("kind", f"cannot convert Kubernetes {kind!r}: only NetworkPolicy is convertible")
    elif api_version == v3.API_VERSION:
        converted = data  # already v3 (or converted from Calico v1 as it was read)
    elif kind == "NetworkPolicy" and str(api_version).endswith("v1beta1"):
        raise ConversionError("apiVersion", f"{api_version!r} is no longer served by Kubernetes: "
                                            f"use {API_VERSION}")
    else:
        raise ConversionError("apiVersion", f"cannot convert {api_version!r}: convertible are Calico v1 "
                                            f"('v1') and Kubernetes NetworkPolicy ({API_VERSION!r})")
    try:
        v3.validate(converted)
    except v3.ValidationFailure as exc:
        where = f"v3 {converted.get('kind')} {_name_of(converted)!r}"
        raise ConversionError(exc.field, f"{exc.message} ({where})") from None
    return converted


def render(items: list[dict[str, Any]], fmt: str) -> str:
    """As calicoctl convert prints: one resource alone, several as a Kubernetes `v1` `List`
    (which `calicoctl apply -f` reads back)."""
    document: Any = items[0] if len(items) == 1 else {
        "apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}
    from .output import dump

    return dump(document, fmt)


def network_policy(data: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes NetworkPolicy document as a Calico v3 NetworkPolicy (not yet validated)."""
    policy = _parsed(data)
    spec = policy.spec
    converted: dict[str, Any] = {
        "order": ORDER,
        "selector": _selector(spec.podSelector, "spec.podSelector", pods=True),
        "types": _types(spec),
    }
    directions: tuple[tuple[str, Sequence[IngressRule | EgressRule] | None], ...] = (
        ("ingress", spec.ingress), ("egress", spec.egress))
    for direction, rules in directions:
        calico_rules = [calico_rule for i, rule in enumerate(rules or ())
                        for calico_rule in _rule(rule, f"spec.{direction}[{i}]")]
        if calico_rules:  # no rules: the policy allows nothing in that direction
            converted[direction] = calico_rules
    metadata = {"name": NAME_PREFIX + policy.metadata.name}
    if policy.metadata.namespace:  # none: the namespace `apply` puts it in (-n, or default)
        metadata["namespace"] = policy.metadata.namespace
    return {"apiVersion": v3.API_VERSION, "kind": "NetworkPolicy", "metadata": metadata, "spec": converted}


def _name_of(data: dict[str, Any]) -> str:
    metadata = data.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


# ------------------------------------------------------------------ parsing, errors

def _parsed(data: dict[str, Any]) -> NetworkPolicy:
    try:
        return NetworkPolicy.model_validate(data, context=v3.STRICT)  # v3.Name's rule too
    except ValidationError as exc:
        raise _first_problem(exc) from None


_TYPE_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _first_problem(exc: ValidationError) -> ConversionError:
    errors = exc.errors()
    # A misspelt field is also a missing one: naming the misspelling points at the typo.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path = _path(tuple(error["loc"]))
    ctx = error.get("ctx") or {}
    if error["type"] == "literal_error":
        return ConversionError(path, f"must be {ctx['expected']}, not {error['input']!r}")
    if error["type"] == "value_error" and ctx.get("error") is not None:
        return ConversionError(path, str(ctx["error"]))
    return ConversionError(path, _TYPE_MESSAGES.get(error["type"], str(error["msg"])))


def _path(loc: tuple[Any, ...]) -> str:
    """('spec', 'ingress', 0, 'from') -> 'spec.ingress[0].from'."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ------------------------------------------------------------------ selectors

_LABELS: TypeAdapter[dict[str, str]] = TypeAdapter(v3.Labels)
_PORT: TypeAdapter[int | str] = TypeAdapter(v3.Port)


def _check_labels(labels: dict[str, str], path: str) -> None:
    """Kubernetes' label rules (Calico applies the same): a qualified key and a short plain value,
    which also keeps a value from closing the quotes it is written between in the selector."""
    try:
        _LABELS.validate_python(labels, context=v3.STRICT)
    except ValidationError as exc:
        raise ConversionError(path, str((exc.errors()[0].get("ctx") or {}).get("error", exc))) from None


def _check_label_key(key: str, path: str) -> None:
    _check_labels({key: ""}, path)  # an empty value is always valid


def _check_label_value(value: str, path: str) -> None:
    _check_labels({"key": value}, path)  # a key that is always valid


def _selector(selector: LabelSelector | None, path: str, *, pods: bool) -> str:
    """Calico's k8sSelectorToCalico: pod selectors are limited to Kubernetes pods; an empty
    namespace selector is every namespace (all()), an absent one the policy's own (''). Labels in
    key order, then the expressions in the order given."""
    terms = [ORCHESTRATOR_SELECTOR] if pods else []
    if selector is None:
        return " && ".join(terms)
    if not pods and not selector.matchLabels and not selector.matchExpressions:
        return "all()"
    labels = selector.matchLabels or {}
    for key in sorted(labels):
        _check_labels({key: labels[key]}, f"{path}.matchLabels.{key}")
        terms.append(f"{key} == '{labels[key]}'")
    for i, requirement in enumerate(selector.matchExpressions or ()):
        terms.append(_expression(requirement, f"{path}.matchExpressions[{i}]"))
    return " && ".join(terms)


def _expression(requirement: LabelSelectorRequirement, path: str) -> str:
    key, operator, values = requirement.key, requirement.operator, requirement.values or []
    _check_label_key(key, f"{path}.key")
    if operator in ("Exists", "DoesNotExist"):
        if values:
            raise ConversionError(f"{path}.values", f"must be empty when the operator is {operator}")
        return f"has({key})" if operator == "Exists" else f"! has({key})"
    if not values:
        raise ConversionError(f"{path}.values", f"must not be empty when the operator is {operator}")
    for i, value in enumerate(values):
        _check_label_value(value, f"{path}.values[{i}]")
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{key} {'in' if operator == 'In' else 'not in'} {{ {listed} }}"


def _types(spec: NetworkPolicySpec) -> list[str]:
    """policyTypes as the API server defaults them (Ingress, plus Egress when there are egress
    rules), in Calico's order, each once."""
    given: list[str] = list(spec.policyTypes or ())
    if len(given) > 2:
        raise ConversionError("spec.policyTypes", "may not list more than two types")
    if not given:
        given = ["Ingress", "Egress"] if spec.egress else ["Ingress"]
    return [kind for kind in ("Ingress", "Egress") if kind in given]


# ------------------------------------------------------------------ rules

# A port inside the conversion: a name, or a numeric (first, last) range (one port: first == last).
_Port = str | tuple[int, int]


def _rule(rule: IngressRule | EgressRule, path: str) -> list[dict[str, Any]]:
    """Calico's k8sRuleToCalico: one Allow rule per protocol (sorted) and, within it, per peer;
    no peers is any peer, no ports any protocol and port."""
    ingress = isinstance(rule, IngressRule)
    peers = rule.from_ if isinstance(rule, IngressRule) else rule.to
    side = "from" if ingress else "to"
    entities = [_peer(peer, f"{path}.{side}[{i}]") for i, peer in enumerate(peers or ())] or [{}]
    groups = _ports_by_protocol(rule.ports or [], f"{path}.ports")
    rules = []
    for protocol in sorted(groups):
        ports = _simplified(groups[protocol])
        for entity in entities:
            rules.append(_calico_rule(protocol, ports, entity, ingress=ingress))
    return rules


def _calico_rule(protocol: str, ports: list[_Port] | None, peer: dict[str, Any], *,
                 ingress: bool) -> dict[str, Any]:
    """The peer is the source of an ingress rule and the destination of an egress one; the
    ports are always the destination's."""
    rule: dict[str, Any] = {"action": "Allow"}
    if protocol:
        rule["protocol"] = protocol
    destination: dict[str, Any] = {"ports": [_calico_port(p) for p in ports]} if ports else {}
    source: dict[str, Any] = {}
    (source if ingress else destination).update(peer)
    if source:
        rule["source"] = source
    if destination:
        rule["destination"] = destination
    return rule


def _peer(peer: NetworkPolicyPeer, path: str) -> dict[str, Any]:
    """A peer's EntityRule fields; Kubernetes allows pod and namespace selectors together (both
    must match), but an ipBlock only alone."""
    given = [part for part in (peer.podSelector, peer.namespaceSelector, peer.ipBlock) if part is not None]
    if not given:
        raise ConversionError(path, "must specify a peer: podSelector, namespaceSelector or ipBlock")
    if peer.ipBlock is not None:
        if len(given) > 1:
            raise ConversionError(path, "may not specify both ipBlock and another peer")
        return _ip_block(peer.ipBlock, f"{path}.ipBlock")
    entity = {"selector": _selector(peer.podSelector, f"{path}.podSelector", pods=True)}
    namespaces = _selector(peer.namespaceSelector, f"{path}.namespaceSelector", pods=False)
    if namespaces:
        entity["namespaceSelector"] = namespaces
    return entity


def _ip_block(block: IPBlock, path: str) -> dict[str, Any]:
    network = _cidr(block.cidr, f"{path}.cidr")
    entity: dict[str, Any] = {"nets": [str(network)]}
    excepted = []
    for i, text in enumerate(block.except_ or ()):
        subnet = _cidr(text, f"{path}.except[{i}]")
        if not subnet_of(subnet, network) or subnet.prefixlen <= network.prefixlen:
            raise ConversionError(f"{path}.except[{i}]", f"{text!r} is not a strict subset of the cidr {network}")
        excepted.append(str(subnet))
    if excepted:
        entity["notNets"] = excepted
    return entity


def _cidr(text: str, path: str) -> Network:
    """`address/prefix` as Go's ParseCIDR reads it (a decimal prefix, no zone); host bits are
    masked off, as Calico does (Kubernetes accepts them)."""
    _, slash, prefix = text.partition("/")
    if text.isascii() and "%" not in text and slash and prefix.isdigit():
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
    raise ConversionError(path, f"invalid CIDR {text!r}: an address and a /prefix length, e.g. 10.0.0.0/8")


# ------------------------------------------------------------------ ports

def _ports_by_protocol(ports: list[NetworkPolicyPort], path: str) -> dict[str, list[_Port] | None]:
    """Protocol -> its ports, None meaning every port of it; the key '' (no protocol, any port)
    when the rule lists no ports. A port without a protocol is TCP (Kubernetes' default)."""
    if not ports:
        return {"": None}
    groups: dict[str, list[_Port] | None] = {}
    for i, port in enumerate(ports):
        protocol = port.protocol or "TCP"
        value = _port_value(port, f"{path}[{i}]")
        if value is None:
            groups[protocol] = None
        elif protocol not in groups:
            groups[protocol] = [value]
        elif (listed := groups[protocol]) is not None:  # every port of the protocol already: nothing to add
            listed.append(value)
    return groups


def _port_value(port: NetworkPolicyPort, path: str) -> _Port | None:
    """Kubernetes' port rules: a number 1-65535 (with an optional endPort, a range) or a port
    name (with no endPort)."""
    value, end = port.port, port.endPort
    if value is None:
        if end is not None:
            raise ConversionError(f"{path}.endPort", "may not be specified without a port")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        _check_port_number(value, f"{path}.port")
        if end is None:
            return (value, value)
        _check_port_number(end, f"{path}.endPort")
        if end < value:
            raise ConversionError(f"{path}.endPort", f"must be at least the port ({value}), not {end}")
        return (value, end)
    if not isinstance(value, str):
        raise ConversionError(f"{path}.port", "must be a port number or a port name")
    if end is not None:
        raise ConversionError(f"{path}.endPort", "may not be specified with a named port")
    return _port_name(value, f"{path}.port")


def _check_port_number(number: int, path: str) -> None:
    if not 1 <= number <= 65535:
        raise ConversionError(path, f"invalid port {number}: port numbers are 1-65535")


def _port_name(name: str, path: str) -> str:
    # Kubernetes reads a quoted number as a name, and a name needs a letter.
    if not any(c.isalpha() for c in name):
        raise ConversionError(path, f"invalid port name {name!r}: a name needs a letter "
                                    "(write a port number without quotes)")
    try:
        _PORT.validate_python(name, context=v3.STRICT)
    except ValidationError as exc:
        raise ConversionError(path, str((exc.errors()[0].get("ctx") or {}).get("error", exc))) from None
    return name


def _simplified(ports: list[_Port] | None) -> list[_Port] | None:
    """Calico's SimplifyPorts: with more than one numeric port, the names first (as given) and
    then the fewest ranges covering the numbers; otherwise the ports as given."""
    if ports is None or len(ports) <= 1:
        return ports
    names = [port for port in ports if isinstance(port, str)]
    ranges = sorted(port for port in ports if isinstance(port, tuple))
    if sum(last - first + 1 for first, last in ranges) <= 1:
        return ports
    merged: list[tuple[int, int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:  # overlapping or adjacent: one range
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return [*names, *merged]


def _calico_port(port: _Port) -> int | str:
    """As Calico marshals a port: a name, a number, or 'first:last'."""
    if isinstance(port, str):
        return port
    first, last = port
    return first if first == last else f"{first}:{last}"
