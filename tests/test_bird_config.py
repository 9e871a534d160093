"""BIRD 2 configuration: golden files, parsed by the real BIRD, and two real BIRDs in namespaces.

Regenerate the goldens after an intended change with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_bird_config.py`
and read the diff before committing it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from cni_calico.lab.hosts import sh
from cni_calico.node.routing.bird_config import (
    PEER_GLOBAL,
    PEER_MESH,
    PEER_NODE,
    BirdInput,
    Peer,
    Pool,
    protocol_name,
    render,
    select_peers,
)

from .golden import assert_matches_golden

GOLDEN = Path(__file__).parent / "golden" / "bird"

DEFAULT_POOL = Pool("192.168.0.0/16")
LOG = "/var/log/calico/bird/bird.log"


def mesh(*nodes: tuple[str, str], as_number: int = 64512) -> tuple[Peer, ...]:
    return tuple(Peer(ip, as_number, PEER_MESH, name) for name, ip in nodes)


CASES: dict[str, BirdInput] = {
    # A lone node: nothing to peer with, still a valid configuration with its block.
    "mesh_1_node": BirdInput("host1", "192.0.2.1", 64512, pools=(DEFAULT_POOL,),
                             blocks=("192.168.10.0/26",), log_file=LOG),
    # host1 has the lower address: passive toward host2, which opens the session.
    "mesh_2_nodes": BirdInput("host1", "192.0.2.1", 64512, peers=mesh(("host2", "192.0.2.2")),
                              pools=(DEFAULT_POOL,), blocks=("192.168.10.0/26",), log_file=LOG),
    # host2 in the middle: connects to host1, waits for host3; itself in the list is skipped.
    "mesh_3_nodes": BirdInput("host2", "192.0.2.2", 64512,
                              peers=mesh(("host3", "192.0.2.3"), ("host2", "192.0.2.2"), ("host1", "192.0.2.1")),
                              pools=(DEFAULT_POOL,), blocks=("192.168.20.64/26",), log_file=LOG),
    # Explicit BGPPeers beside the mesh: one of each kind; a global peer on a mesh node's address
    # and a global peer also listed node-specific keep one session (mesh, then node, then global);
    # a global peer on our own address is skipped.
    "global_and_node_peers": BirdInput(
        "host1", "192.0.2.1", 64512,
        peers=(Peer("192.0.2.254", 64512, PEER_GLOBAL, "tor-a"), Peer("192.0.2.2", 64512, PEER_GLOBAL, "dup-of-mesh"),
               Peer("192.0.2.1", 64512, PEER_GLOBAL, "myself"), Peer("198.51.100.1", 64512, PEER_GLOBAL, "rr-1"),
               Peer("192.0.2.253", 64512, PEER_NODE, "rack-rr"), Peer("192.0.2.254", 64512, PEER_NODE, "tor-a-node"),
               *mesh(("host2", "192.0.2.2"))),
        pools=(DEFAULT_POOL,), blocks=("192.168.10.0/26",), log_file=LOG),
    # This node in its own AS (Node spec.bgp.asNumber) with an eBGP peer in another AS.
    "custom_as": BirdInput("host1", "192.0.2.1", 64513,
                           peers=(*mesh(("host2", "192.0.2.2"), as_number=64513),
                                  Peer("203.0.113.1", 65000, PEER_GLOBAL, "upstream")),
                           pools=(DEFAULT_POOL,), blocks=("192.168.10.0/26",), log_file=LOG),
    # IPIP pool beside a plain one: learned routes for 10.66/16 go via tunl0 onlink.
    "ipip_pool": BirdInput("host1", "192.0.2.1", 64512, peers=mesh(("host2", "192.0.2.2")),
                           pools=(Pool("10.66.0.0/16", ipip=True), DEFAULT_POOL),
                           blocks=("10.66.3.0/26", "192.168.10.0/26"), log_file=LOG),
    # A pool with disableBGPExport: nothing inside it is announced, not even our block there.
    "disable_bgp_export": BirdInput("host1", "192.0.2.1", 64512, peers=mesh(("host2", "192.0.2.2")),
                                    pools=(DEFAULT_POOL, Pool("10.70.0.0/16", disable_bgp_export=True)),
                                    blocks=("10.70.0.0/26", "192.168.10.0/26"), log_file=LOG),
    # Several blocks, given unsorted, one twice, and IPv6 entries (ignored for now); log to stderr.
    "several_blocks": BirdInput("host1", "192.0.2.1", 64512, peers=mesh(("host2", "192.0.2.2")),
                                pools=(DEFAULT_POOL, Pool("fd00:10::/48")),
                                blocks=("192.168.10.64/26", "192.168.9.0/26", "fd00:10::/122",
                                        "192.168.10.0/26", "192.168.9.0/26", "192.168.100.0/26")),
}


def golden_path(case: str) -> Path:
    return GOLDEN / f"{case}.conf"


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden(case: str) -> None:
    text = render(CASES[case])
    assert_matches_golden(golden_path(case), text)


def test_no_stale_golden_files() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.conf")) == sorted(CASES)


def _bird_parse(path: Path) -> subprocess.CompletedProcess[str]:
    if not shutil.which("bird"):
        pytest.fail("BIRD 2 (Debian package bird2) is not installed", pytrace=False)
    return subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.bird
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_parses_with_real_bird(case: str) -> None:
    proc = _bird_parse(golden_path(case))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.bird
def test_bird_parse_check_rejects_unknown_attribute(tmp_path: Path) -> None:
    """The parse check above can fail: Calico's patched `krt_tunnel` is unknown to Debian's BIRD 2."""
    bad = tmp_path / "bad.conf"
    bad.write_text(render(CASES["ipip_pool"]).replace('ifname = "tunl0";', 'krt_tunnel = "tunl0";'))
    proc = _bird_parse(bad)
    assert proc.returncode != 0 and "syntax error" in proc.stderr


# ---------------------------------------------------------------- rendering rules


def test_header_names_the_node_and_logging() -> None:
    text = render(CASES["mesh_1_node"])
    assert text.startswith("# BIRD 2 configuration for node host1,")
    assert f'\nlog "{LOG}" all;\n' in text
    assert "\nlog stderr all;\n" in render(dataclasses.replace(CASES["mesh_1_node"], log_file=""))


def test_deterministic_whatever_the_input_order() -> None:
    inp = CASES["global_and_node_peers"]
    shuffled = dataclasses.replace(inp, peers=tuple(reversed(inp.peers)), pools=tuple(reversed(inp.pools)),
                                   blocks=tuple(reversed(inp.blocks)))
    assert render(shuffled) == render(inp)
    # Duplicates within one kind: the lowest (AS, name) wins whatever the order.
    twins = (Peer("203.0.113.1", 65001, PEER_GLOBAL, "b"), Peer("203.0.113.1", 65000, PEER_GLOBAL, "a"))
    for peers in (twins, twins[::-1]):
        assert select_peers(BirdInput("h", "192.0.2.1", 64512, peers=peers)) == [twins[1]]
    # Two entries for one pool CIDR merge: IPIP or no-export if either says so.
    pools = (Pool("10.66.0.0/16", ipip=True), Pool("10.66.0.0/16", disable_bgp_export=True))
    for order in (pools, pools[::-1]):
        text = render(BirdInput("h", "192.0.2.1", 64512, pools=order))
        assert 'ifname = "tunl0";' in text and "if net ~ 10.66.0.0/16 then reject;" in text
    several = CASES["several_blocks"]
    assert render(dataclasses.replace(several, blocks=tuple(sorted(several.blocks)))) == render(several)


def test_protocol_names_follow_calico() -> None:
    assert protocol_name(Peer("192.0.2.2", 1, PEER_MESH)) == "Mesh_192_0_2_2"
    assert protocol_name(Peer("10.0.0.1", 1, PEER_GLOBAL)) == "Global_10_0_0_1"
    assert protocol_name(Peer("172.16.5.9", 1, PEER_NODE)) == "Node_172_16_5_9"


def test_peer_precedence_and_self() -> None:
    peers = select_peers(CASES["global_and_node_peers"])
    assert [(p.ip, p.kind) for p in peers] == [
        ("192.0.2.2", PEER_MESH), ("192.0.2.253", PEER_NODE), ("192.0.2.254", PEER_NODE), ("198.51.100.1", PEER_GLOBAL)]


def test_peers_sorted_numerically_and_passive_toward_higher_address() -> None:
    inp = BirdInput("n9", "10.0.0.9", 64512, peers=mesh(("n10", "10.0.0.10"), ("n8", "10.0.0.8")))
    text = render(inp)
    assert text.index("Mesh_10_0_0_8") < text.index("Mesh_10_0_0_10")
    blocks = dict(re.findall(r"protocol bgp (\S+) from bgp_template \{(.*?)\n\}", text, re.S))
    assert "passive on;" in blocks["Mesh_10_0_0_10"]  # numerically higher (a string compare would say lower)
    assert "passive on;" not in blocks["Mesh_10_0_0_8"]


def test_ipv6_is_ignored() -> None:
    inp = BirdInput("h", "192.0.2.1", 64512, peers=(Peer("fd00::2", 64512, PEER_MESH),),
                    pools=(Pool("fd00::/48", ipip=True),), blocks=("fd00::/122",))
    config = "\n".join(line.split("#")[0] for line in render(inp).splitlines())  # comments dropped
    assert ":" not in config
    assert "route " not in config and "protocol bgp " not in config and "net ~" not in config


@pytest.mark.parametrize("change", [
    {"router_id": "192.0.2.300"}, {"router_id": "fd00::1"}, {"as_number": 0}, {"log_file": 'a"b'},
    {"blocks": ("10.0.0.0/33",)}, {"pools": (Pool("nonsense"),)}, {"tunnel_device": "tun l0"},
    {"peers": (Peer("192.0.2.2", 64512, "mystery"),)}, {"peers": (Peer("192.0.2.x", 64512, PEER_GLOBAL),)},
])
def test_invalid_input_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        render(dataclasses.replace(CASES["mesh_2_nodes"], **change))


# ---------------------------------------------------------------- two real BIRDs


@dataclass
class BirdHost:
    netns: str
    address: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> str:
        return str(self.workdir / "bird.ctl")

    def start(self, config: str) -> None:
        cfg = self.workdir / "bird.conf"
        cfg.write_text(config)
        with open(self.workdir / "stderr", "wb") as stderr:  # BIRD keeps its own descriptor
            self.proc = subprocess.Popen(  # `ip netns exec` execs BIRD: this PID is BIRD's
                ["ip", "netns", "exec", self.netns, "bird", "-f", "-c", str(cfg), "-s", self.sock,
                 "-P", str(self.workdir / "bird.pid")],
                stdout=subprocess.DEVNULL, stderr=stderr)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def birdc(self, *cmd: str) -> str:
        return sh("birdc", "-s", self.sock, *cmd).stdout

    def routes(self) -> str:
        return sh("ip", "-n", self.netns, "-4", "route", "show").stdout

    def bird_nets(self, *args: str) -> set[str]:
        """Prefixes in BIRD's table (`show route <args>`)."""
        return set(re.findall(r"^(\d+\.\d+\.\d+\.\d+/\d+)\s", self.birdc("show", "route", *args), re.M))

    def ip(self, *cmd: str) -> None:
        sh("ip", "-n", self.netns, *cmd)


