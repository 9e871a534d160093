"""The Calico v3 resources: one model per kind, for every reader and writer of the datastore.

Each kind is validated in one of two ways:

- strictly, when a document is to be written by calicoctl (or built by kube-controllers):
  `validate(data)` returns the model (Calico's write defaults applied) or raises
  `ValidationFailure` for the first problem, naming the field as a dotted path
  (`spec.ingress[0].destination.ports`). Unknown fields are refused, types are not coerced (YAML
  `natOutgoing: "yes"` is an error, as in Go's JSON decoder), and Calico's rules apply: those of
  libcalico-go `lib/validator/v3/validator.go`, the per-kind defaulting in `lib/clientv3/*.go`,
  the types in `api/pkg/apis/projectcalico/v3`; where we differ, the comment says why.
  `to_stored(model)` gives the plain dict that is written to etcd and shown by `get`.
- tolerantly, the default (`Model.model_validate_json(stored)`), when a component reads what
  is stored: unknown fields are kept and written back by `to_json` (a read-modify-write loses
  nothing another version or tool wrote), Calico's rules are not re-judged, and unset fields
  read as Calico reads them (`IPPoolSpec.ipipMode` "Never"...). Only what a component cannot
  work without is checked (a pool's CIDR and block size).

Schemas are built at a kind's first use (`defer_build`), so a CNI call pays only for the kinds it
touches. Pure: no I/O.
"""

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from . import labels
from . import selector as _selector

if TYPE_CHECKING:
    import netaddr

API_VERSION: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"

DEFAULT_POOL_NAME = "default-ipv4-ippool"
DEFAULT_POOL_CIDR = "192.168.0.0/16"
DEFAULT_AS = 64512

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# The validation context of a strict validation (calicoctl's write path): `validate` passes it;
# so do the callers that check a part of a resource (a rule, a label set) on its own.
STRICT: dict[str, Any] = {"strict": True}

ModelT = TypeVar("ModelT", bound=BaseModel)


def _strict(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("strict"))


def strictly(model: type[ModelT], data: Any) -> ModelT:
    """`model` (a kind or a part of one) validated as calicoctl validates what it writes; a
    pydantic ValidationError for what fails (`validate` reports a whole document's first)."""
    return model.model_validate(data, strict=True, context=STRICT)


class ValidationFailure(ValueError):
    """One problem in a document: `field` is a dotted path ('' for the whole document)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class _Invalid(ValueError):
    """Raised inside a validator; `path` continues the location pydantic reports, so a rule that
    spans fields (ports need a protocol) still names the exact field at fault."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.path = path


# ------------------------------------------------------------------ scalar checks

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = labels.DNS_SUBDOMAIN  # RFC 1123 subdomain, as Calico's nameRegex
_POLICY_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})?")  # policies: at most one dot (Calico)
# A NetworkPolicy may also carry the name Calico gives a converted policy: `knp.default.` (from a
# Kubernetes NetworkPolicy) or `ossg.default.` (an OpenStack security group) before a subdomain.
_NETWORK_POLICY_NAME = re.compile(rf"{_POLICY_NAME.pattern}|(knp|ossg)\.default\.{_NAME.pattern}")
_DNS_LABEL = re.compile(_LABEL)
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
_INTERFACE = re.compile(r"[a-zA-Z0-9_.-]{1,15}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}((\1[0-9A-Fa-f]{2}){2})?")
_PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
_V4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
_V6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")
_ANNOTATIONS_LIMIT = 256 * 1024


def _rule(check: Callable[[Any], Any]) -> AfterValidator:
    """A field's Calico rule: judged (and its value normalised) in strict validation only."""
    def validate(value: Any, info: ValidationInfo) -> Any:
        return check(value) if _strict(info) else value
    return AfterValidator(validate)


def _rules(check: Callable[[Any], Any]) -> Any:
    """A model's Calico rules (a model validator, mode "after"), likewise strict only: a
    stored document is not judged again when read."""
    def validate(self: Any, info: ValidationInfo) -> Any:
        return check(self) if _strict(info) else self
    validate.__name__ = check.__name__
    validate.__doc__ = check.__doc__
    return model_validator(mode="after")(validate)


def _optional(check: Callable[[str], str]) -> Callable[[str], str]:
    """Calico's `omitempty`: an empty string means unset and is not checked."""
    return lambda value: value if value == "" else check(value)


def _name(value: str) -> str:
    if len(value) > 253:
        raise _Invalid(f"name is too long ({len(value)} characters, at most 253)")
    if not _NAME.fullmatch(value):
        raise _Invalid(f"invalid name {value!r}: use lower case letters, digits, '-' and '.', "
                       "starting and ending with a letter or digit")
    return value


def _namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise _Invalid(f"invalid namespace {value!r}: use lower case letters, digits and '-' (at most 63)")
    return value


def _container_id(value: str) -> str:
    if not _CONTAINER_ID.fullmatch(value):
        raise _Invalid(f"invalid container ID {value!r}")
    return value


def _interface_name(value: str) -> str:
    if value != "*" and not _INTERFACE.fullmatch(value):
        raise _Invalid(f"invalid interface name {value!r}: 1-15 of letters, digits, '_', '.', '-'")
    return value


def _mac(value: str) -> str:
    if not _MAC.fullmatch(value):
        raise _Invalid(f"invalid MAC address {value!r}")
    return value


def _selector_text(value: str) -> str:
    try:
        _selector.parse(value)
    except _selector.SelectorError as exc:
        raise _Invalid(f"invalid selector {value!r}: {exc}") from None
    return value


