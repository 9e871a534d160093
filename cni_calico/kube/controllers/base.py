"""What every controller shares: the informers it reads, its work queue and worker, the
periodic full reconcile.

A change the informers report becomes a work item (usually the object's key); a relist, the
start and every `reconciler_period` add FULL, a reconcile of everything the controller owns
against everything Kubernetes holds (which is what removes objects whose source went while no
one watched). A failed item is retried with a growing backoff; LostLeadership ends the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping, Protocol

from ...datastore import Datastore
from ..client import Resource
from ..informer import Informer
from ..leader import LostLeadership
from ..workqueue import FULL, WorkQueue

log = logging.getLogger(__name__)


class Metrics(Protocol):
    def inc(self, name: str, amount: float = 1, **labels: str) -> None: ...

    def set(self, name: str, value: float, **labels: str) -> None: ...


class _NoMetrics:
    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        pass

    def set(self, name: str, value: float, **labels: str) -> None:
        pass


@dataclass
class Context:
    ds: Datastore  # fenced by the leadership when there is an election
    informers: dict[str, Informer]  # by resource plural
    reconciler_period: float = 300.0
    leak_grace_period: float = 900.0
    metrics: Metrics = _NoMetrics()  # noqa: RUF009 (a stateless default)
    # A live question to the API (not the informer's cache): does Kubernetes have this Node?
    # None as an answer: it cannot tell. Without it, the cache is believed.
    node_exists: Callable[[str], bool | None] | None = None


class Controller:
    name = ""
    resources: tuple[Resource, ...] = ()

    def __init__(self, context: Context) -> None:
        self.context = context
        self.ds = context.ds
        self.queue = WorkQueue()
        self.ready = threading.Event()  # the first full reconcile is done
        self.lost = threading.Event()  # leadership went while working
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def informer(self, resource: Resource) -> Informer:
        return self.context.informers[resource.plural]

    # ---- what a controller defines

    def item_for(self, resource: Resource, key: str) -> Hashable | None:
        """The work a change of `key` calls for (None: none)."""
        return key

    def sync(self, item: Hashable) -> None:
        raise NotImplementedError

    def sync_all(self) -> None:
        raise NotImplementedError

    # ---- informer subscription (called on informer threads: only queue)

    def changed(self, resource: Resource, key: str) -> None:
        item = self.item_for(resource, key)
        if item is not None:
            self.queue.add(item)

    def resynced(self, resource: Resource) -> None:
        self.queue.add(FULL)

    # ---- running

    def start(self) -> Controller:
        self._thread = threading.Thread(target=self.run, name=f"controller-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float = 10) -> None:
        self._stop.set()
        self.queue.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)

    def run(self) -> None:
        for resource in self.resources:
            while not self.informer(resource).synced.wait(0.2):
                if self._stop.is_set():
                    return
        self.queue.add(FULL)
        next_full = time.monotonic() + self.context.reconciler_period
        while not self._stop.is_set():
            item = self.queue.get(timeout=max(0.0, min(1.0, next_full - time.monotonic())))
            if time.monotonic() >= next_full:
                self.queue.add(FULL)
                next_full = time.monotonic() + self.context.reconciler_period
            if item is None:
                continue
            if not self._work(item):
                return

    def _work(self, item: Hashable) -> bool:
        began = time.monotonic()
        try:
            if item == FULL:
                self.sync_all()
                self.ready.set()
            else:
                self.sync(item)
            self.queue.forget(item)
            self.context.metrics.inc("calico_kube_controllers_syncs_total", controller=self.name,
                                     kind="full" if item == FULL else "one")
            log.debug("%s: synced %s in %.1f ms", self.name, item, (time.monotonic() - began) * 1000)
        except LostLeadership as exc:
            log.error("%s: %s", self.name, exc)
            self.lost.set()
            return False
        except Exception as exc:
            wait = self.queue.retry(item)
            self.context.metrics.inc("calico_kube_controllers_sync_errors_total", controller=self.name)
            log.warning("%s: syncing %s failed (%s: %s); retrying in %.2f s", self.name, item, type(exc).__name__,
                        exc, wait, exc_info=log.isEnabledFor(logging.DEBUG))
        return True

    def count_writes(self, changes: Mapping[str, str]) -> None:
        for key, outcome in sorted(changes.items()):
            log.info("%s: %s %s", self.name, outcome, key)
            self.context.metrics.inc("calico_kube_controllers_writes_total", controller=self.name, outcome=outcome)