@dataclass
class BirdLab:
    """Two simulated hosts, A (192.0.2.1) and B (192.0.2.2), joined by a veth; each with a veth
    named tunl0 standing in for the IPIP device (no ipip driver here) and a cali0 for workloads."""

    workdir: Path
    prefix: str = field(default_factory=lambda: "ccbird-" + uuid.uuid4().hex[:6])
    hosts: list[BirdHost] = field(default_factory=list)

    def start(self) -> tuple[BirdHost, BirdHost]:
        for name, ip in (("a", "192.0.2.1"), ("b", "192.0.2.2")):
            netns = f"{self.prefix}-{name}"
            sh("ip", "netns", "add", netns)
            wd = self.workdir / name
            wd.mkdir()
            self.hosts.append(BirdHost(netns, ip, wd))
        a, b = self.hosts
        a.ip("link", "add", "uplink", "type", "veth", "peer", "name", "uplink-b")
        a.ip("link", "set", "uplink-b", "netns", b.netns)
        b.ip("link", "set", "uplink-b", "name", "uplink")
        for host in (a, b):
            host.ip("addr", "add", f"{host.address}/24", "dev", "uplink")
            for cmd in (["link", "set", "lo", "up"], ["link", "set", "uplink", "up"],
                        ["link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0-peer"],
                        ["link", "add", "cali0", "type", "veth", "peer", "name", "cali0-peer"]):
                host.ip(*cmd)
            for dev in ("tunl0", "tunl0-peer", "cali0", "cali0-peer"):
                host.ip("link", "set", dev, "up")
        return a, b

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
        for host in self.hosts:
            sh("ip", "netns", "del", host.netns, check=False)


