"""One writer among the instances: an election on an etcd lease, and every write fenced by it.

The leader holds `LEADER_KEY`, created with a lease it keeps alive; killed or cut off, it stops
refreshing, etcd deletes the key when the lease runs out, and a waiting instance creates it. A
leader that only *believes* it still leads (paused, partitioned) must not write after another
took over, so every write it makes is a transaction that also compares the key's revision with
the one it created (`Fenced`): once the key has gone or changed hands, the write fails and the
leader learns it has lost (LostLeadership), whatever its clock says.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Iterable, Mapping

from ..datastore import Datastore, KeyValue, Watch

log = logging.getLogger(__name__)

LEADER_KEY = "/calico/kube-controllers/v1/leader"


class LostLeadership(Exception):
    """The election key is no longer ours: stop writing."""


@dataclass(frozen=True)
class Leadership:
    lease_id: int
    revision: int  # the key's mod revision when we created it: the fence
    holder: str


class Elector:
    def __init__(self, ds: Datastore, identity: str, ttl: int, key: str = LEADER_KEY) -> None:
        self.ds = ds
        self.identity = identity
        self.ttl = ttl
        self.key = key
        self.poll = min(1.0, ttl / 4)

    def holder(self) -> str | None:
        kv = self.ds.get(self.key)
        if kv is None:
            return None
        try:
            return str(json.loads(kv.value).get("holder"))
        except (ValueError, AttributeError):
            return kv.value

    def try_acquire(self) -> Leadership | None:
        """Leadership if the key is free and we create it first, else None."""
        if self.ds.get(self.key) is not None:
            return None
        lease = self.ds.grant_lease(self.ttl)
        value = json.dumps({"holder": self.identity,
                            "acquired": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
        if self.ds.create_leased(self.key, value, lease):
            kv = self.ds.get(self.key)
            if kv is not None and kv.value == value:
                return Leadership(lease, kv.mod_revision, self.identity)
        self.ds.revoke_lease(lease)  # lost the race, or the key went with the lease already
        return None

    def campaign(self, stop: threading.Event) -> Leadership | None:
        """Wait until elected (None if stopped first)."""
        announced = False
        while not stop.is_set():
            try:
                won = self.try_acquire()
            except Exception as exc:  # noqa: BLE001 (logged, retried): etcd unreachable: keep trying
                log.warning("leader election: %s", exc)
                won = None
            if won is not None:
                log.info("leader election: %s leads (lease %x)", self.identity, won.lease_id)
                return won
            if not announced:
                log.info("leader election: %s is leading; %s waits", self.holder(), self.identity)
                announced = True
            stop.wait(self.poll)
        return None

    def still_leading(self, leadership: Leadership) -> bool:
        """Refresh the lease; False when it or the key is gone (another may lead already)."""
        if not self.ds.keep_lease_alive(leadership.lease_id):
            return False
        kv = self.ds.get(self.key)
        return kv is not None and kv.mod_revision == leadership.revision

    def resign(self, leadership: Leadership) -> None:
        """Give it up now (the key goes with the lease), so a waiting instance need not wait for
        the lease to run out."""
        try:
            self.ds.revoke_lease(leadership.lease_id)
            log.info("leader election: %s resigned", self.identity)
        except Exception as exc:  # noqa: BLE001 (a controller keeps running: logged, retried)
            log.warning("leader election: resigning: %s", exc)


class KeepAlive:
    """Refreshes the lease every third of its TTL on a thread; sets `lost` when leadership is gone,
    or when no refresh has succeeded for a TTL (etcd will have expired the lease by then)."""

    def __init__(self, elector: Elector, leadership: Leadership) -> None:
        self.elector = elector
        self.leadership = leadership
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-keepalive", daemon=True)

    def start(self) -> KeepAlive:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = self.elector.ttl / 3
        last_ok = time.monotonic()
        while not self._stop.wait(interval):
            try:
                if not self.elector.still_leading(self.leadership):
                    log.error("leader election: the lease or the key is gone: no longer leading")
                    self.lost.set()
                    return
                last_ok = time.monotonic()
            except Exception as exc:  # noqa: BLE001 (a controller keeps running: logged, retried)
                log.warning("leader election: keep-alive failed: %s", exc)
                if time.monotonic() - last_ok >= self.elector.ttl:
                    log.error("leader election: no keep-alive for %d s: no longer leading", self.elector.ttl)
                    self.lost.set()
                    return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)


class Fenced(Datastore):
    """Another store whose every write also requires the election key at the leader's revision."""

    def __init__(self, inner: Datastore, key: str, revision: int, lost: threading.Event | None = None) -> None:
        self.inner = inner
        self.key = key
        self.revision = revision
        self.lost = lost or threading.Event()

    def txn(self, expect: Mapping[str, int], put: Mapping[str, str] | None = None,
            delete: Iterable[str] = ()) -> bool:
        if self.lost.is_set():
            raise LostLeadership("no longer leading: not writing")
        delete = list(delete)
        if self.inner.txn({**expect, self.key: self.revision}, put, delete):
            return True
        current = self.inner.get(self.key)
        if current is None or current.mod_revision != self.revision:
            self.lost.set()
            raise LostLeadership(f"{self.key} is gone or another's: not writing")
        return False  # an ordinary lost race on the keys themselves

    def get(self, key: str) -> KeyValue | None:
        return self.inner.get(key)

    def read_many(self, wanted: Iterable[str], prefixes: Iterable[str]
                  ) -> tuple[dict[str, KeyValue | None], dict[str, list[KeyValue]]]:
        return self.inner.read_many(wanted, prefixes)

    def snapshot(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self.inner.snapshot(prefix)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return self.inner.watch(prefix, start_revision)

    # Last: inside the class body, `list` names this method from here on (mypy reads the
    # annotations above as the builtin only while it does not).
    def list(self, prefix: str) -> list[KeyValue]:
        return self.inner.list(prefix)
