"""List + watch of one Kubernetes resource into a cache, following the API's rules.

A consistent list (paged) gives the objects and a resourceVersion; a watch from that version
streams the changes, each carrying the version it was made at; BOOKMARKs move the version on
without a change. A stream that ends (the server's timeout, `timeoutSeconds`) is resumed from
the last version seen; a broken stream or an unreachable API is retried from it after a backoff;
only `410 Gone` (the version is older than the API remembers) needs a new list. A new list
replaces the cache and reports what changed since the old one, deletions included: a delete
missed while disconnected is not lost.

Subscribers get `(key)` for each change and `resynced()` after each list; both are called on
the informer's thread and should only queue work.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Protocol

from .client import ApiGone, ApiUnavailable, KubeClient, Obj, Resource, WatchStop

log = logging.getLogger(__name__)

PAGE_SIZE = 500
WATCH_TIMEOUT = (300, 600)  # seconds asked of the server per stream, drawn at random as client-go does
BACKOFF = (0.2, 30.0)  # first and longest wait after a failure


class Subscriber(Protocol):
    def changed(self, resource: Resource, key: str) -> None: ...

    def resynced(self, resource: Resource) -> None: ...


class Metrics(Protocol):
    def inc(self, name: str, amount: float = 1, **labels: str) -> None: ...


class Informer:
    def __init__(self, client: KubeClient, resource: Resource, *, metrics: Metrics | None = None,
                 watch_timeout: tuple[int, int] = WATCH_TIMEOUT, page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.resource = resource
        self.metrics = metrics
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.resource_version = ""
        self.synced = threading.Event()  # the first list is in the cache
        self._lock = threading.Lock()
        self._objects: dict[str, Obj] = {}
        self._subscribers: list[Subscriber] = []
        self._stop = threading.Event()
        self._streams = WatchStop()
        self._thread: threading.Thread | None = None

    # ---- reading the cache (any thread); objects are replaced, never changed in place

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._objects.get(key)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._objects.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._objects)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    # ---- running

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.resource.plural}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float = 10) -> None:
        self._stop.set()
        self._streams.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)

    def run(self) -> None:
        """List, then watch and resume, until stopped; list again only when the version is gone."""
        failures = 0
        must_list = True
        while not self._stop.is_set():
            try:
                if must_list:
                    self._list()
                    must_list = False
                self._watch()
                failures = 0
            except ApiGone as exc:
                log.info("%s: %s; listing again", self.resource.plural, exc)
                self._count("calico_kube_controllers_resyncs_total", reason="gone")
                must_list = True
            except ApiUnavailable as exc:
                if self._stop.is_set():
                    break
                failures += 1
                wait = _backoff(failures)
                log.warning("%s: %s; retrying in %.1f s", self.resource.plural, exc, wait)
                self._count("calico_kube_controllers_api_errors_total")
                self._stop.wait(wait)
            except Exception as exc:  # a 403, a bug: keep trying, loudly, with a fresh list
                failures += 1
                wait = _backoff(failures)
                log.error("%s: %s: %s; listing again in %.1f s", self.resource.plural, type(exc).__name__, exc,
                          wait, exc_info=log.isEnabledFor(logging.DEBUG))
                self._count("calico_kube_controllers_api_errors_total")
                must_list = True
                self._stop.wait(wait)

    def _list(self) -> None:
        objects: dict[str, Obj] = {}
        token: str | None = None
        while True:  # pages of one consistent snapshot; an expired continue token is a 410: start over
            page = self.client.list_page(self.resource, limit=self.page_size, continue_token=token)
            for item in page.get("items") or ():
                objects[self.resource.key(item)] = item
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                break
        with self._lock:
            before, self._objects = self._objects, objects
        self.resource_version = str(metadata.get("resourceVersion") or "")
        changed = [key for key in before.keys() | objects.keys()
                   if _version(before.get(key)) != _version(objects.get(key))]
        log.info("%s: listed %d at version %s (%d changed)", self.resource.plural, len(objects),
                 self.resource_version, len(changed))
        self._count("calico_kube_controllers_lists_total")
        for key in sorted(changed):
            self._notify(key)
        self.synced.set()
        for subscriber in self._subscribers:
            subscriber.resynced(self.resource)

    def _watch(self) -> None:
        """One stream, from the current version until it ends."""
        timeout = random.randint(*self.watch_timeout)
        for event in self.client.watch(self.resource, self.resource_version, timeout, self._streams):
            if self._stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if kind == "BOOKMARK":
                self.resource_version = version or self.resource_version
                continue
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                log.warning("%s: ignoring a watch event of type %r", self.resource.plural, kind)
                continue
            key = self.resource.key(obj)
            with self._lock:
                if kind == "DELETED":
                    self._objects.pop(key, None)
                else:
                    self._objects[key] = obj
            self.resource_version = version or self.resource_version
            self._count("calico_kube_controllers_watch_events_total", type=str(kind))
            self._notify(key)

    def _notify(self, key: str) -> None:
        for subscriber in self._subscribers:
            subscriber.changed(self.resource, key)

    def _count(self, name: str, **labels: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(name, 1, resource=self.resource.plural, **labels)


def _version(obj: Obj | None) -> Any:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


def _backoff(failures: int) -> float:
    first, longest = BACKOFF
    return float(min(longest, first * 2 ** (failures - 1)) * random.uniform(0.8, 1.2))

