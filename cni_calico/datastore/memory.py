"""A store in process memory that keeps revisions exactly like etcd (fast unit tests; the
contract tests run every behaviour on it and on real etcd)."""

from __future__ import annotations

import builtins
import threading
from typing import Iterable, Mapping

from .base import Datastore, KeyValue, Watch, WatchEvent, WatchLost


class MemoryDatastore(Datastore):
    """In-process store with etcd's revision rules: one global counter bumped per write transaction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, KeyValue] = {}
        self.revision = 1  # etcd starts at 1 with an empty store
        self._history: list[WatchEvent] = []  # every change since the compaction point
        self._compacted = 1
        self._watchers: list[tuple[str, Watch]] = []

    def get(self, key: str) -> KeyValue | None:
        with self._lock:
            return self._data.get(key)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        with self._lock:
            rows = sorted(self._data.items())
            return ({key: self._data.get(key) for key in wanted},
                    {prefix: [kv for key, kv in rows if key.startswith(prefix)] for prefix in prefixes})

    def list(self, prefix: str) -> list[KeyValue]:
        with self._lock:
            return [kv for key, kv in sorted(self._data.items()) if key.startswith(prefix)]

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        put = put or {}
        delete = list(delete)
        with self._lock:
            for key, revision in expect.items():
                current = self._data.get(key)
                if (current.mod_revision if current else 0) != revision:
                    return False
            if not put and not any(k in self._data for k in delete):
                return True  # etcd does not bump the revision for a no-op
            self.revision += 1
            events = []
            for key, value in put.items():
                old = self._data.get(key)
                self._data[key] = KeyValue(key, value, self.revision, old.create_revision if old else self.revision)
                events.append(WatchEvent(key, value, self.revision))
            for key in delete:
                if self._data.pop(key, None) is not None:
                    events.append(WatchEvent(key, None, self.revision))
            self._history.extend(events)
            self._notify(events)
            return True

    def _notify(self, events: builtins.list[WatchEvent]) -> None:
        self._watchers = [(p, w) for p, w in self._watchers if not w.cancelled]
        for prefix, watch in self._watchers:
            batch = [e for e in events if e.key.startswith(prefix)]
            if batch:
                watch._deliver(batch)

    def snapshot(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        with self._lock:
            return [kv for key, kv in sorted(self._data.items()) if key.startswith(prefix)], self.revision

    def watch(self, prefix: str, start_revision: int) -> Watch:
        with self._lock:
            if start_revision <= self._compacted:
                raise WatchLost(f"revision {start_revision} has been compacted (at {self._compacted})")
            watch = Watch()
            past = [e for e in self._history if e.mod_revision >= start_revision and e.key.startswith(prefix)]
            if past:
                watch._deliver(past)
            self._watchers.append((prefix, watch))
            return watch

    def compact(self, revision: int) -> None:
        """Forget history up to `revision`, as etcd's compaction does; live watches are unaffected."""
        with self._lock:
            self._compacted = max(self._compacted, revision)
            self._history = [e for e in self._history if e.mod_revision > revision]
