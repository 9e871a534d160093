"""One watch: the events a client gets for a resource, a namespace and selectors, from a version on.

Pure logic over the store; the HTTP layer decides when to ask for events, when to send a
bookmark and when the stream ends.
"""

from __future__ import annotations

import copy
from typing import Any

from . import resources as r
from .errors import ApiError, expired
from .options import ListOptions
from .store import Change, ObjectStore, TooOld

Event = dict[str, Any]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

# The zero value of each kind as Go serializes it: a bookmark carries one with only its version set.
EMPTY_SHAPES: dict[str, dict[str, Any]] = {
    "Pod": {"spec": {"containers": None}, "status": {}},
    "Namespace": {"spec": {}, "status": {}},
    "Node": {"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                                    "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                                                 "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                                                 "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""}}},
    "NetworkPolicy": {"spec": {"podSelector": {}}},
    "Lease": {"spec": {}},
    "ServiceAccount": {},
}


def error_event(error: ApiError) -> Event:
    return {"type": "ERROR", "object": error.status()}


class Watcher:
    def __init__(self, store: ObjectStore, rt: r.ResourceType, namespace: str | None, opts: ListOptions) -> None:
        self.store = store
        self.rt = rt
        self.namespace = namespace
        self.opts = opts
        self.position = 0  # every change up to here has been looked at

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.opts.labels.matches(meta.get("labels")) and self.opts.fields.matches(obj)

    def start(self) -> list[Event]:
        """The initial events: synthetic ADDEDs of the current state when no version (or "0") was given.

        Raises ApiError (410 Expired) when the version given is older than the kept history.
        """
        rv = self.opts.resource_version
        initial = self.opts.send_initial_events
        if initial is None:
            initial = rv is None or rv == 0
        with self.store.lock:
            if rv is not None and rv > 0 and not initial:
                try:
                    self.store.changes_after(rv)
                except TooOld as exc:
                    raise expired(str(exc)) from None
                self.position = rv
                return []
            self.position = self.store.rv
            events: list[Event] = []
            if initial:
                events = [{"type": "ADDED", "object": obj}
                          for obj in self.store.items(self.rt.id, self.namespace) if self._matches(obj)]
            if self.opts.send_initial_events:
                bookmark = self.bookmark()
                bookmark["object"]["metadata"]["annotations"] = {INITIAL_EVENTS_END: "true"}
                events.append(bookmark)
            return events

    def poll(self, timeout: float) -> list[Event]:
        """The events after the position (waiting up to `timeout` for one); raises ApiError 410 when
        the history moved past the position."""
        if self.store.rv <= self.position:
            self.store.wait_for_change(self.position, timeout)
        try:
            changes = self.store.changes_after(self.position)
        except TooOld as exc:
            raise expired(str(exc)) from None
        events = []
        for change in changes:
            self.position = change.rv
            if change.resource == self.rt.id:
                event = self._event(change)
                if event is not None:
                    events.append(event)
        return events

    def _event(self, change: Change) -> Event | None:
        now, before = self._matches(change.obj), self._matches(change.prev)
        if change.type == "DELETED":
            return {"type": "DELETED", "object": copy.deepcopy(change.obj)} if before else None
        if now and before:
            return {"type": "MODIFIED", "object": copy.deepcopy(change.obj)}
        if now:
            return {"type": "ADDED", "object": copy.deepcopy(change.obj)}
        if before:
            # Left the selection: a DELETED carrying the old state at the new version.
            assert change.prev is not None
            gone = copy.deepcopy(change.prev)
            gone["metadata"]["resourceVersion"] = str(change.rv)
            return {"type": "DELETED", "object": gone}
        return None

    def bookmark(self) -> Event:
        obj: dict[str, Any] = {"kind": self.rt.kind, "apiVersion": self.rt.api_version,
                               "metadata": {"resourceVersion": str(self.position), "creationTimestamp": None}}
        obj.update(copy.deepcopy(EMPTY_SHAPES.get(self.rt.kind, {})))
        return {"type": "BOOKMARK", "object": obj}
