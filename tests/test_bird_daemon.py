"""BirdDaemon and BirdControl against real BIRD 2: two simulated hosts (namespaces) joined by a veth.

Each BIRD is started by the test process with its thread switched into the host's namespace
(`netns.entered`), so it is our child with a known PID, and runs in that namespace only. The
control sockets are files, reachable from the test's own namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from cni_calico.netns import entered
from cni_calico.node.routing.bird import BirdDaemon
from cni_calico.node.routing.birdctl import BirdControl, BirdError, Protocol
from cni_calico.node.routing.status import PeerStatus, peers_from_protocols

from .netlab import NETNS_DIR, sh

pytestmark = [pytest.mark.root, pytest.mark.bird]


T = TypeVar("T")
# `graceful restart`: the restarting role too (the default, "aware", only helps restarting peers).
TIMERS = "connect delay time 1; connect retry time 2; error wait time 1,5; graceful restart;"


@dataclass
class Host:
    """One simulated host: 192.0.2.<index> in namespace `ns`, with its BIRD files under `dir`."""

    index: int
    ns: str
    dir: Path
    pids: list[int]  # every BIRD started for this test, for cleanup by PID
    daemons: list[BirdDaemon] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"192.0.2.{self.index}"

    @property
    def config(self) -> Path:
        return self.dir / f"bird{self.index}.conf"

    @property
    def socket(self) -> Path:
        return self.dir / f"bird{self.index}.ctl"

    def new_daemon(self) -> BirdDaemon:
        daemon = BirdDaemon(self.config, self.socket, self.dir / f"bird{self.index}.pid")
        self.daemons.append(daemon)
        return daemon

    def inside(self, fn: Callable[[], T]) -> T:
        """Run fn with this thread in the host's namespace: BIRD started there stays there."""
        with entered(f"{NETNS_DIR}/{self.ns}"):
            return fn()

    def start(self, daemon: BirdDaemon, **kwargs: bool) -> None:
        try:
            self.inside(lambda: daemon.start(**kwargs))
        finally:
            if daemon.pid is not None:
                self.pids.append(daemon.pid)

    def write_config(self, peer: int, *, persist: bool, extra: str = "") -> None:
        # Host 2 prints times as `2026-11-25 10:31:36` to exercise that form of `show protocols`.
        self.config.write_text(f"""
log "{self.dir}/bird{self.index}.log" all;
router id {self.address};
{"timeformat protocol iso long;" if self.index == 2 else ""}
protocol device {{ }}
protocol kernel {{ ipv4 {{ import none; export all; }}; {"persist;" if persist else ""} }}
protocol static blocks {{ ipv4; route 10.65.{self.index}.0/26 blackhole; }}
protocol bgp Mesh_192_0_2_{peer} {{
  local {self.address} as 64512; neighbor 192.0.2.{peer} as 64512; direct;
  {TIMERS}
  ipv4 {{ import all; export all; next hop self; }};
}}
{extra}
""")

    def peers(self) -> list[PeerStatus]:
        return peers_from_protocols(BirdControl(self.socket).protocols())

    def protocols(self) -> dict[str, Protocol]:
        return {p.name: p for p in BirdControl(self.socket).protocols()}

    def route(self, prefix: str) -> str:
        return sh("ip", "-n", self.ns, "route", "show", prefix).stdout.strip()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def established(host: Host) -> bool:
    try:
        return [p.info for p in host.peers()] == ["Established"]
    except BirdError:
        return False