def _interface(text: str, what: str = "CIDR", *, need_prefix: bool = False) -> IPInterface:
    """Parse `ip/prefix` (or a bare IP unless `need_prefix`) as Go's ParseCIDR would: a decimal
    prefix only (no netmask form, no zone)."""
    _, slash, prefix = text.partition("/")
    if (not text.isascii() or "%" in text or (slash and not prefix.isdigit())
            or (need_prefix and not slash)):
        raise _Invalid(f"invalid {what} {text!r}")
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise _Invalid(f"invalid {what} {text!r}") from None


def _address(text: str, version: int | None = None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    what = f"IPv{version} address" if version else "IP address"
    if not text.isascii() or "%" in text:
        raise _Invalid(f"invalid {what} {text!r}")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise _Invalid(f"invalid {what} {text!r}") from None
    if version and address.version != version:
        raise _Invalid(f"invalid {what} {text!r}")
    return address


def _net(text: str) -> str:
    """Calico's `net`: a strictly masked CIDR, or a bare IP (a full mask)."""
    iface = _interface(text)
    if iface.ip != iface.network.network_address:
        raise _Invalid(f"{text!r} has host bits set (the network is {iface.network})")
    return text


def _cidr_of(version: int) -> Callable[[str], str]:
    """Calico's `cidrv4`/`cidrv6`: an address with its subnet (host bits allowed), or a bare IP."""
    def check(text: str) -> str:
        if _interface(text, f"IPv{version} address").version != version:
            raise _Invalid(f"invalid IPv{version} address {text!r}")
        return text
    return check


def _ip_of(version: int | None) -> Callable[[str], str]:
    def check(text: str) -> str:
        _address(text, version)
        return text
    return check


def _pool_cidr(text: str) -> str:
    """Calico's pool rules: a subnet with a prefix, strictly masked, clear of link-local;
    stored in canonical form (Calico normalises the CIDR before persisting)."""
    iface = _interface(text, need_prefix=True)
    if iface.ip != iface.network.network_address:
        raise _Invalid(f"{text!r} is not strictly masked: host bits are set (the network is {iface.network})")
    link_local = _V4_LINK_LOCAL if iface.version == 4 else _V6_LINK_LOCAL
    if iface.network.overlaps(link_local):
        raise _Invalid(f"{iface.network} overlaps the IPv{iface.version} link-local range {link_local}")
    return str(iface.network)


def _peer_ip(text: str) -> str:
    """`<IP>`, `<IPv4>:<port>` or `[<IPv6>]:<port>` (Calico's processIPPort)."""
    match = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):(\d+)", text) or re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)", text)
    try:
        _address(match.group(1) if match else text)
    except _Invalid:
        raise _Invalid(f"invalid peerIP {text!r}: use <IP>, <IPv4>:<port> or [<IPv6>]:<port>") from None
    if match and not 1 <= int(match.group(2)) <= 65535:
        raise _Invalid(f"invalid port in peerIP {text!r}: must be 1-65535")
    return text


def _as_number(value: Any) -> int:
    """An integer, or a string: digits or Calico's dotted `high.low` notation; stored as an int."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii():
        if value.isdigit():
            number = int(value)
        elif re.fullmatch(r"\d+\.\d+", value):
            high, low = (int(part) for part in value.split("."))
            number = (high << 16) + low if high < 65536 and low < 65536 else None
    if number is None:
        raise _Invalid(f"invalid AS number {value!r}: an integer or 'high.low'")
    if not 1 <= number <= 4294967295:
        raise _Invalid(f"AS number {number} out of range 1-4294967295")
    return number


def _port_name_problem(name: str) -> str | None:
    """Kubernetes' IsValidPortName, which Calico applies to named ports."""
    if len(name) > 15:
        return "at most 15 characters"
    if not re.fullmatch(r"[-a-z0-9]+", name):
        return "only lower case letters, digits and '-'"
    if "--" in name or name.startswith("-") or name.endswith("-"):
        return "no '--', and no '-' at either end"
    if not re.search(r"[a-z]", name):
        return "at least one letter"
    return None


def _port_name(value: str) -> str:
    problem = _port_name_problem(value)
    if problem:
        raise _Invalid(f"invalid port name {value!r}: {problem}")
    return value


def _port_number(number: int, text: object) -> int:
    if not 1 <= number <= 65535:
        raise _Invalid(f"invalid port {text!r}: port numbers are 1-65535")
    return number


