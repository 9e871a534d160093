"""The shape of the policy, namespace and serviceaccount controllers: one Kubernetes resource,
each object of it one Calico object the controller owns (by name prefix). A source object is
converted and written; a Calico object with no source is deleted. A source that cannot be
converted is reported and its Calico object, if one exists, left as it was: guessing could open
or close traffic."""

from __future__ import annotations

import logging
from typing import Any, Hashable

from .. import desired
from ..client import Resource
from ..reconcile import Owned, converge, converge_all
from .base import Controller

log = logging.getLogger(__name__)


class OwnedObjectsController(Controller):
    source: Resource
    owned: Owned

    def target_key(self, source_key: str) -> str:
        """The etcd key of the Calico object a source object (by its cache key) becomes."""
        raise NotImplementedError

    def convert(self, source: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def sync(self, item: Hashable) -> None:
        source = self.informer(self.source).get(str(item))
        try:
            document = self.convert(source) if source is not None else None
        except desired.NotConvertible as exc:
            log.warning("%s: %s %s is not converted (what it became is left as it is): %s", self.name,
                        self.source.kind, item, exc)
            return
        key = self.target_key(str(item))
        outcome = converge(self.ds, key, document)
        if outcome != "unchanged":
            self.count_writes({key: outcome})

    def sync_all(self) -> None:
        wanted, keep = {}, []
        for source in self.informer(self.source).items():
            source_key = self.source.key(source)
            try:
                wanted[self.target_key(source_key)] = self.convert(source)
            except desired.NotConvertible as exc:
                log.warning("%s: %s %s is not converted: %s", self.name, self.source.kind, source_key, exc)
                keep.append(self.target_key(source_key))
        self.count_writes(converge_all(self.ds, self.owned, wanted, keep))
