"""Reading and writing resources for calicoctl: every write a compare-and-swap on the etcd revision.

The etcd mod revision is the resourceVersion users see; a write that carries one is refused when
the resource changed since (optimistic concurrency). Server fields (creationTimestamp, uid) are set
on create and carried over on every update.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import netaddr

from ..datastore import Datastore
from .kinds import Kind, known_kind

Row = dict[str, Any]
SERVER_FIELDS = ("resourceVersion", "creationTimestamp", "uid")


class OperationError(Exception):
    """One resource's operation failed; the message is Calico's (libcalico-go's error texts)."""


def not_found(ref: Ref) -> OperationError:
    # etcd's "no such key" carries no inner error, which Calico prints as it is
    return OperationError(f"resource does not exist: {ref} with error: <nil>")


def already_exists(ref: Ref) -> OperationError:
    return OperationError(f"resource already exists: {ref}")


def update_conflict(ref: Ref) -> OperationError:
    return OperationError(f"update conflict: {ref}")


def field_error(field: str, value: object, reason: str) -> OperationError:
    """libcalico-go's validation error for one field."""
    return OperationError(f"error with field {field} = '{value}' ({reason})")


@dataclass(frozen=True)
class Ref:
    kind: Kind
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.kind.namespaced and self.namespace else ""
        return f"{self.kind.name}({where}{self.name})"

    @property
    def key(self) -> str:
        return self.kind.key(self.name, self.namespace)


def ref_of(kind: Kind, stored: Row) -> Ref:
    meta = stored.get("metadata", {})
    return Ref(kind, meta.get("name", ""), meta.get("namespace") if kind.namespaced else None)


def read(ds: Datastore, ref: Ref) -> tuple[Row, int] | None:
    kv = ds.get(ref.key)
    if kv is None:
        return None
    return _with_version(ref.kind, kv.value, kv.mod_revision), kv.mod_revision


def list_all(ds: Datastore, kind: Kind, namespace: str | None) -> tuple[list[Row], int]:
    """Every resource of a kind (in one namespace, or all when None), and the store revision."""
    rows, revision = ds.snapshot(kind.prefix(namespace))
    if kind.name == "IPAMConfiguration":
        rows = [kv for kv in rows if kv.key == kind.key("default")]
    return [_with_version(kind, kv.value, kv.mod_revision) for kv in rows], revision


def _with_version(kind: Kind, value: str, revision: int) -> Row:
    row = kind.decode(value)
    row.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return row


def find_pool_by_cidr(ds: Datastore, cidr: str) -> str | None:
    """`calicoctl get pool 10.100.0.0/16`: the seed's way of naming a pool."""
    try:
        wanted = netaddr.IPNetwork(cidr).cidr
    except (netaddr.AddrFormatError, ValueError):
        return None
    rows, _ = list_all(ds, known_kind("IPPool"), None)
    for row in rows:
        try:
            if netaddr.IPNetwork(row["spec"]["cidr"]).cidr == wanted:
                return str(row["metadata"]["name"])
        except (KeyError, netaddr.AddrFormatError, ValueError):
            continue
    return None


def _content(row: Row) -> Row:
    out = copy.deepcopy(row)
    for name in SERVER_FIELDS:
        out.get("metadata", {}).pop(name, None)
    return out


def _check_version(ref: Ref, requested: str | None, current_revision: int) -> None:
    if requested not in (None, "") and requested != str(current_revision):
        raise update_conflict(ref)


def create(ds: Datastore, kind: Kind, stored: Row) -> Row:
    ref = ref_of(kind, stored)
    row = _content(stored)
    if kind.name != "IPAMConfiguration":
        row["metadata"]["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        row["metadata"]["uid"] = str(uuid.uuid4())
    if not ds.create(ref.key, kind.encode(row)):
        raise already_exists(ref)
    return row


def replace(ds: Datastore, kind: Kind, stored: Row, requested_version: str | None,
            current: tuple[Row, int] | None = None) -> bool:
    """Update an existing resource; False when it already had exactly this content (nothing written)."""
    ref = ref_of(kind, stored)
    current = current or read(ds, ref)
    if current is None:
        raise not_found(ref)
    existing, revision = current
    _check_version(ref, requested_version, revision)
    _check_immutable(ref, existing, stored)
    row = _content(stored)
    for name in ("creationTimestamp", "uid"):
        if name in existing.get("metadata", {}):
            row["metadata"][name] = existing["metadata"][name]
    as_stored = copy.deepcopy(existing)
    as_stored["metadata"].pop("resourceVersion", None)
    if as_stored == row:
        return False
    if not ds.update(ref.key, kind.encode(row), revision):
        raise update_conflict(ref)
    return True


def apply(ds: Datastore, kind: Kind, stored: Row, requested_version: str | None) -> str:
    """Create or replace; returns what happened: "created", "updated" or "unchanged"."""
    current = read(ds, ref_of(kind, stored))
    if current is None:  # Calico creates it, whatever resourceVersion the document carries
        create(ds, kind, stored)
        return "created"
    return "updated" if replace(ds, kind, stored, requested_version, current) else "unchanged"


def delete(ds: Datastore, ref: Ref, requested_version: str | None = None) -> Row:
    current = read(ds, ref)
    if current is None:
        raise not_found(ref)
    row, revision = current
    _check_version(ref, requested_version, revision)
    if not ds.delete(ref.key, revision):
        raise update_conflict(ref)
    return row


_IMMUTABLE = {"cidr": ("CIDR", "CIDR"), "blockSize": ("BlockSize", "BlockSize")}  # field -> Go names


def _check_immutable(ref: Ref, existing: Row, new: Row) -> None:
    for name in ref.kind.immutable:
        before, after = existing.get("spec", {}).get(name), new.get("spec", {}).get(name)
        if name == "cidr" and before and after:
            before, after = str(netaddr.IPNetwork(before).cidr), str(netaddr.IPNetwork(after).cidr)
        if before is not None and before != after:
            go_field, word = _IMMUTABLE[name]
            raise field_error(f"{ref.kind.name}.Spec.{go_field}", after,
                              f"{ref.kind.name} {word} cannot be modified")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null deletes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
