"""The datastore seam: a small key-value interface with etcd's revision semantics (`base`),
etcd (`etcd`, the only user of the etcd3 client), an in-memory twin (`memory`), a prefetching
wrapper (`prefetch`) and compare-and-swap retried (`cas`)."""

from __future__ import annotations

from .base import Datastore, KeyValue, Lent, Watch, WatchEvent, WatchLost
from .cas import CONFLICT, MAX_ATTEMPTS, Conflict, read_modify_write, retry_on_conflict
from .etcd import (
    DEFAULT_ENDPOINT,
    EtcdDatastore,
    EtcdEndpoint,
    EtcdSettings,
    open_datastore,
    parse_endpoints,
)
from .memory import MemoryDatastore
from .prefetch import Prefetched

__all__ = [
    "CONFLICT", "DEFAULT_ENDPOINT", "MAX_ATTEMPTS", "Conflict", "Datastore", "EtcdDatastore", "EtcdEndpoint",
    "EtcdSettings", "KeyValue", "Lent", "MemoryDatastore", "Prefetched", "Watch", "WatchEvent", "WatchLost",
    "open_datastore", "parse_endpoints", "read_modify_write", "retry_on_conflict",
]
