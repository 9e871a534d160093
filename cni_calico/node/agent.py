"""calico-node: one long-running agent per host.

Start-up registers the node; then the agent keeps a copy of etcd current by watching
(snapshot, then watch from the snapshot's revision; a lost watch means a fresh snapshot) and
after every relevant change re-derives BIRD's configuration, reloading BIRD only when the text
changed. BIRD is restarted if it dies, and on shutdown it is stopped in graceful-restart mode so
that neither this host's kernel nor its peers drop routes while the agent is away.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import netaddr

from ..datastore import Datastore, WatchLost
from ..errors import CniError, DatastoreUnavailable
from . import startup
from .cache import WATCH_PREFIX, Cache, affects_routing
from .config import AgentConfig
from .health import HealthServer
from .metrics import Registry
from .policy.view import affects_policy
from .routing import view
from .routing.bird import BirdDaemon
from .routing.bird_config import render
from .routing.birdctl import BirdControl, BirdError
from .routing.status import peers_from_protocols

log = logging.getLogger(__name__)

TICK = 1.0  # how often BIRD's liveness is checked while etcd is quiet
PEER_REFRESH = 5.0  # seconds between BGP session gauges updates
MAX_BACKOFF = 10.0
GRACEFUL_MARKER = "bird.graceful"  # left by a graceful stop: the next start recovers


def _declare(metrics: Registry) -> None:
    declarations: tuple[tuple[Any, ...], ...] = (
        ("calico_node_ready", "gauge", "1 when the agent is in sync with etcd and BIRD runs"),
        ("calico_node_resyncs_total", "counter", "full snapshots taken from etcd (start and lost watches)"),
        ("calico_node_watch_events_total", "counter", "etcd watch events received"),
        ("calico_node_syncs_total", "counter", "times the derived state was recomputed"),
        ("calico_node_bird_reloads_total", "counter", "BIRD configuration reloads"),
        ("calico_node_bird_reload_failures_total", "counter", "reloads BIRD refused"),
        ("calico_node_bird_restarts_total", "counter", "times BIRD was found dead and started again"),
        ("calico_node_affine_blocks", "gauge", "confirmed IPAM blocks affine to this node"),
        ("calico_node_bgp_peers", "gauge", "BGP sessions by state", ("state",)),
        ("calico_node_datastore_errors_total", "counter", "failed attempts to reach etcd"),
        ("calico_node_policy_applies_total", "counter", "policy dataplane updates by kind (full, update)",
         ("kind",)),
        ("calico_node_policy_apply_failures_total", "counter", "policy updates nft refused"),
        ("calico_node_policy_apply_seconds", "gauge", "time of the last policy render and apply"),
        ("calico_node_policy_rules", "gauge", "rules in the policy table"),
    )
    for declaration in declarations:
        metrics.declare(*declaration)


def _live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class Agent:
    def __init__(self, config: AgentConfig, datastore: Datastore, stop: threading.Event | None = None) -> None:
        self.config = config
        self.ds = datastore
        self.stop = stop or threading.Event()
        self.cache = Cache()
        self.metrics = Registry()
        _declare(self.metrics)
        self.metrics.set_function("calico_node_ready", lambda: 1.0 if self.readiness()[0] else 0.0)
        self.name = ""
        self.rendered: str | None = None
        self.synced = False
        self.heartbeat = time.monotonic()
        self.problems: dict[str, str] = {}  # by area ("bird", "ipip"): shown by /readiness
        self.bird: BirdDaemon | None = None
        if config.backend == "bird":
            self.bird = BirdDaemon(config.bird_config, config.bird_socket, config.bird_pid, binary=config.bird_binary)
        self._peers_checked = 0.0
        self.policy = None
        if config.policy_dataplane == "nftables":
            from .policy.apply import NftDataplane, default_runner

            self.policy = NftDataplane(default_runner(config.nft_binary))
            log.info("policy dataplane: nftables, applied by %r", self.policy.runner)

    # ------------------------------------------------------------ start-up

    def start_up(self) -> None:
        # Everything that can be refused is decided before anything is written.
        self.name = startup.node_name(self.config)
        address = self._address()
        startup.write_nodename_file(self.config.nodename_file, self.name)
        startup.enable_forwarding()
        self._retry(lambda: self._register(address), "registering the node")

    def _register(self, address: netaddr.IPNetwork | None) -> None:
        info = startup.ensure_cluster_information(self.ds)
        while not startup.datastore_ready(info) and not self.stop.is_set():
            log.warning("ClusterInformation says the datastore is not ready; waiting")
            self.stop.wait(2)
            info = startup.ensure_cluster_information(self.ds)
        startup.register_node(self.ds, self.name, address, self.config.as_number, self.config.k8s_node_ref)
        startup.ensure_default_pool(self.ds, self.config)

    def _address(self) -> netaddr.IPNetwork | None:
        ip = self.config.ip.strip()
        if ip.lower() == "none":
            return None
        if ip.lower() != "autodetect":
            return startup.parse_ip(ip)
        from ..netns import Netns
        from .routing.autodetect import AutodetectError, choose

        with Netns(None) as here:
            interfaces = here.interface_addresses(4)
        try:
            address = choose(self.config.ip_autodetection_method, interfaces)
        except AutodetectError as exc:
            raise startup.StartupError(str(exc)) from None
        log.info("autodetected BGP address %s (%s)", address, self.config.ip_autodetection_method)
        return address

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Start up, then follow etcd until `stop` is set; BIRD is left in graceful-restart state."""
        self.config.run_path.mkdir(parents=True, exist_ok=True)
        other = _live_pid(self.config.agent_pid)
        if other is not None and other != os.getpid():
            raise startup.StartupError(f"calico-node already runs for {self.config.run_dir} (pid {other})")
        health = None
        if self.config.health_port:
            try:
                health = HealthServer(self.config.health_host, self.config.health_port, self.metrics,
                                      self.liveness, self.readiness).start()
            except OSError as exc:
                raise startup.StartupError(f"health port {self.config.health_host}:{self.config.health_port}: "
                                           f"{exc.strerror}") from None
        self.config.agent_pid.write_text(str(os.getpid()))
        cni_server = None
        try:
            self.start_up()
            if self.config.cni_socket_path is not None:
                from .cni_server import CniServer

                cni_server = CniServer(self.config.cni_socket_path, self.config.cni_workers).start()
            backoff = 0.5
            while not self.stop.is_set():
                try:
                    self._follow()
                    backoff = 0.5
                except WatchLost as exc:
                    log.info("watch lost (%s): taking a new snapshot", exc)
                except DatastoreUnavailable as exc:  # keep the dataplane as it is and retry
                    self.metrics.inc("calico_node_datastore_errors_total")
                    self.synced = False
                    log.warning("%s; retrying in %.1f s", exc.msg, backoff)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            if cni_server is not None:
                cni_server.stop()
            self.shutdown()
            if health:
                health.stop()
            self.config.agent_pid.unlink(missing_ok=True)

    def _follow(self) -> None:
        rows, revision = self.ds.snapshot(WATCH_PREFIX)
        self.metrics.inc("calico_node_resyncs_total")
        self.cache.load(rows, revision)
        self.sync()
        watch = self.ds.watch(WATCH_PREFIX, revision + 1)
        self.synced = True
        try:
            while not self.stop.is_set():
                self.heartbeat = time.monotonic()
                batch = watch.next_batch(timeout=TICK)
                if batch:
                    self.metrics.inc("calico_node_watch_events_total", len(batch))
                    changed = self.cache.apply(batch)
                    if any(affects_policy(key) for key in changed):
                        self.sync_policy()  # first: a new pod waits for it, not for BIRD
                    if any(affects_routing(key) for key in changed):
                        self.sync_routing()
                self.supervise()
        finally:
            self.synced = False
            watch.cancel()

    def sync(self) -> None:
        """Re-derive everything from the cache and apply what changed."""
        self.sync_policy()
        self.sync_routing()

    def sync_policy(self) -> None:
        """Render policy for this host from the cache; nft gets only what changed."""
        if self.policy is None:
            return
        from .policy.apply import NftError
        from .policy.render import render
        from .policy.ruleset import counts
        from .policy.view import policy_state

        started = time.monotonic()
        try:
            ruleset = render(policy_state(self.cache, self.name, self.config.endpoint_to_host_action))
            how = self.policy.apply(ruleset)
        except (NftError, ValueError, RuntimeError) as exc:  # the previous policy stays in force
            self.metrics.inc("calico_node_policy_apply_failures_total")
            self._problem("policy", f"policy not applied: {exc}")
            return
        self.problems.pop("policy", None)
        if how != "unchanged":
            took = time.monotonic() - started
            self.metrics.inc("calico_node_policy_applies_total", kind=how)
            self.metrics.set("calico_node_policy_apply_seconds", took)
            self.metrics.set("calico_node_policy_rules", counts(ruleset)["rules"])
            log.info("policy applied (%s) in %.0f ms", how, took * 1000)

    def sync_routing(self) -> None:
        self.metrics.inc("calico_node_syncs_total")
        self._sync_ipip()
        inp = view.bird_input(self.cache, self.name, str(self.config.bird_log))
        self.metrics.set("calico_node_affine_blocks", len(inp.blocks) if inp else 0)
        if self.bird is None:
            return
        if inp is None:
            log.warning("node %s has no IPv4 BGP address in etcd: BGP is not configured", self.name)
            return
        text = render(inp)
        if text == self.rendered and self.bird.alive():
            return
        self._write_config(text)
        try:
            if self.bird.pid is None:
                self._start_bird()
            elif not self._restart_bird_if_dead():  # a restarted BIRD reads the new file by itself
                self.bird.reload()
                self.metrics.inc("calico_node_bird_reloads_total")
                log.info("BIRD reloaded: %d peers, %d blocks", len(inp.peers), len(inp.blocks))
        except BirdError as exc:  # BIRD keeps its previous configuration; retried on the next change
            self.metrics.inc("calico_node_bird_reload_failures_total")
            self._problem("bird", f"BIRD refused the configuration: {exc}")
            return
        self.rendered = text
        self.problems.pop("bird", None)

    def _write_config(self, text: str) -> None:
        path: Path = self.config.bird_config
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def _sync_ipip(self) -> None:
        from .routing.ipip import TUNNEL_DEVICE, ensure_tunnel_address

        me = view.nodes(self.cache).get(self.name)
        try:
            address = ensure_tunnel_address(self.ds, self.name, view.pools(self.cache),
                                            (me.metadata.labels or {}) if me else {})
        except DatastoreUnavailable:
            raise
        except CniError as exc:  # e.g. an exhausted IPIP pool: a problem of IPIP's, routing carries on
            self._problem("ipip", f"IPIP: no tunnel address: {exc.msg}")
            return
        if address is None:
            self.problems.pop("ipip", None)
            return
        from ..netns import Netns

        try:
            with Netns(None) as here:
                here.ensure_ipip_tunnel(TUNNEL_DEVICE, address)
            self.problems.pop("ipip", None)
        except CniError as exc:  # e.g. a kernel without the ipip driver: routing still works, IPIP not
            self._problem("ipip", f"IPIP: {exc.msg}")

    def supervise(self) -> None:
        if self.bird is None or self.rendered is None:
            return
        try:
            self._restart_bird_if_dead()
        except BirdError as exc:
            self._problem("bird", f"BIRD does not start: {exc}")
        now = time.monotonic()
        if now - self._peers_checked >= PEER_REFRESH:
            self._peers_checked = now
            try:
                peers = peers_from_protocols(BirdControl(self.config.bird_socket, timeout=2).protocols())
            except BirdError:
                return
            counts: dict[tuple[tuple[str, str], ...], float] = {}
            for peer in peers:
                key = (("state", peer.info or peer.state),)
                counts[key] = counts.get(key, 0) + 1
            self.metrics.replace("calico_node_bgp_peers", counts)

    def _start_bird(self) -> None:
        assert self.bird is not None
        # After a graceful stop the kernel still holds the routes BIRD learned: recovery mode
        # keeps them until the sessions are back, instead of flushing them at the first scan.
        marker = self.config.run_path / GRACEFUL_MARKER
        self.bird.start(graceful_recovery=marker.exists())
        marker.unlink(missing_ok=True)
        log.info("BIRD started (pid %s)", self.bird.pid)

    def _problem(self, area: str, text: str) -> None:
        if self.problems.get(area) != text:  # say it once, not on every sync
            log.error(text)
        self.problems[area] = text

    def _restart_bird_if_dead(self) -> bool:
        assert self.bird is not None
        if not self.bird.restart_if_dead():
            return False
        self.metrics.inc("calico_node_bird_restarts_total")
        log.warning("BIRD had died: restarted it (pid %s)", self.bird.pid)
        self.problems.pop("bird", None)
        return True

    def shutdown(self) -> None:
        if self.bird is not None and self.bird.alive():
            log.info("stopping BIRD in graceful-restart mode (routes stay while the agent is away)")
            self.bird.stop(graceful=True)
            (self.config.run_path / GRACEFUL_MARKER).touch()

    # ------------------------------------------------------------ health

    def liveness(self) -> tuple[bool, str]:
        stale = time.monotonic() - self.heartbeat
        return (stale < 30, f"loop last ran {stale:.1f} s ago")

    def readiness(self) -> tuple[bool, str]:
        if not self.synced:
            return False, "not in sync with etcd"
        if self.bird is not None and not self.bird.alive():
            return False, "BIRD is not running"
        if self.problems:
            return False, "; ".join(self.problems[area] for area in sorted(self.problems, reverse=True))
        return True, f"ready: node {self.name}, in sync at revision {self.cache.revision}"

    # ------------------------------------------------------------ helpers

    def _retry(self, action: Callable[[], object], what: str) -> None:
        backoff = 0.5
        while True:
            try:
                action()
                return
            except DatastoreUnavailable as exc:
                if self.stop.is_set():
                    raise
                self.metrics.inc("calico_node_datastore_errors_total")
                log.warning("%s: %s; retrying in %.1f s", what, exc.msg, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
