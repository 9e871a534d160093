"""Objects, one global resourceVersion, and a bounded history of changes (the etcd behind the API).

Every change takes the next resourceVersion and is kept in the history until the history is
compacted (explicitly, or by dropping the oldest changes past `history_limit`). Reads and
watches at versions before the oldest kept change are refused, as etcd refuses them after a
compaction: this is what makes a client see `410 Gone`.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator

Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: str  # ResourceType.id
    obj: dict[str, Any]  # the state after (DELETED: the last state, at the deletion's version)
    prev: dict[str, Any] | None  # the state before (None for ADDED)


class TooOld(Exception):
    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class ObjectStore:
    def __init__(self, history_limit: int = 10_000, first_rv: int = 1) -> None:
        self.history_limit = history_limit
        self.lock = threading.RLock()  # held by the registry across a read-modify-write
        self._changed = threading.Condition(self.lock)
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {}
        self._history: deque[Change] = deque()
        self._rv = first_rv
        self._horizon = first_rv  # every change with rv > horizon is kept
        self._closed = False

    @property
    def rv(self) -> int:
        return self._rv

    @property
    def horizon(self) -> int:
        return self._horizon

    def get(self, resource: str, key: Key) -> dict[str, Any] | None:
        with self.lock:
            obj = self._objects.get(resource, {}).get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = self._objects.get(resource, {})
            return [copy.deepcopy(found[k]) for k in sorted(found) if namespace is None or k[0] == namespace]

    def items_at(self, resource: str, rv: int, namespace: str | None = None) -> list[dict[str, Any]]:
        """The objects as they were at `rv`, rebuilt by undoing the later changes."""
        with self.lock:
            if rv < self._horizon:
                raise TooOld(rv, self._horizon)
            state = dict(self._objects.get(resource, {}))
            for change in reversed(self._history):
                if change.rv <= rv:
                    break
                if change.resource != resource:
                    continue
                if change.prev is None:
                    state.pop(key_of(change.obj), None)
                else:
                    state[key_of(change.prev)] = change.prev
            return [copy.deepcopy(state[k]) for k in sorted(state) if namespace is None or k[0] == namespace]

    def commit(self, resource: str, obj: dict[str, Any], change_type: str) -> dict[str, Any]:
        """Store (ADDED, MODIFIED) or remove (DELETED) an object at the next version; returns a copy."""
        with self.lock:
            objects = self._objects.setdefault(resource, {})
            key = key_of(obj)
            prev = objects.get(key)
            if (change_type == "ADDED") != (prev is None):
                raise RuntimeError(f"{change_type} of {resource} {key}: present={prev is not None}")
            self._rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self._rv)
            if change_type == "DELETED":
                del objects[key]
            else:
                objects[key] = stored
            self._history.append(Change(self._rv, change_type, resource, stored, prev))
            while len(self._history) > self.history_limit:
                self._horizon = self._history.popleft().rv
            self._changed.notify_all()
            return copy.deepcopy(stored)

    def changes_after(self, rv: int) -> list[Change]:
        with self.lock:
            if rv < self._horizon:
                raise TooOld(rv, self._horizon)
            return [c for c in self._history if c.rv > rv]

    def wait_for_change(self, after_rv: int, timeout: float) -> bool:
        """Block until a change past `after_rv` exists, the store closes, or `timeout` passes."""
        with self.lock:
            return self._changed.wait_for(lambda: self._rv > after_rv or self._closed, timeout)

    def compact(self, rv: int | None = None) -> int:
        """Forget the changes up to `rv` (default: all): older versions then read as 410 Gone."""
        with self.lock:
            upto = self._rv if rv is None else min(rv, self._rv)
            while self._history and self._history[0].rv <= upto:
                self._history.popleft()
            self._horizon = max(self._horizon, upto)
            return self._horizon

    def history(self) -> Iterator[Change]:
        with self.lock:
            return iter(list(self._history))

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
