"""A store in process memory that keeps revisions exactly like etcd (fast unit tests; the
contract tests run every behaviour on it and on real etcd)."""

from __future__ import annotations

import builtins
import itertools
import threading
import time
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
        self._lease_ids = itertools.count(0x6A11_0000)  # any ids: etcd's are opaque too
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, deadline on the monotonic clock)
        self._key_lease: dict[str, int] = {}

    def _expire_leases(self) -> None:
        """Delete the keys of expired leases, one revision per lease as etcd's revoke. Called under
        the lock at every operation, so an expiry is seen by the first reader after the deadline
        (a watcher alone, reading nothing, sees it with the next operation anyone makes)."""
        now = time.monotonic()
        for lease_id in [i for i, (_, deadline) in self._leases.items() if deadline <= now]:
            self._end_lease(lease_id)

    def _end_lease(self, lease_id: int) -> None:
        self._leases.pop(lease_id, None)
        bound = sorted(key for key, owner in self._key_lease.items() if owner == lease_id)
        if bound:
            self._write({}, bound)

    def get(self, key: str) -> KeyValue | None:
        with self._lock:
            self._expire_leases()
            return self._data.get(key)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        with self._lock:
            self._expire_leases()
            rows = sorted(self._data.items())
            return ({key: self._data.get(key) for key in wanted},
                    {prefix: [kv for key, kv in rows if key.startswith(prefix)] for prefix in prefixes})

    def list(self, prefix: str) -> list[KeyValue]:
        with self._lock:
            self._expire_leases()
            return [kv for key, kv in sorted(self._data.items()) if key.startswith(prefix)]

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        put = put or {}
        delete = list(delete)
        with self._lock:
            self._expire_leases()
            if not self._expected(expect):
                return False
            self._write(put, delete)
            return True

    def _expected(self, expect: Mapping[str, int]) -> bool:
        for key, revision in expect.items():
            current = self._data.get(key)
            if (current.mod_revision if current else 0) != revision:
                return False
        return True

    def _write(self, put: Mapping[str, str], delete: Iterable[str], lease_id: int | None = None) -> None:
        """Apply the writes as one revision (none for a no-op, as etcd); a put binds the key to
        `lease_id`, or unbinds it from any lease (etcd's put without a lease does the same)."""
        delete = list(delete)
        if not put and not any(k in self._data for k in delete):
            return
        self.revision += 1
        events = []
        for key, value in put.items():
            old = self._data.get(key)
            self._data[key] = KeyValue(key, value, self.revision, old.create_revision if old else self.revision)
            self._key_lease.pop(key, None)
            if lease_id is not None:
                self._key_lease[key] = lease_id
            events.append(WatchEvent(key, value, self.revision))
        for key in delete:
            self._key_lease.pop(key, None)
            if self._data.pop(key, None) is not None:
                events.append(WatchEvent(key, None, self.revision))
        self._history.extend(events)
        self._notify(events)

    def _notify(self, events: builtins.list[WatchEvent]) -> None:
        self._watchers = [(p, w) for p, w in self._watchers if not w.cancelled]
        for prefix, watch in self._watchers:
            batch = [e for e in events if e.key.startswith(prefix)]
            if batch:
                watch._deliver(batch)

    def snapshot(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        with self._lock:
            self._expire_leases()
            return [kv for key, kv in sorted(self._data.items()) if key.startswith(prefix)], self.revision

    def watch(self, prefix: str, start_revision: int) -> Watch:
        with self._lock:
            self._expire_leases()
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

    # ---- leases

    def grant_lease(self, ttl: int) -> int:
        with self._lock:
            self._expire_leases()
            lease_id = next(self._lease_ids)
            self._leases[lease_id] = (ttl, time.monotonic() + ttl)
            return lease_id

    def keep_lease_alive(self, lease_id: int) -> bool:
        with self._lock:
            self._expire_leases()
            if lease_id not in self._leases:
                return False
            ttl, _ = self._leases[lease_id]
            self._leases[lease_id] = (ttl, time.monotonic() + ttl)
            return True

    def revoke_lease(self, lease_id: int) -> None:
        with self._lock:
            self._expire_leases()
            self._end_lease(lease_id)

    def create_leased(self, key: str, value: str, lease_id: int) -> bool:
        with self._lock:
            self._expire_leases()
            if lease_id not in self._leases or key in self._data:
                return False
            self._write({key: value}, (), lease_id)
            return True
