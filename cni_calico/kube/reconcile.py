"""Calico objects a controller owns, brought to what Kubernetes calls for: every write a CAS.

A controller owns the objects of one plural whose names carry its prefix (`knp.default.`,
`kns.`, `ksa.`): it creates and updates them to the desired documents and deletes those nothing
calls for, so an object whose Kubernetes source went while no controller watched is found and
removed by the next full reconcile. Each write is conditional on the etcd revision read; a lost
race reads again (datastore.cas.retry_on_conflict).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from ..datastore import CONFLICT, Conflict, Datastore, KeyValue, retry_on_conflict
from ..model import keys

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Outcome = Literal["created", "updated", "deleted", "unchanged"]


@dataclass(frozen=True)
class Owned:
    plural: str
    name_prefix: str

    @property
    def prefix(self) -> str:
        return keys.resource_prefix(self.plural)

    def key(self, name: str, namespace: str | None = None) -> str:
        return keys.resource(self.plural, name, namespace)

    def key_of(self, document: Obj) -> str:
        meta = document["metadata"]
        return self.key(meta["name"], meta.get("namespace"))

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefix) and key.rsplit("/", 1)[-1].startswith(self.name_prefix)


def _parsed(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None  # not JSON: unequal to anything we would write, so it gets overwritten


def plan(desired: Obj | None, stored: KeyValue | None) -> tuple[Outcome, str | None]:
    """What to do about one key (pure): the outcome and the text to write (None: delete or nothing)."""
    if desired is None:
        return ("deleted", None) if stored is not None else ("unchanged", None)
    if stored is not None and _parsed(stored.value) == desired:
        return "unchanged", None
    return ("updated" if stored is not None else "created"), json.dumps(desired, sort_keys=True)


_UNREAD: Any = object()


def converge(ds: Datastore, key: str, desired: Obj | None, stored: KeyValue | None = _UNREAD) -> Outcome:
    """Make `key` hold `desired` (None: hold nothing); `stored` is what was just read there, if it
    was (a conflict reads again)."""
    already_read: list[KeyValue | None] = [] if stored is _UNREAD else [stored]

    def attempt() -> Outcome | Conflict:
        current = already_read.pop() if already_read else ds.get(key)
        outcome, text = plan(desired, current)
        if outcome == "unchanged":
            return outcome
        expect = {key: current.mod_revision if current is not None else 0}
        written = ds.txn(expect, {key: text}) if text is not None else ds.txn(expect, delete=[key])
        return outcome if written else CONFLICT

    return retry_on_conflict(attempt, f"writing {key}")


def converge_all(ds: Datastore, owned: Owned, desired: Mapping[str, Obj], keep: Iterable[str] = ()
                 ) -> dict[str, Outcome]:
    """Every owned key to its desired document, and every owned key nothing desires deleted;
    `keep` are keys to leave as they are (a source that cannot be converted right now).
    Returns the keys that changed and how."""
    kept = set(keep)
    stored = {kv.key: kv for kv in ds.list(owned.prefix) if owned.owns(kv.key)}
    changes: dict[str, Outcome] = {}
    for key in sorted(desired.keys() | stored.keys()):
        if key in kept:
            continue
        if not owned.owns(key):
            raise ValueError(f"{key} is not a key this controller owns ({owned.plural}/{owned.name_prefix}*)")
        outcome = converge(ds, key, desired.get(key), stored.get(key))
        if outcome != "unchanged":
            changes[key] = outcome
    return changes