@pytest.fixture
def bird_lab(tmp_path: Path) -> Iterator[BirdLab]:
    if os.geteuid() != 0:
        pytest.fail("the BIRD namespace test needs root (network namespaces)", pytrace=False)
    if not (shutil.which("bird") and shutil.which("birdc")):
        pytest.fail("BIRD 2 (Debian package bird2) is not installed", pytrace=False)
    lab = BirdLab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


POOLS = (Pool("10.65.0.0/16"), Pool("10.66.0.0/16", ipip=True), Pool("10.70.0.0/16", disable_bgp_export=True))
A_BLOCKS = ("10.65.0.0/26", "10.66.0.0/26", "10.70.0.0/26")
B_BLOCKS = ("10.65.0.64/26", "10.66.0.64/26")


def _inputs(kind: str, lab: BirdLab) -> tuple[BirdInput, BirdInput, str, str]:
    """Configs for A and B and the session names each shows: iBGP mesh, or eBGP explicit peers."""
    if kind == "mesh":
        a_as, b_as, a_kind, b_kind = 64512, 64512, PEER_MESH, PEER_MESH
    else:  # A in 64512 with B as a global peer; B in 64513 with A as a node-specific peer
        a_as, b_as, a_kind, b_kind = 64512, 64513, PEER_GLOBAL, PEER_NODE
    a_host, b_host = lab.hosts
    a = BirdInput("a", "192.0.2.1", a_as, peers=(Peer("192.0.2.2", b_as, a_kind, "b"),), pools=POOLS,
                  blocks=A_BLOCKS, log_file=str(a_host.workdir / "bird.log"))
    b = BirdInput("b", "192.0.2.2", b_as, peers=(Peer("192.0.2.1", a_as, b_kind, "a"),), pools=POOLS,
                  blocks=B_BLOCKS, log_file=str(b_host.workdir / "bird.log"))
    return a, b, protocol_name(a.peers[0]), protocol_name(b.peers[0])


