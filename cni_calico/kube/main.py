"""`calico-kube-controllers`: keep Calico's datastore in step with Kubernetes, until SIGTERM.

Waits to be elected (an instance that does not lead reads and writes nothing), then runs the
enabled controllers with every write fenced by the leadership. Losing it stops the controllers
and goes back to waiting; SIGTERM resigns at once, so a standby takes over without waiting for
the lease to run out.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from ..datastore import Datastore
    from ..node.health import HealthServer
    from ..node.metrics import Registry
    from .client import KubeClient
    from .config import Settings
    from .manager import Manager

log = logging.getLogger(__name__)


class Status:
    """What /readiness reports: standby (ready to take over), syncing, or in sync."""

    def __init__(self) -> None:
        self.manager: Manager | None = None
        self.standby_reason = "starting"

    def ready(self) -> tuple[bool, str]:
        manager = self.manager
        if manager is None:
            return True, f"standby: {self.standby_reason}"
        return manager.ready()


def run(env: Mapping[str, str]) -> int:
    from .. import logs
    from ..errors import CniError
    from .config import ConfigError, load

    try:
        settings = load(env)
    except ConfigError as exc:
        print(f"calico-kube-controllers: {exc}", file=sys.stderr)
        return 2
    logs.configure(logs.LogSettings(level=settings.log_level))

    from ..datastore import open_datastore
    from .client import KubeConfigError, connect

    try:
        kube = connect(settings.kubeconfig)
        ds = open_datastore(settings.etcd)
    except KubeConfigError as exc:
        print(f"calico-kube-controllers: {exc}", file=sys.stderr)
        return 1
    except CniError as exc:
        print(f"calico-kube-controllers: {exc.msg}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from .metrics import registry

    metrics, status = registry(), Status()
    try:
        server = _health_server(settings, metrics, status, kube)
    except OSError as exc:
        print(f"calico-kube-controllers: cannot serve health and metrics on {settings.metrics_host}:"
              f"{settings.metrics_port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        _serve(settings, kube, ds, stop, metrics=metrics, status=status)
    finally:
        if server is not None:
            server.stop()
        ds.close()
        kube.close()
    log.info("calico-kube-controllers stopped")
    return 0


def _serve(settings: Settings, kube: KubeClient, ds: Datastore, stop: threading.Event, *, metrics: Registry,
           status: Status) -> None:
    from ..datastore import Datastore as AnyStore
    from .compaction import Compactor
    from .leader import LEADER_KEY, Elector, Fenced, KeepAlive
    from .manager import Manager

    elector = Elector(ds, settings.identity, settings.leader_ttl)
    log.info("calico-kube-controllers %s: API %s, etcd %s, controllers %s", settings.identity, kube.host,
             settings.etcd.endpoints, ",".join(settings.controllers))
    while not stop.is_set():
        keepalive = None
        writes: AnyStore = ds
        if settings.leader_election:
            status.standby_reason = "waiting to be elected"
            leadership = elector.campaign(stop)
            if leadership is None:
                break
            keepalive = KeepAlive(elector, leadership).start()
            writes = Fenced(ds, LEADER_KEY, leadership.revision, keepalive.lost)
        metrics.set("calico_kube_controllers_leader", 1)
        manager = Manager(kube, writes, settings.controllers, reconciler_period=settings.reconciler_period,
                          leak_grace_period=settings.leak_grace_period, metrics=metrics).start()
        compactor = Compactor(ds, settings.compaction_period).start()  # type: ignore[arg-type]
        status.manager = manager
        while not stop.wait(0.2):
            if manager.lost or (keepalive is not None and keepalive.lost.is_set()):
                break
        status.manager = None
        metrics.set("calico_kube_controllers_leader", 0)
        compactor.stop()
        manager.stop()
        if keepalive is not None:
            keepalive.stop()
            if stop.is_set():
                elector.resign(keepalive.leadership)
            else:
                log.error("no longer leading: controllers stopped; waiting to be elected again")


def _health_server(settings: Settings, metrics: Registry, status: Status, kube: KubeClient) -> HealthServer | None:
    """/metrics, /liveness and /readiness on PROMETHEUS_METRICS_PORT (none when it is 0). With
    HEALTH_ENABLED false both checks always answer 200, as Calico's are then off."""
    if settings.metrics_port == 0:
        return None
    from ..node.health import HealthServer

    def live() -> tuple[bool, str]:
        return True, "alive" if settings.health_enabled else "health checks disabled"

    def ready() -> tuple[bool, str]:
        if not settings.health_enabled:
            return live()
        ok, reason = status.ready()
        if not ok:
            return ok, reason
        api_ok, api_reason = kube.healthy()
        return (True, reason) if api_ok else (False, api_reason)

    return HealthServer(settings.metrics_host, settings.metrics_port, metrics, live, ready).start()


def main() -> None:
    sys.exit(run(dict(os.environ)))
