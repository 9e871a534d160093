"""The documents of `calicoctl -f FILE` (`-` for stdin), as v3 resource dicts.

YAML (documents separated by `---`, empty ones skipped) or JSON (an object or an array of
objects); a top-level list and a List resource (`kind: IPPoolList` / `kind: List` with `items`)
expand to their items. Calico v1 documents - the seed's `apiVersion: v1`, `kind: ipPool` - are
converted to v3 as Calico's upgrade tool converted stored v1 data (libcalico-go
`lib/upgrade/converters`). Validation is the caller's: `v3.validate` per document, reported with
`describe(doc)`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TextIO

import yaml

from ..model import v3


@dataclass(frozen=True)
class Document:
    source: str  # the file name as given, or "stdin"
    index: int  # 1-based position among the documents of that source (after List expansion)
    data: dict[str, Any]  # in v3 form (v1 documents converted)


class DocumentError(ValueError):
    """One line naming the source and, when known, the document: `pool.yaml: document 2: ...`."""


def describe(doc: Document) -> str:
    return f"{doc.source}: document {doc.index}"


def load(path: str, stdin: TextIO | None = None) -> list[Document]:
    source, text = _read(path, stdin)
    docs: list[Document] = []
    for index, item in enumerate(_expand(_parse(source, text)), start=1):
        try:
            docs.append(Document(source, index, to_v3(_checked(item))))
        except DocumentError as exc:
            raise DocumentError(f"{source}: document {index}: {exc}") from None
    if not docs:
        raise DocumentError(f"no resources in {source}")
    return docs


# ------------------------------------------------------------------ reading and parsing

def _read(path: str, stdin: TextIO | None) -> tuple[str, str]:
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin
        try:
            return "stdin", stream.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise DocumentError(f"stdin: cannot read: {exc}") from None
    try:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    except OSError as exc:
        raise DocumentError(f"{path}: {(exc.strerror or str(exc)).lower()}") from None
    except UnicodeDecodeError:
        raise DocumentError(f"{path}: not UTF-8 text") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML with two changes: timestamps stay strings (so `creationTimestamp` from
    `get -o yaml` applies back unchanged), and a key given twice is an error rather than
    a value silently lost."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<:` merges may legitimately repeat keys
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key; construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                    f"found duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> str:
    return loader.construct_yaml_str(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _parse(source: str, text: str) -> list[Any]:
    """The top-level values: one per YAML document (empty ones dropped), or the JSON value."""
    json_error: json.JSONDecodeError | None = None
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            json_error = exc  # may still be YAML flow style: `{kind: IPPool, ...}`
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        if json_error is not None and source.endswith(".json"):
            raise DocumentError(f"{source}: line {json_error.lineno}: invalid JSON: {json_error.msg}") from None
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DocumentError(f"{source}: {where}invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"{source}: invalid YAML: {exc}") from None


def _expand(values: list[Any]) -> Iterator[Any]:
    """Top-level lists and List resources become their items; anything else is one document."""
    for value in values:
        if isinstance(value, list):
            yield from _expand_items(value, None)
        elif _is_list(value):
            yield from _expand_items(_items(value), value)
        else:
            yield value


def _is_list(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("kind"), str) and value["kind"].endswith("List")


def _items(value: dict[str, Any]) -> Any:
    """A List's items: absent or null is an empty list; anything else is judged by _expand_items."""
    items = value.get("items")
    return [] if items is None else items


def _expand_items(items: Any, parent: dict[str, Any] | None) -> Iterator[Any]:
    if not isinstance(items, list):
        yield _NotAList(items)
        return
    for listed in items:
        item = _inheriting(listed, parent)
        if _is_list(item):
            yield from _expand_items(_items(item), item)
        else:
            yield item


def _inheriting(item: Any, parent: dict[str, Any] | None) -> Any:
    """Items of a List take its apiVersion (and, in an IPPoolList, its kind) when they lack one."""
    if not isinstance(item, dict) or parent is None:
        return item
    if "apiVersion" in parent:
        item = {"apiVersion": parent["apiVersion"], **item}
    if parent["kind"] != "List":
        item = {"kind": parent["kind"][:-len("List")], **item}
    return item


