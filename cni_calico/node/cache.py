"""The agent's copy of what etcd holds: loaded from a snapshot, kept current by watch events.

Pure: no I/O. Keys the agent never reads (allocation blocks, handles: they change on every
pod start) are dropped on the way in, so a busy node does not wake the renderer for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..datastore import KeyValue, WatchEvent
from ..model import keys

WATCH_PREFIX = "/calico/"
IGNORED_PREFIXES = (keys.IPAM + "assignment/", keys.HANDLE_PREFIX)


ROUTING_PREFIXES = (*(keys.resource_prefix(p) for p in ("nodes", "ippools", "bgppeers", "bgpconfigurations")),
                    keys.IPAM + "host/")


def relevant(key: str) -> bool:
    return key.startswith(WATCH_PREFIX) and not key.startswith(IGNORED_PREFIXES)


def affects_routing(key: str) -> bool:
    """Workload endpoints and profiles change with every pod: BGP and IPIP never read them."""
    return key.startswith(ROUTING_PREFIXES)


@dataclass
class Cache:
    values: dict[str, str] = field(default_factory=dict)
    revision: int = 0  # the store revision this copy is current at

    def load(self, rows: Iterable[KeyValue], revision: int) -> None:
        self.values = {kv.key: kv.value for kv in rows if relevant(kv.key)}
        self.revision = revision

    def apply(self, events: Iterable[WatchEvent]) -> set[str]:
        """Apply a batch; the keys whose value really changed."""
        changed = set()
        for event in events:
            self.revision = max(self.revision, event.mod_revision)
            if not relevant(event.key):
                continue
            if event.value is None:
                if self.values.pop(event.key, None) is not None:
                    changed.add(event.key)
            elif self.values.get(event.key) != event.value:
                self.values[event.key] = event.value
                changed.add(event.key)
        return changed

    def under(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if k.startswith(prefix)}