def bird_running(pid: int, marker: str) -> bool:
    """A live BIRD of ours: zombies (not yet reaped) and reused PIDs do not count."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    except OSError:
        return False
    return state not in ("Z", "X") and marker in cmdline


def argv(daemon: BirdDaemon) -> list[str]:
    return Path(f"/proc/{daemon.pid}/cmdline").read_bytes().decode().split("\0")


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    """Two namespaces joined by a veth, BIRD configs written (host 1 persists its kernel routes)."""
    prefix = f"ccbd-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="ccbd-"))  # short: unix socket paths are limited to 107 bytes
    pids: list[int] = []
    a, b = Host(1, f"{prefix}-a", work, pids), Host(2, f"{prefix}-b", work, pids)
    try:
        for host in (a, b):
            sh("ip", "netns", "add", host.ns)
            sh("ip", "-n", host.ns, "link", "set", "lo", "up")
        sh("ip", "-n", a.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b.ns)
        for host in (a, b):
            sh("ip", "-n", host.ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            sh("ip", "-n", host.ns, "link", "set", "eth0", "up")
        a.write_config(2, persist=True)
        b.write_config(1, persist=False)
        yield a, b
    finally:
        for host in (a, b):
            for daemon in host.daemons:
                try:
                    daemon.stop()
                except Exception:  # noqa: BLE001 (cleanup goes on: the PIDs below are the backstop)
                    pass
        for pid in pids:
            if bird_running(pid, str(work)):
                os.kill(pid, signal.SIGKILL)
        for host in (a, b):
            sh("ip", "netns", "del", host.ns, check=False)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def mesh(hosts: tuple[Host, Host]) -> tuple[Host, Host, BirdDaemon, BirdDaemon]:
    """Both BIRDs running and their session Established."""
    a, b = hosts
    bird_a, bird_b = a.new_daemon(), b.new_daemon()
    a.start(bird_a)
    b.start(bird_b)
    wait_for("the BGP session", lambda: established(a) and established(b))
    return a, b, bird_a, bird_b


def test_sessions_establish_and_status_reads_them(mesh: tuple[Host, Host, BirdDaemon, BirdDaemon]) -> None:
    a, b, bird_a, bird_b = mesh
    assert bird_a.alive() and bird_b.alive() and bird_a.pid != bird_b.pid
    assert "-R" not in argv(bird_a)
    [peer_a] = a.peers()
    [peer_b] = b.peers()
    assert (peer_a.address, peer_a.peer_type, peer_a.state, peer_a.info) == ("192.0.2.2", "node-to-node mesh", "up",
                                                                              "Established")
    assert (peer_b.address, peer_b.state, peer_b.info) == ("192.0.2.1", "up", "Established")
    # Host 1 prints `HH:MM:SS.mmm`, host 2 `YYYY-MM-DD HH:MM:SS`: both become HH:MM:SS.
    assert a.protocols()["Mesh_192_0_2_2"].since.count(".") == 1
    assert b.protocols()["Mesh_192_0_2_1"].since.count("-") == 2
    for peer in (peer_a, peer_b):
        assert time.strptime(peer.since, "%H:%M:%S")
    assert {"device1", "kernel1", "blocks"} <= set(a.protocols())
    # The routes really travelled: each host learned the other's block into its kernel.
    wait_for("learned routes", lambda: "via 192.0.2.2" in a.route("10.65.2.0/26")
             and "via 192.0.2.1" in b.route("10.65.1.0/26"))


def test_reload_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one(
        mesh: tuple[Host, Host, BirdDaemon, BirdDaemon]) -> None:
    a, b, bird_a, _ = mesh
    assert "extra" not in a.protocols()
    a.write_config(2, persist=True, extra="protocol static extra { ipv4; route 10.66.0.0/24 blackhole; }")
    bird_a.reload()
    assert a.protocols()["extra"].state == "up"
    wait_for("the new route at the peer", lambda: "10.66.0.0/24" in b.route("10.66.0.0/24"))

    a.config.write_text(a.config.read_text() + "\nprotocol bgp broken { nonsense; }\n")
    with pytest.raises(BirdError) as err:
        bird_a.reload()
    assert err.value.code == 8002
    assert f"{a.config}:" in str(err.value) and "syntax error" in str(err.value)
    # BIRD still runs the previous config: the extra protocol, no `broken` one, the session up.
    assert bird_a.alive()
    protocols = a.protocols()
    assert "extra" in protocols and "broken" not in protocols
    assert established(a)


def test_graceful_stop_keeps_routes_and_down_removes_them(mesh: tuple[Host, Host, BirdDaemon, BirdDaemon]) -> None:
    a, b, bird_a, bird_b = mesh
    wait_for("learned routes", lambda: bool(a.route("10.65.2.0/26")) and bool(b.route("10.65.1.0/26")))
    pid_a = bird_a.pid
    assert pid_a is not None

    bird_a.stop(graceful=True)
    assert not bird_a.alive() and not bird_running(pid_a, str(a.dir))
    assert not a.socket.exists() and not (a.dir / "bird1.pid").exists()
    with pytest.raises(BirdError, match="not running"):
        BirdControl(a.socket).protocols()
    # Host 1 (kernel protocol with `persist`) kept the route it had learned; host 2's BIRD keeps
    # host 1's route too, as stale, waiting for the graceful restart to finish.
    assert "via 192.0.2.2" in a.route("10.65.2.0/26")
    wait_for("host 2 to notice", lambda: [p.state for p in b.peers()] == ["start"])
    assert "via 192.0.2.1" in b.route("10.65.1.0/26")

    # Host 2 (no `persist`) stopped with `down`: its BIRD takes its routes out of the kernel.
    bird_b.stop()
    assert not bird_b.alive()
    assert b.route("10.65.1.0/26") == ""


def test_a_killed_bird_is_restarted_and_the_session_comes_back(
        mesh: tuple[Host, Host, BirdDaemon, BirdDaemon]) -> None:
    a, b, bird_a, _ = mesh
    assert bird_a.restart_if_dead() is False  # alive: nothing to do
    old_pid = bird_a.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_for("BIRD to die", lambda: not bird_a.alive(), timeout=5)

    assert a.inside(bird_a.restart_if_dead) is True
    a.pids.append(bird_a.pid or 0)
    assert bird_a.alive() and bird_a.pid != old_pid
    assert "-R" in argv(bird_a)  # graceful-restart recovery: the kernel routes stay until re-learned
    wait_for("the session to come back", lambda: established(a) and established(b))
    assert a.inside(bird_a.restart_if_dead) is False

    # Killed again, then stopped on purpose: no stale socket or pid file left, and it stays stopped.
    os.kill(bird_a.pid or 0, signal.SIGKILL)
    wait_for("BIRD to die", lambda: not bird_a.alive(), timeout=5)
    assert a.socket.exists()  # what kill -9 leaves behind
    bird_a.stop()
    assert not a.socket.exists() and not (a.dir / "bird1.pid").exists()
    assert a.inside(bird_a.restart_if_dead) is False and not bird_a.alive()


@pytest.mark.parametrize("pid_file_lost", [False, True])
def test_a_leftover_bird_from_a_crashed_agent_is_replaced(mesh: tuple[Host, Host, BirdDaemon, BirdDaemon],
                                                          pid_file_lost: bool) -> None:
    a, b, bird_a, _ = mesh
    old_pid = bird_a.pid
    assert old_pid is not None
    if pid_file_lost:  # found by its command line instead
        (a.dir / "bird1.pid").unlink()
    # A new agent (new BirdDaemon, same files) while the old BIRD still serves the socket:
    # without the leftover handling BIRD refuses to start ("I found another BIRD running").
    successor = a.new_daemon()
    a.start(successor)
    assert successor.alive() and successor.pid != old_pid
    assert "-R" in argv(successor)  # the replaced BIRD left for a graceful restart: recover from it
    wait_for("the old BIRD to be gone", lambda: not bird_running(old_pid, str(a.dir)), timeout=5)
    wait_for("the session under the new BIRD", lambda: established(a) and established(b))
    # The dead agent's daemon object, stopped late, must not take the new BIRD's socket away.
    bird_a.stop()
    assert successor.alive() and established(a)
    assert (a.dir / "bird1.pid").read_text().strip() == str(successor.pid)


def test_start_with_a_broken_config_reports_birds_parse_error(hosts: tuple[Host, Host]) -> None:
    a, _ = hosts
    a.config.write_text("router id 192.0.2.1;\nprotocol bgp broken { nonsense; }\n")
    daemon = a.new_daemon()
    started = time.monotonic()
    with pytest.raises(BirdError) as err:
        a.start(daemon)
    message = str(err.value)
    assert "exited at start" in message and f"{a.config}:2:" in message and "syntax error" in message
    assert time.monotonic() - started < 5  # reported at once, not after the start timeout
    assert not daemon.alive()


def test_control_on_a_missing_or_dead_socket_says_bird_is_not_running(tmp_path: Path) -> None:
    missing = tmp_path / "bird.ctl"
    with pytest.raises(BirdError) as err:
        BirdControl(missing).command("show status")
    assert str(err.value) == f"BIRD is not running (no control socket at {missing})"
    assert err.value.code is None

    stale = Path(tempfile.mkdtemp(prefix="ccbd-")) / "stale.ctl"  # a socket file nobody listens on
    try:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(stale))
        listener.close()
        with pytest.raises(BirdError, match=r"BIRD is not running .nothing answers"):
            BirdControl(stale).protocols()
    finally:
        shutil.rmtree(stale.parent)


def test_bird_syntax_errors_come_back_as_bird_error(mesh: tuple[Host, Host, BirdDaemon, BirdDaemon]) -> None:
    a, _, _, _ = mesh
    with pytest.raises(BirdError) as err:
        BirdControl(a.socket).command("show nonsense")
    assert err.value.code is not None and err.value.code >= 9000
    assert "syntax error" in str(err.value)
    status = BirdControl(a.socket).command("show status")
    assert status[0] == (1000, "BIRD 2.0.12")
    assert (13, "Daemon is up and running") in status
