"""What the leader runs: one informer per Kubernetes resource the enabled controllers read
(shared: the workloadendpoint and node controllers read the same pods), and the controllers."""

from __future__ import annotations

import logging

from ..datastore import Datastore
from .client import KubeClient
from .controllers import BY_NAME, Context, Controller
from .controllers.base import Metrics
from .informer import Informer

log = logging.getLogger(__name__)


class Manager:
    def __init__(self, kube: KubeClient, ds: Datastore, controllers: tuple[str, ...], *, reconciler_period: float,
                 leak_grace_period: float, metrics: Metrics, watch_timeout: tuple[int, int] | None = None) -> None:
        self.informers: dict[str, Informer] = {}
        context = Context(ds=ds, informers=self.informers, reconciler_period=reconciler_period,
                          leak_grace_period=leak_grace_period, metrics=metrics, node_exists=kube.node_exists)
        self.controllers: list[Controller] = [BY_NAME[name](context) for name in controllers]
        for controller in self.controllers:
            for resource in controller.resources:
                if resource.plural not in self.informers:
                    informer = Informer(kube, resource, metrics=metrics)
                    if watch_timeout is not None:
                        informer.watch_timeout = watch_timeout
                    self.informers[resource.plural] = informer
                self.informers[resource.plural].subscribe(controller)

    def start(self) -> Manager:
        for controller in self.controllers:
            controller.start()
        for informer in self.informers.values():
            informer.start()
        log.info("running controllers: %s", ", ".join(c.name for c in self.controllers))
        return self

    def stop(self) -> None:
        for informer in self.informers.values():
            informer.stop()
        for controller in self.controllers:
            controller.stop()

    @property
    def lost(self) -> bool:
        """A controller found the leadership gone (a fenced write failed)."""
        return any(c.lost.is_set() for c in self.controllers)

    def ready(self) -> tuple[bool, str]:
        waiting = [c.name for c in self.controllers if not c.ready.is_set()]
        if waiting:
            return False, "syncing: " + ", ".join(waiting)
        return True, "in sync: " + ", ".join(c.name for c in self.controllers)
