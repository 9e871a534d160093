"""calicoctl get / create / apply / replace / delete / patch.

Every document of a `-f` file is read and validated before anything is written, so a bad
document changes nothing; then each is applied on its own and its outcome reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from .. import v3
from ..datastore import Datastore
from . import documents, output, semantics, store
from .errors import CtlError
from .kinds import Kind, by_alias, by_kind, names
from .store import OperationError, Ref

Row = dict[str, Any]
PAST = {"create": "created", "apply": "applied", "replace": "replaced", "delete": "deleted", "patch": "patched"}


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
        raise CtlError(f"resource type '{text}' is not supported (known: {names()})")
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
    kind = kind_named(args.kind)
    namespace = None if args.all_namespaces else _namespace(kind, args)
    if args.names:
        rows = []
        for name in args.names:
            ref = Ref(kind, _resolve_name(ds, kind, name), namespace)
            found = store.read(ds, ref)
            if found is None:
                raise CtlError(f"resource does not exist: {ref}")
            rows.append(found[0])
        revision = ds.snapshot("/calico/resources/")[1]
    else:
        rows, revision = store.list_all(ds, kind, namespace)
    out.write(output.render(kind, rows, args.output, single=len(args.names) == 1, revision=revision,
                            all_namespaces=args.all_namespaces))
    return 0


def _resolve_name(ds: Datastore, kind: Kind, name: str) -> str:
    if kind.name == "IPPool" and "/" in name:
        return store.find_pool_by_cidr(ds, name) or name
    return name


# ------------------------------------------------------------------ create / apply / replace

def write(ds: Datastore, verb: str, args: argparse.Namespace, out: TextIO) -> int:
    prepared = load_prepared(args)
    for item in prepared:
        if item.kind.read_only:
            raise CtlError(f"{item.source}: {item.kind.name} is read-only")
    outcomes: list[tuple[Prepared, str | None, str]] = []  # (item, error, what happened)
    for item in prepared:
        try:
            outcomes.append((item, None, _write_one(ds, verb, item)))
        except OperationError as exc:
            outcomes.append((item, str(exc), ""))
    return report(verb, outcomes, out)


def _write_one(ds: Datastore, verb: str, item: Prepared) -> str:
    if verb == "replace" and store.read(ds, item.ref) is None:
        raise OperationError(f"resource does not exist: {item.ref}")
    if item.kind.name == "IPPool":
        semantics.check_pool_overlap(ds, item.stored)
    if verb == "create":
        store.create(ds, item.kind, item.stored)
        return "created"
    if verb == "replace":
        return "replaced" if store.replace(ds, item.kind, item.stored, item.version) else "unchanged"
    return store.apply(ds, item.kind, item.stored, item.version)


def report(verb: str, outcomes: list[tuple[Prepared, str | None, str]], out: TextIO) -> int:
    """Calico's summary line; with several documents, a line per document first."""
    failed = [(item, error) for item, error, _ in outcomes if error]
    if len(outcomes) > 1:
        for item, error, what in outcomes:
            out.write(f"{item.ref}: {'failed: ' + error if error else what}\n")
    kinds = {item.kind.name for item, _, _ in outcomes}
    noun = f"'{next(iter(kinds))}' resource(s)" if len(kinds) == 1 else "resource(s)"
    done = len(outcomes) - len(failed)
    if not failed:
        out.write(f"Successfully {PAST[verb]} {done} {noun}\n")
        return 0
    if len(outcomes) == 1:
        item, error = failed[0]
        raise CtlError(f"Failed to {verb} '{item.kind.name}' resource: [{error}]")
    raise CtlError(f"{verb}: {done} of {len(outcomes)} {noun} {PAST[verb]}, {len(failed)} failed")


# ------------------------------------------------------------------ delete

def delete(ds: Datastore, args: argparse.Namespace, out: TextIO) -> int:
    if args.filename:
        if args.kind:
            raise CtlError("give either -f FILE or a resource type and names, not both")
        targets = [(item, item.ref, item.version) for item in load_prepared(args)]
    else:
        if not args.kind or not args.names:
            raise CtlError("delete needs -f FILE, or a resource type and at least one name")
        kind = kind_named(args.kind)
        namespace = _namespace(kind, args)
        targets = [(None, Ref(kind, _resolve_name(ds, kind, n), namespace), None) for n in args.names]
    for _, ref, _ in targets:
        if ref.kind.read_only:
            raise CtlError(f"{ref.kind.name} is read-only")
    outcomes: list[tuple[Prepared, str | None, str]] = []
    warnings: list[str] = []
    for item, ref, version in targets:
        shown = item or Prepared(str(ref), ref.kind, {"metadata": {"name": ref.name, "namespace": ref.namespace}},
                                 None)
        try:
            row = store.delete(ds, ref, version)
            warnings += _after_delete(ds, ref, row)
            outcomes.append((shown, None, "deleted"))
        except OperationError as exc:
            if args.skip_not_exists and str(exc).startswith("resource does not exist"):
                outcomes.append((shown, None, "not found (skipped)"))
                continue
            outcomes.append((shown, str(exc), ""))
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return report("delete", outcomes, out)


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
    kind = kind_named(args.kind)
    if kind.read_only:
        raise CtlError(f"{kind.name} is read-only")
    try:
        change = json.loads(args.patch)
    except json.JSONDecodeError as exc:
        raise CtlError(f"--patch is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(change, dict):
        raise CtlError("--patch must be a JSON object")
    ref = Ref(kind, _resolve_name(ds, kind, args.name), _namespace(kind, args))
    current = store.read(ds, ref)
    if current is None:
        raise CtlError(f"resource does not exist: {ref}")
    row, revision = current
    merged = store.merge_patch(row, change)
    merged.setdefault("metadata", {})["resourceVersion"] = str(revision)
    doc = documents.Document("--patch", 1, merged)
    item = prepare(doc, argparse.Namespace(namespace=ref.namespace))
    if item.ref != ref:
        raise CtlError("--patch cannot change the resource's name or namespace")
    try:
        if kind.name == "IPPool":
            semantics.check_pool_overlap(ds, item.stored)
        store.replace(ds, kind, item.stored, str(revision), current)
    except OperationError as exc:
        raise CtlError(f"Failed to patch '{kind.name}' resource: [{exc}]") from None
    out.write(f"Successfully patched 1 '{kind.name}' resource\n")
    return 0

