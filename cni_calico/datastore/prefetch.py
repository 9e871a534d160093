"""A store whose first reads of some keys come from one batched read made up front."""

from __future__ import annotations

import builtins
from typing import Iterable, Mapping

from .base import Datastore, KeyValue, Watch


class Prefetched(Datastore):
    """Another store, whose first read of each of some keys and prefixes is served from one batched
    read (a round trip for all of them), made at the first use. Later reads and every write go to
    the store; a write drops whatever prefetched value it touches. Serving a value read a moment
    earlier is what any read-then-write already does: the writes are compare-and-swap."""

    def __init__(self, inner: Datastore, wanted: Iterable[str], prefixes: Iterable[str]) -> None:
        self.inner = inner
        self._wanted, self._wanted_prefixes = list(wanted), list(prefixes)
        self._keys: dict[str, KeyValue | None] = {}
        self._prefixes: dict[str, list[KeyValue]] = {}
        self._loaded = False

    def _load(self) -> None:
        """The batched read, at the first use: a caller that takes a lock first reads under it."""
        if not self._loaded:
            self._loaded = True
            self._keys, self._prefixes = self.inner.read_many(self._wanted, self._wanted_prefixes)

    def get(self, key: str) -> KeyValue | None:
        self._load()
        return self._keys.pop(key) if key in self._keys else self.inner.get(key)

    def list(self, prefix: str) -> list[KeyValue]:
        self._load()
        return self._prefixes.pop(prefix) if prefix in self._prefixes else self.inner.list(prefix)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, builtins.list[KeyValue]]]:
        """Prefetched keys and prefixes are served (once); the rest is read in one round trip.
        A read that mixes both mixes two revisions, as two separate reads would."""
        self._load()
        wanted, prefixes = list(wanted), list(prefixes)
        keys = {key: self._keys.pop(key) for key in wanted if key in self._keys}
        lists = {prefix: self._prefixes.pop(prefix) for prefix in prefixes if prefix in self._prefixes}
        missing_keys = [key for key in wanted if key not in keys]
        missing_prefixes = [prefix for prefix in prefixes if prefix not in lists]
        if missing_keys or missing_prefixes:
            more_keys, more_lists = self.inner.read_many(missing_keys, missing_prefixes)
            keys.update(more_keys)
            lists.update(more_lists)
        return keys, lists

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        self._loaded = True  # a write first: nothing is worth reading ahead any more
        delete = list(delete)
        for key in [*(put or {}), *delete]:
            self._keys.pop(key, None)
            for prefix in [p for p in self._prefixes if key.startswith(p)]:
                del self._prefixes[prefix]
        return self.inner.txn(expect, put, delete)

    def snapshot(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        return self.inner.snapshot(prefix)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return self.inner.watch(prefix, start_revision)