@dataclass(frozen=True)
class _NotAList:
    """A List whose `items` is not a list: reported in its place."""

    items: Any


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for kind, name in ((list, "a list"), (str, "a string"), ((int, float), "a number"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _checked(item: Any) -> dict[str, Any]:
    if isinstance(item, _NotAList):
        raise DocumentError(f"items: must be a list, not {_type_name(item.items)}")
    if not isinstance(item, dict):
        raise DocumentError(f"a resource must be a mapping, not {_type_name(item)}")
    for field in ("apiVersion", "kind"):
        if field not in item:
            raise DocumentError(f"{field}: required field is missing")
        if not isinstance(item[field], str):
            raise DocumentError(f"{field}: must be a string, not {_type_name(item[field])}")
    return item


# ------------------------------------------------------------------ Calico v1 -> v3

def to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """`data` in v3 form: v1 documents converted, anything else returned as it is (v3.validate
    judges it). Raises DocumentError naming the v1 field that cannot be converted."""
    if data.get("apiVersion") != "v1":
        return data
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _V1_KINDS:
        hint = (f"; for the v3 kind use apiVersion: {v3.API_VERSION}"
                if isinstance(kind, str) and kind in v3.KINDS else "")
        raise DocumentError(f"kind: cannot convert Calico v1 {kind!r} "
                            f"(convertible: {', '.join(sorted(_V1_KINDS))}){hint}")
    convert = _V1_KINDS[kind]
    _fields(data, "", {"apiVersion", "kind", "metadata", "spec"}, {"metadata"})
    metadata_fields, required = _V1_METADATA[kind]
    return convert(_fields(data["metadata"], "metadata", metadata_fields, required),
                   _fields(data.get("spec") or {}, "spec", _V1_SPEC[kind]))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _fields(value: Any, path: str, allowed: set[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """v1 documents are checked as strictly as v3 ones: a misspelt v1 field is an error too."""
    if not isinstance(value, dict):
        raise DocumentError(f"{path}: must be a mapping, not {_type_name(value)}")
    for key in value:
        if key not in allowed:
            raise DocumentError(f"{_join(path, key)}: unknown field")
    for key in sorted(required):
        if key not in value:
            raise DocumentError(f"{_join(path, key)}: required field is missing")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise DocumentError(f"{path}: must be true or false")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise DocumentError(f"{path}: must be a non-empty string")
    return value


def _v1_interface(value: Any, path: str, what: str, *, prefix: bool | None = None
                  ) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """`prefix`: True needs `/len`, False forbids it, None allows either."""
    text = _string(value, path)
    if text.isascii() and "%" not in text and prefix in (None, "/" in text):
        try:
            return ipaddress.ip_interface(text)
        except ValueError:
            pass
    raise DocumentError(f"{path}: invalid {what} {text!r}")


def _v3(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": v3.API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


# Names, as the upgrade tool's names.go makes them.

def _normalize_name(name: str) -> str:
    """Lower case; '/' -> '.'; other characters outside [-.a-z0-9] -> '-'; a run of '.'/'-'
    holding a '.' -> '.'; no leading or trailing '.'/'-'."""
    name = name.lower().replace("/", ".")
    name = re.sub(r"[^-.a-z0-9]+", "-", name)
    name = re.sub(r"[.-]*\.[.-]*", ".", name)
    return name.strip(".-")


def _qualified_name(name: str) -> str:
    """The normalised name, with 8 hex of sha1(original) appended when normalising changed it
    (so two v1 names that normalise alike stay distinct)."""
    normal = _normalize_name(name)
    return name if normal == name else f"{normal}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _ip_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """1-2-3-4, or the IPv6 address fully expanded with '-' (00aa-00bb-0000-...)."""
    return str(address).replace(".", "-") if address.version == 4 else address.exploded.replace(":", "-")


def _cidr_name(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """10.100.0.0/16 -> 10-100-0-0-16 (the upgrade tool's cidrToName)."""
    return str(network).replace(".", "-").replace(":", "-").replace("/", "-")


# ipPool

def _ip_pool(metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    # v1 parsed the CIDR with Go's ParseCIDR, which masks host bits: 10.100.0.1/16 was 10.100.0.0/16
    network = _v1_interface(metadata["cidr"], "metadata.cidr", "CIDR", prefix=True).network
    out: dict[str, Any] = {"cidr": str(network), "ipipMode": _ipip_mode(spec.get("ipip")),
                           "natOutgoing": _bool(spec.get("nat-outgoing", False), "spec.nat-outgoing")}
    if "disabled" in spec:
        out["disabled"] = _bool(spec["disabled"], "spec.disabled")
    return _v3("IPPool", {"name": _cidr_name(network)}, out)


def _ipip_mode(ipip: Any) -> str:
    """No ipip or enabled false -> Never; enabled with mode cross-subnet -> CrossSubnet;
    enabled otherwise (mode always or none) -> Always."""
    if ipip is None:
        return "Never"
    _fields(ipip, "spec.ipip", {"enabled", "mode"})
    mode = ipip.get("mode", "")
    if mode not in ("", "always", "cross-subnet"):
        raise DocumentError(f"spec.ipip.mode: must be 'always' or 'cross-subnet', not {mode!r}")
    if not _bool(ipip.get("enabled", False), "spec.ipip.enabled"):
        return "Never"
    return "CrossSubnet" if mode == "cross-subnet" else "Always"


# bgpPeer

def _bgp_peer(metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    address = _v1_interface(metadata["peerIP"], "metadata.peerIP", "IP address", prefix=False)
    scope, node = metadata.get("scope"), metadata.get("node")
    out: dict[str, Any] = {"peerIP": str(address.ip)}
    if "asNumber" in spec:
        out["asNumber"] = spec["asNumber"]  # its form is v3.validate's to judge
    if scope == "global":
        if node:
            raise DocumentError("metadata.node: must be empty when the scope is global")
        return _v3("BGPPeer", {"name": _ip_name(address.ip)}, out)
    if scope == "node":
        out["node"] = _normalize_name(_string(node, "metadata.node"))  # node names get no qualifier
        return _v3("BGPPeer", {"name": f"{out['node']}.{_ip_name(address.ip)}"}, out)
    raise DocumentError(f"metadata.scope: must be 'global' or 'node', not {scope!r}")


# node

def _node(metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.get("bgp") is not None:
        bgp = _fields(spec["bgp"], "spec.bgp", {"asNumber", "ipv4Address", "ipv6Address"})
        if not bgp.get("ipv4Address") and not bgp.get("ipv6Address"):
            raise DocumentError("spec.bgp: needs ipv4Address or ipv6Address")
        out["bgp"] = {key: value for key, value in bgp.items() if key == "asNumber"}
        for key, version in (("ipv4Address", 4), ("ipv6Address", 6)):
            if bgp.get(key):
                # the address with its subnet; without one, a full mask (as the upgrade tool)
                iface = _v1_interface(bgp[key], f"spec.bgp.{key}", f"IPv{version} address")
                if iface.version != version:
                    raise DocumentError(f"spec.bgp.{key}: invalid IPv{version} address {bgp[key]!r}")
                out["bgp"][key] = str(iface)
    if spec.get("orchRefs") is not None:
        if not isinstance(spec["orchRefs"], list):
            raise DocumentError("spec.orchRefs: must be a list")
        out["orchRefs"] = [_fields(ref, f"spec.orchRefs[{i}]", {"nodeName", "orchestrator"}, {"orchestrator"})
                           for i, ref in enumerate(spec["orchRefs"])]
    return _v3("Node", {"name": _normalize_name(_string(metadata.get("name"), "metadata.name"))}, out)


# profile

def _profile(metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    name = _string(metadata.get("name"), "metadata.name")
    if name.startswith("k8s_ns."):  # v1's namespace profiles are v3's kns.<namespace>
        name = "kns." + name[len("k8s_ns."):]
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise DocumentError(f"metadata.labels: must be a mapping, not {_type_name(labels)}")
    labels = dict(labels)
    tags = metadata.get("tags") or []
    if not isinstance(tags, list):
        raise DocumentError("metadata.tags: must be a list")
    for i, tag in enumerate(tags):  # v3 has no tags: a tag becomes a label with an empty value
        if tag in labels:
            raise DocumentError(f"metadata.tags[{i}]: tag {tag!r} clashes with the label of the same name")
        labels[tag] = ""
    out: dict[str, Any] = {}
    for direction in ("ingress", "egress"):
        rules = spec.get(direction)
        if rules is not None:
            if not isinstance(rules, list):
                raise DocumentError(f"spec.{direction}: must be a list")
            out[direction] = [_rule(rule, f"spec.{direction}[{i}]") for i, rule in enumerate(rules)]
    if labels:
        out["labelsToApply"] = labels
    return _v3("Profile", {"name": _qualified_name(name)}, out)


_V1_RULE = {"action", "ipVersion", "protocol", "notProtocol", "icmp", "notICMP", "source", "destination"}
_V1_ENTITY = {"tag", "net", "nets", "selector", "ports", "notTag", "notNet", "notNets", "notSelector", "notPorts"}
_V3_PROTOCOLS = {name.lower(): name for name in ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")}
_V3_ACTIONS = {"allow": "Allow", "deny": "Deny", "log": "Log", "pass": "Pass", "next-tier": "Pass", "": "Allow"}


def _rule(rule: Any, path: str) -> dict[str, Any]:
    """The upgrade tool's rule conversion: actions and protocol names in v3 spelling, `net`
    folded into `nets`, tags into selectors, calico/k8s_ns into projectcalico.org/namespace."""
    _fields(rule, path, _V1_RULE)
    out: dict[str, Any] = {}
    for key, value in rule.items():
        if key == "action":
            out[key] = _V3_ACTIONS.get(value.lower(), value) if isinstance(value, str) else value
        elif key in ("protocol", "notProtocol"):
            out[key] = _V3_PROTOCOLS.get(value.lower(), value) if isinstance(value, str) else value
        elif key in ("source", "destination"):
            entity = _entity(value, _join(path, key))
            if entity:
                out[key] = entity
        else:
            out[key] = value
    out.setdefault("action", "Allow")  # v1's empty action meant allow
    return out


def _entity(entity: Any, path: str) -> dict[str, Any]:
    _fields(entity, path, _V1_ENTITY)
    out: dict[str, Any] = {}
    for negated in (False, True):
        _entity_half(entity, path, out, (lambda name: "not" + name[0].upper() + name[1:]) if negated else str)
    return out


def _entity_half(entity: dict[str, Any], path: str, out: dict[str, Any], key: Callable[[str], str]) -> None:
    """One polarity of an entity rule: `key` names its fields (nets, or notNets)."""
    nets = entity.get(key("nets")) or []
    if not isinstance(nets, list):
        raise DocumentError(f"{_join(path, key('nets'))}: must be a list")
    if entity.get(key("net")):
        nets = [*nets, entity[key("net")]]
    if nets:
        out[key("nets")] = [_masked(n) for n in nets]
    selector = str(entity.get(key("selector")) or "").replace("calico/k8s_ns", "projectcalico.org/namespace")
    tag = entity.get(key("tag"))
    if tag:
        selector = f"({selector}) && {tag} == ''" if selector else f"{tag} == ''"
    if selector:
        out[key("selector")] = selector
    if entity.get(key("ports")):
        out[key("ports")] = entity[key("ports")]


def _masked(net: Any) -> Any:
    """v1 nets were normalised to their network; an unparsable one is left for v3.validate."""
    try:
        return str(ipaddress.ip_interface(net).network) if isinstance(net, str) and "/" in net else net
    except ValueError:
        return net


_V1_KINDS = {"ipPool": _ip_pool, "bgpPeer": _bgp_peer, "node": _node, "profile": _profile}
_V1_METADATA = {  # (allowed, required)
    "ipPool": ({"cidr"}, {"cidr"}),
    "bgpPeer": ({"scope", "node", "peerIP"}, {"scope", "peerIP"}),
    "node": ({"name"}, {"name"}),
    "profile": ({"name", "labels", "tags"}, {"name"}),
}
_V1_SPEC = {"ipPool": {"ipip", "nat-outgoing", "disabled"}, "bgpPeer": {"asNumber"},
            "node": {"bgp", "orchRefs"}, "profile": {"ingress", "egress"}}