def _established(host: BirdHost, protocol: str) -> bool:
    assert host.proc is not None
    if host.proc.poll() is not None:
        raise AssertionError(f"BIRD in {host.netns} exited: {(host.workdir / 'stderr').read_text()}")
    proc = sh("birdc", "-s", host.sock, "show", "protocols", check=False)  # the socket may not exist yet
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(protocol + " ")), "")
    return "Established" in line


@pytest.mark.bird
@pytest.mark.root
@pytest.mark.parametrize("kind", ["mesh", "ebgp"])
def test_two_real_birds_exchange_blocks(bird_lab: BirdLab, kind: str) -> None:
    a, b = bird_lab.start()
    # Routes A's kernel holds before BIRD starts: a workload /32 inside A's block, one inside the
    # no-export pool, and one outside every pool. BIRD learns them all; none may reach B.
    for net in ("10.65.0.5/32", "10.70.0.5/32", "198.51.100.0/24"):
        a.ip("route", "add", net, "dev", "cali0")
    a_in, b_in, a_proto, b_proto = _inputs(kind, bird_lab)
    a.start(render(a_in))
    b.start(render(b_in))

    wait_for(f"{a_proto} Established on A", lambda: _established(a, a_proto))
    wait_for(f"{b_proto} Established on B", lambda: _established(b, b_proto))

    # B's kernel: A's plain block via A on the link, A's IPIP block via A through tunl0, onlink.
    wait_for("A's blocks in B's kernel", lambda: "10.66.0.0/26 " in b.routes() and "10.65.0.0/26 " in b.routes())
    b_routes = b.routes()
    assert re.search(r"^10\.65\.0\.0/26 via 192\.0\.2\.1 dev uplink proto bird\b", b_routes, re.M), b_routes
    assert re.search(r"^10\.66\.0\.0/26 via 192\.0\.2\.1 dev tunl0 proto bird .*\bonlink\b", b_routes, re.M), b_routes
    # ... and the reverse on A, whose own blocks are blackholes (the IPIP one too: not rewritten).
    wait_for("B's blocks in A's kernel", lambda: "10.66.0.64/26 " in a.routes())
    a_routes = a.routes()
    assert re.search(r"^10\.66\.0\.64/26 via 192\.0\.2\.2 dev tunl0 proto bird .*\bonlink\b", a_routes, re.M)
    for block in A_BLOCKS:
        assert re.search(rf"^blackhole {re.escape(block)} proto bird\b", a_routes, re.M), a_routes
    # Interface routes stay the kernel's own: no second copy by BIRD.
    assert "192.0.2.0/24 dev uplink proto bird" not in a_routes + b_routes

    # A's BIRD did learn the three kernel routes, so their absence on B is the export filter's doing.
    assert {"10.65.0.5/32", "10.70.0.5/32", "198.51.100.0/24"} <= a.bird_nets()
    # What B learned from A: exactly A's exportable blocks (the one in the no-export pool stays home).
    assert b.bird_nets("protocol", b_proto) == {"10.65.0.0/26", "10.66.0.0/26"}
    assert a.bird_nets("protocol", a_proto) == set(B_BLOCKS)
    for absent in ("10.65.0.5", "10.70.0.", "198.51.100."):
        assert absent not in b.routes()
