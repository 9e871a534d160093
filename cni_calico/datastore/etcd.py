"""etcd v3 over gRPC: the only user of the etcd3 client (imported lazily, so a CNI VERSION call
never pays for it). Endpoints fail over; every failure to reach etcd is DatastoreUnavailable."""

from __future__ import annotations

import builtins
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Concatenate, Iterable, Iterator, Mapping, ParamSpec, Protocol, Sequence, TypeVar, cast
from urllib.parse import urlsplit

from ..errors import INVALID_NETWORK_CONFIG, CniError, DatastoreUnavailable
from .base import Datastore, KeyValue, Watch, WatchEvent, WatchLost

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"

_P = ParamSpec("_P")
_T = TypeVar("_T")


# The parts of the etcd3 client used here, which ships no type information.
class _Meta(Protocol):
    """etcd3's KVMetadata, and the key-value messages of a range response."""

    key: bytes
    mod_revision: int
    create_revision: int


class _Kv(_Meta, Protocol):
    value: bytes


class _Header(Protocol):
    revision: int


class _RangeResponse(Protocol):
    header: _Header
    kvs: Sequence[_Kv]


class _WatchResponse(Protocol):
    events: Sequence[_Kv]


class _EtcdClient(Protocol):
    transactions: Any  # builders whose comparisons overload ==
    watcher: Any  # etcd3's Watcher: its thread's `_run` is wrapped below

    def get(self, key: str) -> tuple[bytes | None, _Meta | None]: ...

    def get_prefix(self, key_prefix: str, sort_order: str, sort_target: str) -> Iterator[tuple[bytes, _Meta]]: ...

    def get_prefix_response(self, key_prefix: str, sort_order: str, sort_target: str) -> _RangeResponse: ...

    def transaction(self, compare: Sequence[object], success: Sequence[object], failure: Sequence[object]
                    ) -> tuple[bool, list[Any]]: ...

    def add_watch_prefix_callback(self, key_prefix: str, callback: Callable[[_WatchResponse | Exception], None],
                                  start_revision: int) -> int: ...

    def cancel_watch(self, watch_id: int) -> None: ...

    def compact(self, revision: int, physical: bool) -> None: ...

    def close(self) -> None: ...

    def lease(self, ttl: int) -> Any: ...

    def refresh_lease(self, lease_id: int) -> Iterator[Any]: ...


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

    def _connect(self, endpoint: EtcdEndpoint) -> _EtcdClient:
        key_file, cert_file, ca_file = self._tls
        secure = endpoint.secure or ca_file is not None
        return cast("_EtcdClient", self._etcd3.client(
            host=endpoint.netloc_host, port=endpoint.port, timeout=self._timeout,
            ca_cert=ca_file if secure else None,
            cert_key=key_file if secure else None, cert_cert=cert_file if secure else None,
        ))

    def _call(self, operation: Callable[Concatenate[_EtcdClient, _P], _T], *args: _P.args, **kwargs: _P.kwargs
              ) -> _T:
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
    def _kv(meta: _Meta, value: bytes) -> KeyValue:
        return KeyValue(meta.key.decode(), value.decode(), meta.mod_revision, meta.create_revision)

    def get(self, key: str) -> KeyValue | None:
        value, meta = self._call(lambda c: c.get(key))
        return None if meta is None or value is None else self._kv(meta, value)

    def list(self, prefix: str) -> list[KeyValue]:
        rows = self._call(lambda c: list(c.get_prefix(prefix, sort_order="ascend", sort_target="key")))
        return [self._kv(meta, value) for value, meta in rows]

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, builtins.list[KeyValue]]]:
        wanted, prefixes = list(wanted), list(prefixes)
        get = self._etcd3.transactions.Get

        def read(client: _EtcdClient) -> builtins.list[builtins.list[tuple[bytes, _Meta]]]:
            # A transaction with no comparison and only reads: one round trip, one revision.
            ops = [get(k) for k in wanted] + [get(p, range_end=_prefix_end(p)) for p in prefixes]
            _, responses = client.transaction(compare=[], success=ops, failure=[])
            return responses

        found: builtins.list[builtins.list[tuple[bytes, _Meta]]] = self._call(read) if wanted or prefixes else []
        keys_found = {key: self._kv(rows[0][1], rows[0][0]) if rows else None
                      for key, rows in zip(wanted, found[:len(wanted)], strict=True)}
        prefix_rows = {prefix: sorted((self._kv(meta, value) for value, meta in rows), key=lambda kv: kv.key)
                       for prefix, rows in zip(prefixes, found[len(wanted):], strict=True)}
        return keys_found, prefix_rows

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        def attempt(client: _EtcdClient) -> bool:
            t = client.transactions
            compare = [t.mod(key) == revision for key, revision in expect.items()]
            ops: Sequence[object] = [t.put(k, v) for k, v in (put or {}).items()]
            ops = list(ops) + [self._etcd3.transactions.Delete(k) for k in delete]
            succeeded, _ = client.transaction(compare=compare, success=ops, failure=[])
            return bool(succeeded)

        return self._call(attempt)

    def snapshot(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        def read(client: _EtcdClient) -> tuple[int, builtins.list[KeyValue]]:
            response = client.get_prefix_response(prefix, sort_order="ascend", sort_target="key")
            return response.header.revision, [
                KeyValue(kv.key.decode(), kv.value.decode(), kv.mod_revision, kv.create_revision)
                for kv in response.kvs]

        revision, rows = self._call(read)
        return rows, revision

    def watch(self, prefix: str, start_revision: int) -> Watch:
        watch = Watch()
        exceptions = self._etcd3.exceptions

        def on_response(response: _WatchResponse | Exception) -> None:
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

    # ---- leases

    def grant_lease(self, ttl: int) -> int:
        return int(self._call(lambda c: c.lease(ttl).id))

    def keep_lease_alive(self, lease_id: int) -> bool:
        # One keep-alive request on the stream; etcd answers TTL <= 0 for a lease it no longer has.
        replies = self._call(lambda c: list(c.refresh_lease(lease_id)))
        return bool(replies) and replies[-1].TTL > 0

    def revoke_lease(self, lease_id: int) -> None:
        def revoke(client):  # type: ignore[no-untyped-def]
            try:
                client.revoke_lease(lease_id)
            except Exception as exc:
                if not _lease_not_found(exc):
                    raise

        self._call(revoke)

    def create_leased(self, key: str, value: str, lease_id: int) -> bool:
        def attempt(client):  # type: ignore[no-untyped-def]
            t = client.transactions
            try:
                succeeded, _ = client.transaction(compare=[t.version(key) == 0],
                                                  success=[t.put(key, value, lease=lease_id)], failure=[])
            except Exception as exc:
                if _lease_not_found(exc):  # expired or revoked meanwhile: nothing was written
                    return False
                raise
            return bool(succeeded)

        return bool(self._call(attempt))

    def close(self) -> None:
        self._client.close()


def _lease_not_found(exc: Exception) -> bool:
    """etcd's answer for a lease it does not have (gRPC NOT_FOUND), which is not unreachability."""
    code = getattr(exc, "code", None)
    return callable(code) and getattr(code(), "name", "") == "NOT_FOUND"


def _prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range end for a prefix)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def open_datastore(settings: EtcdSettings) -> EtcdDatastore:
    return EtcdDatastore(settings.endpoints, key_file=settings.key_file, cert_file=settings.cert_file,
                         ca_file=settings.ca_file, source=settings.source)