def _port(value: Any) -> int | str:
    """A number, a `min:max` range or a named port; stored as Calico marshals it (a single port,
    even written "80" or "80:80", is an int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _port_number(value, value)
    if not isinstance(value, str):
        raise _Invalid("must be a port number, a 'min:max' range or a port name")
    if value.isascii() and value.isdigit():
        return _port_number(int(value), value)
    match = re.fullmatch(r"(\d+):(\d+)", value)
    if match:
        low, high = (_port_number(int(part), value) for part in match.groups())
        if low > high:
            raise _Invalid(f"invalid port range {value!r}: the minimum is greater than the maximum")
        return low if low == high else value
    return _port_name(value)


def _protocol(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value in _PROTOCOLS:
        return value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        hint = next((f"; did you mean {name!r}?" for name in _PROTOCOLS
                     if isinstance(value, str) and name.lower() == value.lower()), "")
        raise _Invalid(f"invalid protocol {value!r}: one of {', '.join(_PROTOCOLS)} or a number 1-255{hint}")
    if not 1 <= number <= 255:
        raise _Invalid(f"invalid protocol {value!r}: protocol numbers are 1-255")
    return value if isinstance(value, int) else str(value)  # as given: a number, or digits


def _number(value: Any) -> int | float:
    """A policy order: any finite number, kept as written (100 stays 100, not 100.0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid("must be a number")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, text in value.items():
        problem = labels.key_problem(key) or labels.value_problem(text)
        if problem:
            raise _Invalid(problem, key)
    return value


def _annotations(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        problem = labels.key_problem(key.lower())
        if problem:
            raise _Invalid(problem, key)
    if sum(len(k) + len(v) for k, v in value.items()) > _ANNOTATIONS_LIMIT:
        raise _Invalid("annotations are too large (at most 256 KiB in total)")
    return value


Name = Annotated[str, _rule(_name)]
OptName = Annotated[str, _rule(_optional(_name))]
Selector = Annotated[str, _rule(_selector_text)]
Net = Annotated[str, _rule(_net)]
OptNet = Annotated[str, _rule(_optional(_net))]
CIDRv4 = Annotated[str, _rule(_optional(_cidr_of(4)))]
CIDRv6 = Annotated[str, _rule(_optional(_cidr_of(6)))]
IP = Annotated[str, _rule(_optional(_ip_of(None)))]
IPv4 = Annotated[str, _rule(_optional(_ip_of(4)))]
IPv6 = Annotated[str, _rule(_optional(_ip_of(6)))]
MAC = Annotated[str, _rule(_optional(_mac))]
ASNumber = Annotated[Any, _rule(_as_number)]
Port = Annotated[Any, _rule(_port)]
Protocol = Annotated[Any, _rule(_protocol)]
Labels = Annotated[dict[str, str], _rule(_labels)]
Annotations = Annotated[dict[str, str], _rule(_annotations)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]


def _set(value: Any) -> bool:
    """Set in Calico's sense: not None, not empty."""
    return value is not None and value not in ("", [], {})


# ------------------------------------------------------------------ shared parts

_V1_FIELDS = {"nat-outgoing": "natOutgoing", "ipip": "ipipMode"}  # v1 spellings met in v3 documents


class _Model(BaseModel):
    """Every kind and every part of one: unknown fields are kept (extra="allow") and refused
    only in strict validation, with the message an unknown field always had."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    @model_validator(mode="after")
    def _known_fields_only(self, info: ValidationInfo) -> Any:
        # A base class's validator runs before its subclasses' rules, and only once the fields
        # are valid: the order in which pydantic itself reports unknown fields (extra="forbid").
        if self.model_extra and _strict(info):
            field = next(iter(self.model_extra))
            v3_name = _V1_FIELDS.get(field)
            raise _Invalid(f"unknown field (a Calico v1 field; v3 has {v3_name})" if v3_name else "unknown field",
                           field)
        return self


class ObjectMeta(_Model):
    name: Name
    namespace: Annotated[str, _rule(_namespace)] | None = None  # defaulted by the caller
    labels: Labels | None = None
    annotations: Annotations | None = None
    # Server-set, allowed on input so `get -o yaml` output (ours, or a real cluster's, which
    # may carry any Kubernetes ObjectMeta field) can be applied back; none of them is taken
    # from input (Calico keeps only name, namespace, labels and annotations on a write): the
    # store sets creationTimestamp and uid, and the rest are dropped.
    resourceVersion: str | None = None
    creationTimestamp: str | None = None
    uid: str | None = None
    generation: int | None = None
    generateName: str | None = None
    selfLink: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: int | None = None
    ownerReferences: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managedFields: list[dict[str, Any]] | None = None


# the last two are the store's
STORED_METADATA = ("name", "namespace", "labels", "annotations", "creationTimestamp", "uid")


class Resource(_Model):
    kind: str = ""  # each kind narrows this to its own name
    apiVersion: Literal["projectcalico.org/v3"] = API_VERSION
    metadata: ObjectMeta

    namespaced: ClassVar[bool] = False
    spec_optional: ClassVar[bool] = True
    only_name: ClassVar[str | None] = None  # a singleton: the one name it may have
    name_pattern: ClassVar[re.Pattern[str] | None] = None  # stricter than a subdomain

    @model_validator(mode="before")
    @classmethod
    def _empty_spec(cls, data: Any) -> Any:
        """Kinds whose spec is all optional may omit it (or leave it null), as in Calico."""
        if cls.spec_optional and isinstance(data, dict) and data.get("spec") is None:
            return {**data, "spec": {}}
        return data

    @property
    def name(self) -> str:
        return self.metadata.name

    @_rules
    def _metadata_rules(self) -> Self:
        kind = type(self).__name__
        meta = self.metadata
        if meta.namespace is not None and not self.namespaced:
            raise _Invalid(f"not allowed: {kind} is not namespaced", "metadata", "namespace")
        if self.only_name is not None and meta.name != self.only_name:
            raise _Invalid(f"must be {self.only_name!r}: there is only one {kind}", "metadata", "name")
        if self.name_pattern is not None and not self.name_pattern.fullmatch(meta.name):
            raise _Invalid(f"invalid {kind} name {meta.name!r}: lower case letters, digits and '-', "
                           "with at most one '.'", "metadata", "name")
        return self


# ------------------------------------------------------------------ IPPool

EncapMode = Literal["Never", "Always", "CrossSubnet"]
AllowedUse = Literal["Workload", "Tunnel", "LoadBalancer"]
DEFAULT_ALLOWED_USES: tuple[AllowedUse, ...] = ("Workload", "Tunnel")
DEFAULT_ASSIGNMENT_MODE: Literal["Automatic", "Manual"] = "Automatic"


class Condition(_Model):
    """A Kubernetes metav1.Condition, as Calico reports a pool's in its status."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None
    observedGeneration: int | None = None


class IPPoolStatus(_Model):
    conditions: list[Condition] | None = None


def _stored_cidr(text: str) -> str:
    """A stored pool's CIDR, as the allocator needs it: parsed, in canonical form."""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except (ValueError, TypeError):
        raise ValueError(f"invalid CIDR {text!r}") from None


def _pool_cidr_either(text: str, info: ValidationInfo) -> str:
    return _pool_cidr(text) if _strict(info) else _stored_cidr(text)


class IPPoolSpec(_Model):
    # A field's default is what it reads as when unset (Calico's convertIpPoolFromStorage fills
    # the same); a strict validation sets them (clientv3 on every write), but natOutgoing,
    # disabled and disableBGPExport, which it stores only when given.
    cidr: Annotated[str, AfterValidator(_pool_cidr_either)]
    blockSize: int | None = None
    ipipMode: EncapMode | None = "Never"
    vxlanMode: EncapMode | None = "Never"
    natOutgoing: bool | None = False
    disabled: bool | None = False
    disableBGPExport: bool | None = False
    nodeSelector: Selector | None = "all()"
    namespaceSelector: Selector | None = None
    allowedUses: list[AllowedUse] | None = Field(default_factory=lambda: list(DEFAULT_ALLOWED_USES))
    assignmentMode: Literal["Automatic", "Manual"] | None = DEFAULT_ASSIGNMENT_MODE

    @model_validator(mode="after")
    def _calico_rules(self, info: ValidationInfo) -> Self:
        """clientv3 ippool.go validateAndSetDefaults, in its order; a stored pool's block size
        is only checked to be one the allocator can use."""
        if not _strict(info):
            return self._usable_block_size()
        net = ipaddress.ip_network(self.cidr)
        low, high, default = (20, 32, 26) if net.version == 4 else (116, 128, 122)
        if self.blockSize is None:
            self.blockSize = default
        elif not low <= self.blockSize <= high:
            raise _Invalid(f"IPv{net.version} block size must be between {low} and {high}", "blockSize")
        if not self.disabled and net.prefixlen > self.blockSize:  # Calico checks enabled pools only
            raise _Invalid(f"pool /{net.prefixlen} is smaller than one block (/{self.blockSize}): "
                           "the pool must be at least the block size", "cidr")
        self.ipipMode = self.ipipMode or "Never"
        self.vxlanMode = self.vxlanMode or "Never"
        if self.ipipMode != "Never" and self.vxlanMode != "Never":
            raise _Invalid("cannot enable both VXLAN and IPIP on the same pool", "vxlanMode")
        if net.version == 6 and self.ipipMode != "Never":
            raise _Invalid("IPIP is not supported on an IPv6 pool", "ipipMode")
        self.nodeSelector = self.nodeSelector or "all()"
        self._check_allowed_uses()
        self.allowedUses = self.allowedUses or list(DEFAULT_ALLOWED_USES)
        self.assignmentMode = self.assignmentMode or DEFAULT_ASSIGNMENT_MODE
        return self

    def _usable_block_size(self) -> Self:
        net = ipaddress.ip_network(self.cidr)
        low, high = (20, 32) if net.version == 4 else (116, 128)
        if self.blockSize is not None and not low <= self.blockSize <= high:
            raise ValueError(f"blockSize {self.blockSize} out of range {low}-{high} for IPv{net.version}")
        if self.block_prefixlen < net.prefixlen:
            raise ValueError(f"blockSize {self.block_prefixlen} is larger than the pool {self.cidr}")
        return self

    @property
    def network(self) -> "netaddr.IPNetwork":
        import netaddr  # the allocator's type; not every reader of a pool needs it

        return netaddr.IPNetwork(self.cidr)

    @property
    def for_workloads(self) -> bool:
        return "Workload" in (self.allowedUses or ["Workload"])  # empty means Calico's default

    @property
    def automatic(self) -> bool:
        """A Manual pool gives addresses only to those who name it."""
        return self.assignmentMode != "Manual"

    @property
    def block_prefixlen(self) -> int:
        if self.blockSize is not None:
            return self.blockSize
        return 26 if ":" not in self.cidr else 122

    def _check_allowed_uses(self) -> None:
        uses = self.allowedUses or []
        for i, use in enumerate(uses):
            if use in uses[:i]:
                raise _Invalid(f"{use!r} is listed more than once", "allowedUses")
        if "LoadBalancer" in uses:
            if len(uses) > 1:
                raise _Invalid("LoadBalancer cannot be combined with Workload or Tunnel", "allowedUses")
            if self.ipipMode != "Never" or self.vxlanMode != "Never":
                raise _Invalid("a LoadBalancer pool cannot use IPIP or VXLAN", "allowedUses")


class IPPool(Resource):
    kind: Literal["IPPool"] = "IPPool"
    spec: IPPoolSpec
    status: IPPoolStatus | None = None  # server-set (Calico marks a pool allocatable): accepted, not stored
    spec_optional: ClassVar[bool] = False

    @property
    def network(self) -> "netaddr.IPNetwork":
        return self.spec.network


def pool_read_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """What Calico fills in when it reads a pool stored without them (clientv3
    convertIpPoolFromStorage): so a pool written by an older version shows, and compares, as
    one written now."""
    out = dict(spec)
    if not out.get("blockSize"):
        try:
            out["blockSize"] = 26 if ipaddress.ip_network(str(out.get("cidr")), strict=False).version == 4 else 122
        except ValueError:
            pass
    out["allowedUses"] = out.get("allowedUses") or list(DEFAULT_ALLOWED_USES)
    out["nodeSelector"] = out.get("nodeSelector") or "all()"
    out["ipipMode"] = out.get("ipipMode") or "Never"
    out["vxlanMode"] = out.get("vxlanMode") or "Never"
    out["assignmentMode"] = out.get("assignmentMode") or DEFAULT_ASSIGNMENT_MODE
    return out


# ------------------------------------------------------------------ Node

class NodeBGPSpec(_Model):
    asNumber: ASNumber | None = None
    ipv4Address: CIDRv4 | None = None  # address with its subnet, e.g. 192.0.2.11/24
    ipv6Address: CIDRv6 | None = None
    ipv4IPIPTunnelAddr: IPv4 | None = None
    routeReflectorClusterID: IPv4 | None = None

    @property
    def ipv4(self) -> str | None:
        """The bare BGP address (without the prefix length)."""
        return self.ipv4Address.split("/")[0] if self.ipv4Address else None


K8S_ORCHESTRATOR = "k8s"


class OrchRef(_Model):
    """The orchestrator's node this Calico Node is (`{nodeName, orchestrator: k8s}` under Kubernetes)."""

    orchestrator: str
    nodeName: str | None = None


class NodeAddress(_Model):
    address: Net
    type: Literal["CalicoNodeIP", "InternalIP", "ExternalIP"] | None = None


class NodeSpec(_Model):
    bgp: NodeBGPSpec | None = None
    ipv4VXLANTunnelAddr: IPv4 | None = None
    vxlanTunnelMACAddr: MAC | None = None
    ipv6VXLANTunnelAddr: IPv6 | None = None
    vxlanTunnelMACAddrV6: MAC | None = None
    orchRefs: list[OrchRef] | None = None
    addresses: list[NodeAddress] | None = None

    @_rules
    def _bgp_not_empty(self) -> Self:
        if self.bgp is not None and not any(_set(v) for v in self.bgp.model_dump().values()):
            raise _Invalid("must not be empty: give ipv4Address, ipv6Address or asNumber (or leave bgp out)", "bgp")
        return self


class Node(Resource):
    kind: Literal["Node"] = "Node"
    spec: NodeSpec


# ------------------------------------------------------------------ BGP

class CIDRBlock(_Model):
    cidr: OptNet | None = None


class BGPConfigurationSpec(_Model):
    logSeverityScreen: Literal["Debug", "Info", "Warning", "Error", "Fatal"] | None = None
    nodeToNodeMeshEnabled: bool | None = None
    asNumber: ASNumber | None = None
    listenPort: PortNumber | None = None
    serviceClusterIPs: list[CIDRBlock] | None = None
    serviceExternalIPs: list[CIDRBlock] | None = None
    serviceLoadBalancerIPs: list[CIDRBlock] | None = None


_DEFAULT_ONLY = ("nodeToNodeMeshEnabled", "asNumber", "serviceClusterIPs", "serviceExternalIPs",
                 "serviceLoadBalancerIPs")


class BGPConfiguration(Resource):
    """`default` is global; `node.<name>` ones hold per-node settings (as Calico)."""

    kind: Literal["BGPConfiguration"] = "BGPConfiguration"
    spec: BGPConfigurationSpec

    @_rules
    def _default_only_fields(self) -> Self:
        """clientv3 bgpconfig.go ValidateDefaultOnlyFields."""
        if self.metadata.name != "default":
            for field in _DEFAULT_ONLY:
                if _set(getattr(self.spec, field)):
                    raise _Invalid("can only be set in the BGPConfiguration named 'default'", "spec", field)
        return self


class BGPPeerSpec(_Model):
    node: OptName | None = None
    nodeSelector: Selector | None = None
    peerIP: Annotated[str, _rule(_optional(_peer_ip))] | None = None
    asNumber: ASNumber | None = None
    peerSelector: Selector | None = None

    @_rules
    def _calico_rules(self) -> Self:
        """validator.go validateBGPPeerSpec; the last two are ours: Calico accepts a peer with no
        peerIP and no peerSelector (it peers with nothing), or a peerIP without an AS number
        (a BIRD config that cannot work) - we refuse both up front."""
        if self.node and self.nodeSelector:
            raise _Invalid("must be empty when nodeSelector is set", "node")
        if self.peerIP and self.peerSelector:
            raise _Invalid("must be empty when peerSelector is set", "peerIP")
        if self.asNumber is not None and self.peerSelector:
            raise _Invalid("must be empty when peerSelector is set (the selected nodes' AS numbers are used)",
                           "asNumber")
        if not self.peerIP and not self.peerSelector:
            raise _Invalid("required field is missing (give peerIP or peerSelector)", "peerIP")
        if self.peerIP and self.asNumber is None:
            raise _Invalid("required field is missing (a peerIP needs the peer's AS number)", "asNumber")
        return self


class BGPPeer(Resource):
    kind: Literal["BGPPeer"] = "BGPPeer"
    spec: BGPPeerSpec
    spec_optional: ClassVar[bool] = False


# ------------------------------------------------------------------ rules

class ICMPFields(_Model):
    type: Annotated[int, Field(ge=0, le=254)] | None = None
    code: Annotated[int, Field(ge=0, le=255)] | None = None

    @_rules
    def _code_needs_type(self) -> Self:
        if self.code is not None and self.type is None:  # a kernel limitation, Calico says
            raise _Invalid("an ICMP code needs an ICMP type", "code")
        return self


class ServiceAccountMatch(_Model):
    names: list[str] | None = None
    selector: Selector | None = None


class EntityRule(_Model):
    nets: list[Net] | None = None
    notNets: list[Net] | None = None
    selector: Selector | None = None
    notSelector: Selector | None = None
    namespaceSelector: Selector | None = None
    ports: list[Port] | None = None
    notPorts: list[Port] | None = None
    serviceAccounts: ServiceAccountMatch | None = None

    @_rules
    def _global_selector(self) -> Self:
        """validator.go validateEntityRule."""
        if self.selector and "global()" in self.selector:
            raise _Invalid("global() can only be used in a namespaceSelector", "selector")
        namespaces = self.namespaceSelector or ""
        if "global(" in namespaces and re.sub(r"\s", "", namespaces) != "global()":
            raise _Invalid("global() cannot be combined with other selectors", "namespaceSelector")
        return self


class RuleMetadata(_Model):
    annotations: dict[str, str] | None = None


def _supports_ports(protocol: Any) -> bool:
    return protocol in ("TCP", "UDP", "SCTP", 6, 17, 132, "6", "17", "132")


def _is_icmp(protocol: Any) -> bool:
    return protocol in ("ICMP", 1, "1")


def _is_icmpv6(protocol: Any) -> bool:
    return protocol in ("ICMPv6", 58, "58")


class Rule(_Model):
    action: Literal["Allow", "Deny", "Log", "Pass"]
    ipVersion: Literal[4, 6] | None = None
    protocol: Protocol | None = None
    notProtocol: Protocol | None = None
    icmp: ICMPFields | None = None
    notICMP: ICMPFields | None = None
    source: EntityRule | None = None
    destination: EntityRule | None = None
    metadata: RuleMetadata | None = None

    @_rules
    def _calico_rules(self) -> Self:
        """validator.go validateRule."""
        if not _supports_ports(self.protocol):
            for side in ("source", "destination"):
                entity = getattr(self, side)
                for field in ("ports", "notPorts"):
                    if entity is not None and getattr(entity, field):
                        raise _Invalid("ports are only valid with protocol TCP, UDP or SCTP", side, field)
        if self.icmp is not None and not (_is_icmp(self.protocol) or _is_icmpv6(self.protocol)):
            raise _Invalid("ICMP fields are only valid with protocol ICMP or ICMPv6", "icmp")
        if self.ipVersion is not None:
            if (_is_icmp(self.protocol) or _is_icmp(self.notProtocol)) and self.ipVersion != 4:
                raise _Invalid("must be 4 with protocol ICMP", "ipVersion")
            if (_is_icmpv6(self.protocol) or _is_icmpv6(self.notProtocol)) and self.ipVersion != 6:
                raise _Invalid("must be 6 with protocol ICMPv6", "ipVersion")
        self._check_net_versions()
        return self

    def _check_net_versions(self) -> None:
        seen: set[int] = set()
        for side in ("source", "destination"):
            entity = getattr(self, side)
            for field in ("nets", "notNets"):
                nets = getattr(entity, field) if entity is not None else None
                versions = {_interface(n).version for n in nets or ()}
                if self.ipVersion is not None and versions - {self.ipVersion}:
                    raise _Invalid(f"an IPv{(versions - {self.ipVersion}).pop()} network in a rule "
                                   f"with ipVersion {self.ipVersion}", side, field)
                if len(versions | seen) > 1:
                    raise _Invalid("the rule mixes IPv4 and IPv6 networks", side, field)
                seen |= versions


Rules = list[Rule]


# ------------------------------------------------------------------ policies and profiles

PolicyType = Literal["Ingress", "Egress"]


def default_types(spec: Any) -> list[PolicyType]:
    """Calico's `types` when none are given (clientv3 defaultPolicyTypesField): Ingress when the
    policy has no egress rules (even with no ingress rules either), Egress when it has egress
    rules only, both when it has both. Given types are kept. `spec`: a model or a mapping."""
    def get(key: str) -> Any:
        return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)
    if get("types"):
        return [kind for kind in get("types") if kind in ("Ingress", "Egress")]
    if not get("egress"):
        return ["Ingress"]
    if not get("ingress"):
        return ["Egress"]
    return ["Ingress", "Egress"]


def _default_tier(value: str) -> str:
    if value != "default":
        raise _Invalid(f"tier {value!r} is not supported: only the default tier is (tiers are not implemented)")
    return value


class _PolicySpec(_Model):
    # Current Calico prints `tier: default`; other tiers are not implemented here.
    tier: Annotated[str, _rule(_default_tier)] | None = None
    order: Annotated[Any, _rule(_number)] | None = None
    performanceHints: list[Literal["AssumeNeededOnEveryNode"]] | None = None
    selector: Selector | None = None
    types: list[PolicyType] | None = None
    ingress: Rules | None = None
    egress: Rules | None = None
    serviceAccountSelector: Selector | None = None

    @_rules
    def _policy_rules(self) -> Self:
        """validator.go validateNetworkPolicySpec; then Calico's defaults."""
        for i, kind in enumerate(self.types or ()):
            if kind in (self.types or [])[:i]:
                raise _Invalid(f"{kind!r} is listed more than once", "types")
        for field in ("selector", "serviceAccountSelector"):
            if "global()" in (getattr(self, field) or ""):
                raise _Invalid("global() can only be used in an EntityRule namespaceSelector", field)
        self.types = default_types(self)
        self.selector = self.selector or "all()"  # an empty selector means all() anyway
        return self


class NetworkPolicySpec(_PolicySpec):
    pass


class GlobalNetworkPolicySpec(_PolicySpec):
    doNotTrack: bool | None = None
    preDNAT: bool | None = None
    applyOnForward: bool | None = None
    namespaceSelector: Selector | None = None

    @_rules
    def _global_rules(self) -> Self:
        """validator.go validateGlobalNetworkPolicySpec."""
        if self.doNotTrack and self.preDNAT:
            raise _Invalid("preDNAT and doNotTrack cannot both be true", "preDNAT")
        if self.preDNAT and self.egress:
            raise _Invalid("a preDNAT policy cannot have egress rules", "egress")
        if self.preDNAT and "Egress" in (self.types or ()):
            raise _Invalid("a preDNAT policy cannot have type Egress", "types")
        if (self.doNotTrack or self.preDNAT) and not self.applyOnForward:
            raise _Invalid("must be true when preDNAT or doNotTrack is true", "applyOnForward")
        if "global()" in (self.namespaceSelector or ""):
            raise _Invalid("global() can only be used in an EntityRule namespaceSelector", "namespaceSelector")
        return self


class NetworkPolicy(Resource):
    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    spec: NetworkPolicySpec
    namespaced: ClassVar[bool] = True
    name_pattern: ClassVar[re.Pattern[str] | None] = _NETWORK_POLICY_NAME


class GlobalNetworkPolicy(Resource):
    kind: Literal["GlobalNetworkPolicy"] = "GlobalNetworkPolicy"
    spec: GlobalNetworkPolicySpec
    name_pattern: ClassVar[re.Pattern[str] | None] = _POLICY_NAME


class ProfileSpec(_Model):
    ingress: Rules | None = None
    egress: Rules | None = None
    labelsToApply: Labels | None = None


class Profile(Resource):
    kind: Literal["Profile"] = "Profile"
    spec: ProfileSpec


def allow_all_profile(name: str) -> Profile:
    """A Kubernetes namespace's profile (`kns.<namespace>`) when none exists yet: all traffic is
    allowed, policies restrict it. Older versions also gave every network this shape."""
    return Profile(metadata=ObjectMeta(name=name),
                   spec=ProfileSpec(ingress=[Rule(action="Allow")], egress=[Rule(action="Allow")]))


def network_profile(name: str) -> Profile:
    """A network's profile, as Calico's CNI plugin creates it for non-Kubernetes workloads: its
    endpoints carry the label `<name>` (empty value) and accept traffic only from endpoints that
    have it, so two networks are isolated from each other; whatever they send is allowed."""
    return Profile(metadata=ObjectMeta(name=name),
                   spec=ProfileSpec(labelsToApply={name: ""},
                                    ingress=[Rule(action="Allow", source=EntityRule(selector=f"has({name})"))],
                                    egress=[Rule(action="Allow")]))


# ------------------------------------------------------------------ WorkloadEndpoint

class IPNAT(_Model):
    internalIP: IP
    externalIP: IP

    @_rules
    def _same_version(self) -> Self:
        if (self.internalIP and self.externalIP
                and _address(self.internalIP).version != _address(self.externalIP).version):
            raise _Invalid("internalIP and externalIP must be the same IP version", "externalIP")
        return self


class WorkloadEndpointPort(_Model):
    name: Annotated[str, _rule(_optional(_port_name))] | None = None
    protocol: Protocol
    port: PortNumber
    hostPort: Annotated[int, Field(ge=0, le=65535)] | None = None
    hostIP: OptNet | None = None

    @_rules
    def _calico_rules(self) -> Self:
        if not _supports_ports(self.protocol):
            raise _Invalid("only TCP, UDP and SCTP have ports", "protocol")
        if not self.name and not self.hostPort:
            raise _Invalid("required field is missing (unless hostPort is set)", "name")
        return self


class WorkloadEndpointSpec(_Model):
    """The fields the CNI plugin always writes are required; in Kubernetes mode it also writes
    serviceAccountName, ports and ipNATs. Calico's rules."""

    orchestrator: Name
    workload: OptName | None = ""
    node: Name
    containerID: Annotated[str, _rule(_container_id)]
    pod: OptName | None = ""
    endpoint: Name
    serviceAccountName: OptName | None = None
    interfaceName: Annotated[str, _rule(_interface_name)]
    mac: MAC | None = ""
    ipNetworks: list[Net] | None = Field(default_factory=list)
    ipNATs: list[IPNAT] | None = None
    ipv4Gateway: IPv4 | None = None
    ipv6Gateway: IPv6 | None = None
    profiles: list[Name] | None = Field(default_factory=list)
    ports: list[WorkloadEndpointPort] | None = None

    @_rules
    def _calico_rules(self) -> Self:
        """validator.go validateWorkloadEndpointSpec."""
        networks = [_interface(n).network for n in self.ipNetworks or ()]
        for i, net in enumerate(networks):
            if net.num_addresses != 1:
                raise _Invalid("an endpoint network must be a single address (/32 or /128)", "ipNetworks", i)
        for i, nat in enumerate(self.ipNATs or ()):
            if nat.internalIP and not any(_address(nat.internalIP) in net for net in networks):
                raise _Invalid(f"{nat.internalIP} is not one of the endpoint's ipNetworks", "ipNATs", i, "internalIP")
        return self


class WorkloadEndpoint(Resource):
    kind: Literal["WorkloadEndpoint"] = "WorkloadEndpoint"
    spec: WorkloadEndpointSpec
    namespaced: ClassVar[bool] = True
    spec_optional: ClassVar[bool] = False


# ------------------------------------------------------------------ singletons

# IPAMConfiguration's spec as the IPAM stores it at /calico/ipam/v2/config (Calico's own JSON
# spelling), in this order: v3 name -> stored name.
_IPAM_JSON = {"strictAffinity": "strict_affinity", "autoAllocateBlocks": "auto_allocate_blocks",
              "maxBlocksPerHost": "maxBlocksPerHost"}


class IPAMConfigurationSpec(_Model):
    # Stored with defaults filled in: autoAllocateBlocks true is what Calico's IPAM assumes
    # when no configuration exists, so leaving the field out must not switch it off.
    strictAffinity: bool = False
    maxBlocksPerHost: Annotated[int, Field(ge=0)] = 0
    autoAllocateBlocks: bool = True

    @_rules
    def _stored_in_full(self) -> Self:
        for field in _IPAM_JSON:  # set, so that to_stored keeps them
            setattr(self, field, getattr(self, field))
        return self

    @classmethod
    def from_ipam_json(cls, text: str | None) -> Self:
        """The spec from what the IPAM stores (None or "": no configuration, the defaults);
        unknown fields are kept for `ipam_json`."""
        data = json.loads(text) if text else {}
        if not isinstance(data, dict):
            raise ValueError(f"the IPAM configuration must be a JSON object, not {text!r}")
        renamed = {name: data.pop(stored) for name, stored in _IPAM_JSON.items() if stored in data}
        return cls.model_validate({**data, **renamed})

    def ipam_json(self) -> str:
        """The value stored at /calico/ipam/v2/config."""
        data = self.model_dump()
        return json.dumps({**{stored: data.pop(name) for name, stored in _IPAM_JSON.items()}, **data})


class IPAMConfiguration(Resource):
    kind: Literal["IPAMConfiguration"] = "IPAMConfiguration"
    spec: IPAMConfigurationSpec
    only_name: ClassVar[str | None] = "default"


class ClusterInformationSpec(_Model):
    clusterGUID: str | None = ""
    clusterType: str | None = ""
    calicoVersion: str | None = ""
    datastoreReady: bool | None = True  # unset reads as ready (Calico's calico-node waits on False only)
    variant: str | None = None


class ClusterInformation(Resource):
    """Read-only for users (calicoctl refuses writes), but what is stored must validate."""

    kind: Literal["ClusterInformation"] = "ClusterInformation"
    spec: ClusterInformationSpec
    only_name: ClassVar[str | None] = "default"


KINDS: dict[str, type[Resource]] = {model.__name__: model for model in (
    IPPool, Node, BGPConfiguration, BGPPeer, Profile, NetworkPolicy, GlobalNetworkPolicy,
    WorkloadEndpoint, IPAMConfiguration, ClusterInformation)}


# ------------------------------------------------------------------ entry points

def validate(data: Any) -> Resource:
    """The model for `data` (by its kind), defaults applied; ValidationFailure for the first problem."""
    if not isinstance(data, dict):
        raise ValidationFailure("", "a resource must be a mapping")
    if "apiVersion" not in data:
        raise ValidationFailure("apiVersion", "required field is missing")
    if data["apiVersion"] != API_VERSION:
        raise ValidationFailure("apiVersion", f"must be {API_VERSION!r}, not {data['apiVersion']!r}")
    if "kind" not in data:
        raise ValidationFailure("kind", "required field is missing")
    kind = data["kind"]
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        hint = next((f"; did you mean {known!r}?" for known in KINDS
                     if isinstance(kind, str) and known.lower() == kind.lower()), "")
        raise ValidationFailure("kind", f"unknown kind {kind!r} (known: {', '.join(sorted(KINDS))}){hint}")
    try:
        return strictly(model, data)
    except ValidationError as exc:
        raise _first_failure(exc) from None


def to_stored(model: BaseModel) -> dict[str, Any]:
    """The plain dict calicoctl writes to etcd (of a strictly validated model): Calico's field
    names, its defaults applied, unset fields left out (a field's read default is not written
    unless Calico writes it); of the metadata only what a user may set (the etcd revision is
    the resource version, creationTimestamp and uid are the store's; status is the server's)."""
    data = model.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    data.pop("status", None)
    metadata = data.get("metadata", {})
    data["metadata"] = {key: metadata[key] for key in STORED_METADATA if key in metadata}
    return data


def to_json(resource: Resource) -> str:
    """A component's stored form: every field (unknown ones too) but the unset optional ones,
    without resourceVersion (the etcd mod revision is the resource version); the metadata
    always has its labels and annotations, as the components have always written them."""
    data = resource.model_dump(exclude_none=True)
    metadata = data.setdefault("metadata", {})
    metadata.pop("resourceVersion", None)
    metadata.setdefault("labels", {})
    metadata.setdefault("annotations", {})
    return json.dumps(data, sort_keys=True)


# ------------------------------------------------------------------ pydantic errors -> one line

_SHORT = {
    "missing": "required field is missing",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
}


def _first_failure(exc: ValidationError) -> ValidationFailure:
    error = exc.errors()[0]
    loc: tuple[Any, ...] = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, _Invalid):
        return ValidationFailure(_path(loc + cause.path), str(cause))
    return ValidationFailure(_path(loc), _message(error, loc))


def _message(error: Any, loc: tuple[Any, ...]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "literal_error":
        return f"must be {ctx['expected']}, not {error['input']!r}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, not {error['input']!r}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, not {error['input']!r}"
    if kind == "value_error" and ctx.get("error") is not None:
        return str(ctx["error"])
    return _SHORT.get(kind, str(error["msg"]))


def _path(loc: tuple[Any, ...]) -> str:
    """('spec', 'ingress', 0, 'destination', 'ports') -> 'spec.ingress[0].destination.ports'."""
    text = ""
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        is_key = i + 1 < len(loc) and loc[i + 1] == "[key]"  # a bad mapping key, not an index
        if isinstance(part, int) and not is_key:
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
