"""The datastore seam: a small key-value interface with etcd's revision semantics.

Every write is conditional: `txn` compares each key's mod revision (0 = must be
absent) and applies all puts and deletes atomically, or nothing. A lost race is a
return value (False), never an exception; an unreachable etcd is CniError 11.

`EtcdDatastore` is the only user of the etcd3 client (imported lazily, so a CNI
VERSION call never pays for it); `MemoryDatastore` keeps revisions exactly like
etcd for fast unit tests, and the contract tests run on both.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit

from .errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CniError, DatastoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
T = TypeVar("T")


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
            except Exception as exc:  # the stream may already be gone with etcd; nothing to undo
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
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        """Keys and whole prefixes (sorted by key) read at one revision: one round trip on etcd."""
        return {key: self.get(key) for key in wanted}, {prefix: self.list(prefix) for prefix in prefixes}

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        """If every key in `expect` has that mod revision (0: absent), apply the writes; True if applied."""
        raise NotImplementedError

    def snapshot(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys under `prefix` and the store revision they were read at (watch from revision + 1)."""
        raise NotImplementedError

    def watch(self, prefix: str, start_revision: int) -> Watch:
        """Every change under `prefix` from `start_revision` on; WatchLost if that history is gone."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    # Conveniences, all expressed as one conditional transaction.
    def create(self, key: str, value: str) -> bool:
        return self.txn({key: 0}, {key: value})

    def update(self, key: str, value: str, revision: int) -> bool:
        return self.txn({key: revision}, {key: value})

    def delete(self, key: str, revision: int) -> bool:
        return self.txn({key: revision}, delete=[key])

    def __enter__(self) -> Datastore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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

    def _notify(self, events: list[WatchEvent]) -> None:
        self._watchers = [(p, w) for p, w in self._watchers if not w.cancelled]
        for prefix, watch in self._watchers:
            batch = [e for e in events if e.key.startswith(prefix)]
            if batch:
                watch._deliver(batch)

    def snapshot(self, prefix: str) -> tuple[list[KeyValue], int]:
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


@dataclass(frozen=True)
class EtcdEndpoint:
    host: str
    port: int
    secure: bool

    @property
    def netloc_host(self) -> str:
        """The host as it goes before `:port`: an IPv6 literal needs its brackets back."""
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_endpoints(endpoints: str) -> list[EtcdEndpoint]:
    """`http://127.0.0.1:2379,https://h:2379` -> endpoints; a bad entry is an invalid config (7)."""
    out = []
    for raw in (e.strip() for e in endpoints.split(",")):
        if not raw:
            continue
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        try:
            port = parts.port
        except ValueError as exc:
            raise CniError(INVALID_NETWORK_CONFIG, f"invalid etcd endpoint {raw!r}: {exc}") from exc
        if port == 0:  # not "unset": port 0 must not silently become the default 2379
            raise CniError(INVALID_NETWORK_CONFIG, f"invalid etcd endpoint {raw!r}: port 0")
        port = port or 2379
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CniError(INVALID_NETWORK_CONFIG, f"invalid etcd endpoint {raw!r}", "expected http(s)://host:port")
        out.append(EtcdEndpoint(parts.hostname, port, parts.scheme == "https"))
    if not out:
        raise CniError(INVALID_NETWORK_CONFIG, "no etcd endpoint configured", "set etcd_endpoints")
    return out


@dataclass(frozen=True)
class EtcdSettings:
    """Everything that opens an etcd connection, resolved once: equal settings may share one
    connection. `source` says where the endpoints came from, for messages only."""

    endpoints: str = DEFAULT_ENDPOINT
    key_file: str | None = None
    cert_file: str | None = None
    ca_file: str | None = None
    source: str = field(default="", compare=False)

    @classmethod
    def resolve(cls, endpoints: str | None, key_file: str | None, cert_file: str | None, ca_file: str | None,
                env: Mapping[str, str], *, named: str = "etcd_endpoints") -> EtcdSettings:
        """Explicit values (a config's, whose endpoints key is `named`) first, then the `ETCD_*`
        environment variables, then the default endpoint."""
        if endpoints:
            source = named
        elif env.get("ETCD_ENDPOINTS"):
            endpoints, source = env["ETCD_ENDPOINTS"], "ETCD_ENDPOINTS"
        else:
            endpoints, source = DEFAULT_ENDPOINT, "the default, as neither etcd_endpoints nor ETCD_ENDPOINTS is set"
        return cls(endpoints, key_file or env.get("ETCD_KEY_FILE") or None,
                   cert_file or env.get("ETCD_CERT_FILE") or None,
                   ca_file or env.get("ETCD_CA_CERT_FILE") or None, source)


class EtcdDatastore(Datastore):
    """etcd v3 over gRPC; fails over between endpoints; every failure to reach etcd is
    DatastoreUnavailable (code 11)."""

    def __init__(self, endpoints: str = DEFAULT_ENDPOINT, *, key_file: str | None = None,
                 cert_file: str | None = None, ca_file: str | None = None, timeout: float = 5.0,
                 source: str = "") -> None:
        from . import etcd_messages

        etcd_messages.install()  # etcd3's message modules, built for today's protobuf
        import etcd3  # the only import of the etcd client in the project

        self._etcd3 = etcd3
        self._endpoints = parse_endpoints(endpoints)
        self._tls = (key_file, cert_file, ca_file)
        self._timeout = timeout
        self._source = source
        for path in self._tls:
            if path and not os.path.isfile(path):
                raise CniError(INVALID_NETWORK_CONFIG, f"etcd TLS file {path} does not exist")
        self._current = 0
        self._client = self._connect(self._endpoints[0])

    def _connect(self, endpoint: EtcdEndpoint):  # type: ignore[no-untyped-def]
        key_file, cert_file, ca_file = self._tls
        secure = endpoint.secure or ca_file is not None
        return self._etcd3.client(
            host=endpoint.netloc_host, port=endpoint.port, timeout=self._timeout,
            ca_cert=ca_file if secure else None,
            cert_key=key_file if secure else None, cert_cert=cert_file if secure else None,
        )

    def _call(self, operation, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Run `operation(client, ...)`, moving to the next endpoint when one is unreachable."""
        errors = []
        for _ in range(len(self._endpoints)):
            try:
                return operation(self._client, *args, **kwargs)
            except self._etcd3.exceptions.ConnectionFailedError as exc:
                errors.append(f"{self._describe()}: {exc}")
            except self._etcd3.exceptions.ConnectionTimeoutError as exc:
                errors.append(f"{self._describe()}: {exc}")
            except Exception as exc:  # grpc errors that etcd3 does not translate
                if type(exc).__module__.startswith("grpc"):
                    errors.append(f"{self._describe()}: {exc}")
                else:
                    raise
            self._client.close()
            self._current = (self._current + 1) % len(self._endpoints)
            self._client = self._connect(self._endpoints[self._current])
        where = f" (endpoints from {self._source})" if self._source else ""
        raise DatastoreUnavailable("etcd is unreachable: " + "; ".join(errors) + where,
                                   "check the endpoints and that etcd is running")

    def _describe(self) -> str:
        ep = self._endpoints[self._current]
        return f"{'https' if ep.secure else 'http'}://{ep.netloc_host}:{ep.port}"

    @staticmethod
    def _kv(meta, value: bytes) -> KeyValue:  # type: ignore[no-untyped-def]
        return KeyValue(meta.key.decode(), value.decode(), meta.mod_revision, meta.create_revision)

    def get(self, key: str) -> KeyValue | None:
        value, meta = self._call(lambda c: c.get(key))
        return None if meta is None else self._kv(meta, value)

    def list(self, prefix: str) -> list[KeyValue]:
        rows = self._call(lambda c: list(c.get_prefix(prefix, sort_order="ascend", sort_target="key")))
        return [self._kv(meta, value) for value, meta in rows]

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        wanted, prefixes = list(wanted), list(prefixes)
        get = self._etcd3.transactions.Get

        def read(client):  # type: ignore[no-untyped-def]
            # A transaction with no comparison and only reads: one round trip, one revision.
            ops = [get(k) for k in wanted] + [get(p, range_end=_prefix_end(p)) for p in prefixes]
            _, responses = client.transaction(compare=[], success=ops, failure=[])
            return responses

        found = self._call(read) if wanted or prefixes else []
        keys_found = {key: self._kv(rows[0][1], rows[0][0]) if rows else None for key, rows in zip(wanted, found)}
        prefix_rows = {prefix: sorted((self._kv(meta, value) for value, meta in rows), key=lambda kv: kv.key)
                       for prefix, rows in zip(prefixes, found[len(wanted):])}
        return keys_found, prefix_rows

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        def attempt(client):  # type: ignore[no-untyped-def]
            t = client.transactions
            compare = [t.mod(key) == revision for key, revision in expect.items()]
            ops: Sequence[object] = [t.put(k, v) for k, v in (put or {}).items()]
            ops = list(ops) + [self._etcd3.transactions.Delete(k) for k in delete]
            succeeded, _ = client.transaction(compare=compare, success=ops, failure=[])
            return bool(succeeded)

        return self._call(attempt)

    def snapshot(self, prefix: str) -> tuple[list[KeyValue], int]:
        def read(client):  # type: ignore[no-untyped-def]
            response = client.get_prefix_response(prefix, sort_order="ascend", sort_target="key")
            return response.header.revision, [
                KeyValue(kv.key.decode(), kv.value.decode(), kv.mod_revision, kv.create_revision)
                for kv in response.kvs]

        revision, rows = self._call(read)
        return rows, revision

    def watch(self, prefix: str, start_revision: int) -> Watch:
        watch = Watch()
        exceptions = self._etcd3.exceptions

        def on_response(response) -> None:  # type: ignore[no-untyped-def]
            # Called on etcd3's watcher thread: a response, or an exception when the stream ends.
            if isinstance(response, Exception):
                watch._deliver(WatchLost(f"etcd watch ended: {response}"))
                return
            batch = [WatchEvent(e.key.decode(), None if isinstance(e, self._etcd3.events.DeleteEvent)
                                else e.value.decode(), e.mod_revision) for e in response.events]
            if batch:
                watch._deliver(batch)

        self._quiet_watcher_thread()
        try:
            watch_id = self._call(lambda c: c.add_watch_prefix_callback(prefix, on_response,
                                                                        start_revision=start_revision))
        except exceptions.RevisionCompactedError as exc:
            raise WatchLost(f"revision {start_revision} has been compacted") from exc
        except exceptions.WatchTimedOut as exc:
            raise WatchLost("etcd did not accept the watch in time") from exc
        client = self._client
        watch._cancel = lambda: client.cancel_watch(watch_id)
        return watch

    def _quiet_watcher_thread(self) -> None:
        # etcd3's watcher thread reopens its stream forever; once close() has closed the channel it
        # dies with "Channel closed!" and a traceback on stderr. That is the thread's normal end here.
        watcher = self._client.watcher
        if getattr(watcher, "_cni_calico_quiet", False):
            return
        run = watcher._run

        def run_until_closed() -> None:
            try:
                run()
            except ValueError:
                log.debug("etcd watch thread ended with its channel")

        watcher._run = run_until_closed
        watcher._cni_calico_quiet = True

    def compact(self, revision: int) -> None:
        self._call(lambda c: c.compact(revision, physical=True))

    def close(self) -> None:
        self._client.close()


class Prefetched(Datastore):
    """Another store, whose first read of each of some keys and prefixes is served from one batched
    read made up front (a round trip for all of them). Later reads and every write go to the
    store; a write drops whatever prefetched value it touches. Serving a value read a moment
    earlier is what any read-then-write already does: the writes are compare-and-swap."""

    def __init__(self, inner: Datastore, wanted: Iterable[str], prefixes: Iterable[str]) -> None:
        self.inner = inner
        self._keys, self._prefixes = inner.read_many(wanted, prefixes)

    def get(self, key: str) -> KeyValue | None:
        return self._keys.pop(key) if key in self._keys else self.inner.get(key)

    def list(self, prefix: str) -> list[KeyValue]:
        return self._prefixes.pop(prefix) if prefix in self._prefixes else self.inner.list(prefix)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        """Prefetched keys and prefixes are served (once); the rest is read in one round trip.
        A read that mixes both mixes two revisions, as two separate reads would."""
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
        delete = list(delete)
        for key in [*(put or {}), *delete]:
            self._keys.pop(key, None)
            for prefix in [p for p in self._prefixes if key.startswith(p)]:
                del self._prefixes[prefix]
        return self.inner.txn(expect, put, delete)

    def snapshot(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self.inner.snapshot(prefix)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return self.inner.watch(prefix, start_revision)


def _prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range end for a prefix)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def open_datastore(settings: EtcdSettings) -> EtcdDatastore:
    return EtcdDatastore(settings.endpoints, key_file=settings.key_file, cert_file=settings.cert_file,
                         ca_file=settings.ca_file, source=settings.source)


# ---------------------------------------------------------------- compare-and-swap, retried


class Conflict:
    """What an attempt returns when its conditional write lost a race: read again and retry."""

    def __repr__(self) -> str:
        return "CONFLICT"


CONFLICT = Conflict()
MAX_ATTEMPTS = 100


def retry_on_conflict(attempt: Callable[[], T | Conflict], what: str, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `attempt` (a read, then a write conditional on what was read) until it does not lose a
    race, at most `attempts` times; only conflicts retry, any exception goes through. Giving up is
    code 11 (contention: the caller may retry later), never a silent return."""
    for n in range(attempts):
        result = attempt()
        if not isinstance(result, Conflict):
            return result
        time.sleep(random.uniform(0, 0.002 * min(n + 1, 10)))  # jitter breaks lock-step retries
    raise CniError(TRY_AGAIN_LATER, f"{what}: gave up after {attempts} conflicting writes",
                   "the datastore is under heavy contention; retry")


def read_modify_write(ds: Datastore, key: str, change: Callable[[str | None], str | None], what: str,
                      attempts: int = MAX_ATTEMPTS) -> str | None:
    """Set `key` to `change(current value or None)` at the revision read (None: delete it; the same
    value: no write), retrying on conflict. Returns the value written (or kept)."""

    def attempt() -> str | None | Conflict:
        kv = ds.get(key)
        current = kv.value if kv else None
        wanted = change(current)
        if wanted == current:
            return wanted
        expect = {key: kv.mod_revision if kv else 0}
        written = ds.txn(expect, {key: wanted}) if wanted is not None else ds.txn(expect, delete=[key])
        return wanted if written else CONFLICT

    return retry_on_conflict(attempt, what, attempts)
