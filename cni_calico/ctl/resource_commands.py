"""calicoctl get / create / apply / replace / delete / patch.

Every document of a `-f` file is read and validated before anything is written, so a bad
document changes nothing (one line naming the file, the document and the field); then each is
applied on its own, and the outcome is summed up as Calico does (summary.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from ..datastore import Datastore
from ..model import v3
from . import documents, output, semantics, store
from .errors import CtlError
from .kinds import Kind, TableContext, by_alias, by_kind, known_kind
from .store import OperationError, Ref
from .summary import Outcome, Summary, summarize

Row = dict[str, Any]


@dataclass(frozen=True)
class Prepared:
    source: str
    kind: Kind
    stored: Row
    version: str | None  # the resourceVersion the document carries, if any

    @property
    def ref(self) -> Ref:
        return store.ref_of(self.kind, self.stored)


def kind_named(text: str) -> Kind:
    kind = by_alias(text)
    if kind is None:
        raise CtlError(f"resource type '{text}' is not supported")
    return kind


def _namespace(kind: Kind, args: argparse.Namespace) -> str | None:
    if not kind.namespaced:
        return None
    return getattr(args, "namespace", None) or "default"


def prepare(doc: documents.Document, args: argparse.Namespace) -> Prepared:
    where = documents.describe(doc)
    data = json.loads(json.dumps(doc.data))  # a private copy to default into
    kind = by_kind(str(data.get("kind", "")))
    if kind is None:
        raise CtlError(f"{where}: kind {data.get('kind')!r} is not supported")
    metadata = data.setdefault("metadata", {}) if isinstance(data.get("metadata", {}), dict) else None
    if metadata is None:
        raise CtlError(f"{where}: metadata: must be a mapping")
    if kind.namespaced:
        flag = getattr(args, "namespace", None)
        if flag and metadata.get("namespace") not in (None, flag):
            raise CtlError(f"{where}: metadata.namespace {metadata['namespace']!r} does not match -n {flag}")
        metadata.setdefault("namespace", flag or "default")
    version = metadata.get("resourceVersion")
    try:
        stored = v3.to_stored(v3.validate(data))
    except v3.ValidationFailure as exc:
        raise CtlError(f"{where}: {exc}") from None
    return Prepared(where, kind, stored, str(version) if version not in (None, "") else None)


def load_prepared(args: argparse.Namespace) -> list[Prepared]:
    try:
        docs = documents.load(args.filename, sys.stdin)
    except documents.DocumentError as exc:
        raise CtlError(str(exc)) from None
    return [prepare(doc, args) for doc in docs]


# ------------------------------------------------------------------ get

def get(ds: Datastore, args: argparse.Namespace, out: TextIO) -> int:
    """Calico's get: by name, each resource found is printed (a table each) and each one missing
    is an error line after them; without names, a listing."""
    if args.output not in output.FORMATS:
        raise CtlError(f"unrecognized output format '{args.output}'")
    try:
        kind = kind_named(args.kind)
    except CtlError as exc:
        raise CtlError(f"Failed to get resources: {exc}") from None
    namespace = None if args.all_namespaces else _namespace(kind, args)
    errors: list[str] = []
    if args.names:
        rows = []
        for name in args.names:
            if kind.namespaced and args.all_namespaces:
                errors.append("cannot use --all-namespace flag for getting a single resource")
                continue
            ref = Ref(kind, _resolve_name(ds, kind, name), namespace)
            found = store.read(ds, ref)
            if found is None:
                errors.append(str(store.not_found(ref)))
            else:
                rows.append(found[0])
        revision = 0  # a List is not printed for names
    else:
        rows, revision = store.list_all(ds, kind, namespace)
    out.write(output.render(kind, rows, args.output, named=bool(args.names), revision=revision,
                            with_namespace=bool(args.namespace) or args.all_namespaces,
                            context=_table_context(ds, kind, args.output)))
    if errors:
        raise CtlError("\n".join(errors))
    return 0


def _table_context(ds: Datastore, kind: Kind, fmt: str) -> TableContext:
    """The AS number a node inherits, read only when a node table may show it."""
    if kind.name != "Node" or fmt != "wide":
        return TableContext()
    found = store.read(ds, Ref(known_kind("BGPConfiguration"), "default"))
    asn = found[0].get("spec", {}).get("asNumber") if found else None
    return TableContext(default_as=str(asn)) if asn else TableContext()


def _resolve_name(ds: Datastore, kind: Kind, name: str) -> str:
    if kind.name == "IPPool" and "/" in name:
        return store.find_pool_by_cidr(ds, name) or name
    return name


# ------------------------------------------------------------------ create / apply / replace

# What Calico answers for the one kind calico-node owns (resourcemgr/clusterinfo.go, resourcemgr.go)
READ_ONLY = {"create": "operation create or apply is not supported on {kind}",
             "apply": "operation apply is not supported on {kind}: resource is readonly",
             "replace": "operation apply or replace is not supported on {kind}",
             "delete": "operation delete is not supported on {kind}"}


def write(ds: Datastore, verb: str, args: argparse.Namespace, out: TextIO) -> int:
    outcomes = []
    for item in load_prepared(args):
        try:
            _write_one(ds, verb, item)
            outcomes.append(Outcome(item.kind.name))
        except OperationError as exc:
            skipped = verb == "create" and getattr(args, "skip_exists", False) and \
                str(exc) == str(store.already_exists(item.ref))
            outcomes.append(Outcome(item.kind.name, None if skipped else str(exc)))
    return _report(summarize(verb, outcomes), out)


def _write_one(ds: Datastore, verb: str, item: Prepared) -> str:
    if item.kind.read_only:
        raise OperationError(READ_ONLY[verb].format(kind=item.kind.name))
    if verb == "replace" and store.read(ds, item.ref) is None:
        raise store.not_found(item.ref)
    if item.kind.name == "IPPool" and verb != "replace":  # Calico checks overlaps on create (apply tries that first)
        semantics.check_pool_overlap(ds, item.stored)
    if verb == "create":
        store.create(ds, item.kind, item.stored)
        return "created"
    if verb == "replace":
        return "replaced" if store.replace(ds, item.kind, item.stored, item.version) else "unchanged"
    return store.apply(ds, item.kind, item.stored, item.version)


def _report(summary: Summary, out: TextIO) -> int:
    out.write(summary.out)
    if summary.error is not None:
        raise CtlError(summary.error)
    return 0


# ------------------------------------------------------------------ delete

def delete(ds: Datastore, args: argparse.Namespace, out: TextIO) -> int:
    if args.filename:
        if args.kind:
            raise CtlError("give either -f FILE or a resource type and names, not both")
        targets = [(item.ref, item.version) for item in load_prepared(args)]
    else:
        if not args.kind or not args.names:
            raise CtlError("delete needs -f FILE, or a resource type and at least one name")
        kind = kind_named(args.kind)
        namespace = _namespace(kind, args)
        targets = [(Ref(kind, _resolve_name(ds, kind, n), namespace), None) for n in args.names]
    outcomes: list[Outcome] = []
    warnings: list[str] = []
    for ref, version in targets:
        try:
            if ref.kind.read_only:
                raise OperationError(READ_ONLY["delete"].format(kind=ref.kind.name))
            row = store.delete(ds, ref, version)
            warnings += _after_delete(ds, ref, row)
            outcomes.append(Outcome(ref.kind.name))
        except OperationError as exc:
            skipped = args.skip_not_exists and str(exc) == str(store.not_found(ref))
            outcomes.append(Outcome(ref.kind.name, None if skipped else str(exc)))
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return _report(summarize("delete", outcomes, by_name=not args.filename), out)


def _after_delete(ds: Datastore, ref: Ref, row: Row) -> list[str]:
    if ref.kind.name == "IPPool":
        _, in_use = semantics.release_pool_blocks(ds, row)
        if in_use:
            return [f"{ref} still had {in_use} address(es) allocated: their blocks stay until they are released "
                    "(calicoctl ipam check / ipam release)"]
    if ref.kind.name == "Node":
        return semantics.clean_up_node(ds, ref.name)
    return []


# ------------------------------------------------------------------ patch

def patch(ds: Datastore, args: argparse.Namespace, out: TextIO) -> int:
    """A JSON merge patch of one resource; the patched resource is validated like a document."""
    kind = kind_named(args.kind)
    try:
        change = json.loads(args.patch)
    except json.JSONDecodeError as exc:
        raise CtlError(f"--patch is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(change, dict):
        raise CtlError("--patch must be a JSON object")
    ref = Ref(kind, _resolve_name(ds, kind, args.name), _namespace(kind, args))
    try:
        _patch_one(ds, ref, change)
        outcome = Outcome(kind.name)
    except OperationError as exc:
        outcome = Outcome(kind.name, str(exc))
    return _report(summarize("patch", [outcome], by_name=True), out)


def _patch_one(ds: Datastore, ref: Ref, change: dict[str, Any]) -> None:
    if ref.kind.read_only:
        raise OperationError(READ_ONLY["replace"].format(kind=ref.kind.name))
    current = store.read(ds, ref)
    if current is None:
        raise store.not_found(ref)
    row, revision = current
    merged = store.merge_patch(row, change)
    merged.setdefault("metadata", {})["resourceVersion"] = str(revision)
    try:
        item = prepare(documents.Document("--patch", 1, merged), argparse.Namespace(namespace=ref.namespace))
    except CtlError as exc:  # as Calico words a patched resource the update refuses
        raise OperationError(f"updating existing resource: {str(exc).removeprefix('--patch: document 1: ')}") \
            from None
    if item.ref != ref:
        raise OperationError("updating existing resource: --patch cannot change the resource's name or namespace")
    try:
        store.replace(ds, ref.kind, item.stored, str(revision), current)
    except OperationError as exc:
        raise OperationError(f"updating existing resource: {exc}") from None
