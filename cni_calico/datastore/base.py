"""The datastore interface: a small key-value store with etcd's revision semantics.

Every write is conditional: `txn` compares each key's mod revision (0 = must be absent) and
applies all puts and deletes atomically, or nothing. A lost race is a return value (False),
never an exception; an unreachable store is DatastoreUnavailable (code 11).

Leases are etcd's: a key created with a lease goes (a delete event to watchers) when the lease
expires unrefreshed or is revoked; that is what a leader election needs from a store.
"""

from __future__ import annotations

import builtins
import logging
import queue
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Self

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class WatchEvent:
    key: str
    value: str | None  # None: the key was deleted
    mod_revision: int


class WatchLost(Exception):
    """The watch cannot continue (history compacted, stream broken): take a new snapshot."""


class Watch:
    """Batches of events after a start revision, in revision order; fed by the datastore."""

    def __init__(self) -> None:
        self._queue: queue.Queue[list[WatchEvent] | Exception | None] = queue.Queue()
        self._cancel: Callable[[], None] = lambda: None
        self.cancelled = False

    def _deliver(self, item: list[WatchEvent] | Exception) -> None:
        self._queue.put(item)

    def next_batch(self, timeout: float | None = None) -> list[WatchEvent]:
        """The next batch of events ([] on timeout); WatchLost when the watch has ended."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        if item is None:
            raise WatchLost("watch cancelled")
        if isinstance(item, Exception):
            self.cancel()
            raise item if isinstance(item, WatchLost) else WatchLost(str(item) or type(item).__name__)
        return item

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            try:
                self._cancel()
            except Exception as exc:  # noqa: BLE001 (the stream may already be gone with etcd; nothing to undo)
                log.debug("cancelling a watch: %s", exc)
            self._queue.put(None)


class Datastore:
    """The interface; subclasses implement get, list, txn, snapshot, watch and close."""

    def get(self, key: str) -> KeyValue | None:
        raise NotImplementedError

    def list(self, prefix: str) -> list[KeyValue]:
        """All keys under `prefix`, sorted by key."""
        raise NotImplementedError

    def get_many(self, wanted: Iterable[str]) -> dict[str, KeyValue | None]:
        """Several keys read at one revision (one round trip on etcd)."""
        return self.read_many(wanted, ())[0]

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, builtins.list[KeyValue]]]:
        """Keys and whole prefixes (sorted by key) read at one revision: one round trip on etcd."""
        return {key: self.get(key) for key in wanted}, {prefix: self.list(prefix) for prefix in prefixes}

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        """If every key in `expect` has that mod revision (0: absent), apply the writes; True if applied."""
        raise NotImplementedError

    def snapshot(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        """All keys under `prefix` and the store revision they were read at (watch from revision + 1)."""
        raise NotImplementedError

    def watch(self, prefix: str, start_revision: int) -> Watch:
        """Every change under `prefix` from `start_revision` on; WatchLost if that history is gone."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    # Leases: a key written with one lives as long as the lease does.
    def grant_lease(self, ttl: int) -> int:
        """A new lease of `ttl` seconds (the store may round it up, as etcd does); its id."""
        raise NotImplementedError

    def keep_lease_alive(self, lease_id: int) -> bool:
        """Restart the lease's time to live; False when it is gone (expired or revoked)."""
        raise NotImplementedError

    def revoke_lease(self, lease_id: int) -> None:
        """End the lease now: its keys are deleted. A lease already gone is not an error."""
        raise NotImplementedError

    def create_leased(self, key: str, value: str, lease_id: int) -> bool:
        """Create `key` bound to the lease if it is absent; False if it exists (or the lease is gone)."""
        raise NotImplementedError

    # Conveniences, all expressed as one conditional transaction.
    def create(self, key: str, value: str) -> bool:
        return self.txn({key: 0}, {key: value})

    def update(self, key: str, value: str, revision: int) -> bool:
        return self.txn({key: revision}, {key: value})

    def delete(self, key: str, revision: int) -> bool:
        return self.txn({key: revision}, delete=[key])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lent(Datastore):
    """A store lent to one user (a plugin call closes what it is given): every operation goes to
    the owner's store, closing it does not, so the connection serves the next user."""

    def __init__(self, owner: Datastore) -> None:
        self.owner = owner

    def get(self, key: str) -> KeyValue | None:
        return self.owner.get(key)

    def list(self, prefix: str) -> builtins.list[KeyValue]:
        return self.owner.list(prefix)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, builtins.list[KeyValue]]]:
        return self.owner.read_many(wanted, prefixes)

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        return self.owner.txn(expect, put, delete)

    def snapshot(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        return self.owner.snapshot(prefix)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return self.owner.watch(prefix, start_revision)

    def grant_lease(self, ttl: int) -> int:
        return self.owner.grant_lease(ttl)

    def keep_lease_alive(self, lease_id: int) -> bool:
        return self.owner.keep_lease_alive(lease_id)

    def revoke_lease(self, lease_id: int) -> None:
        self.owner.revoke_lease(lease_id)

    def create_leased(self, key: str, value: str, lease_id: int) -> bool:
        return self.owner.create_leased(key, value, lease_id)

    def close(self) -> None:
        pass  # the owner's to close
