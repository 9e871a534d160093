"""Render BIRD 2's whole configuration for one node: a pure function of what etcd holds.

The agent builds a `BirdInput` from its cache of etcd and writes `render(...)` to the config
file; BIRD is reloaded only when the text changes, so the output must be deterministic
(sorted, no timestamps).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PEER_MESH = "node-to-node mesh"
PEER_GLOBAL = "global"
PEER_NODE = "node specific"

# BGP protocol name prefix per peer kind: `calicoctl node status` reads PEER TYPE and the
# peer address back from these names (Mesh_192_0_2_2 -> node-to-node mesh, 192.0.2.2).
PROTOCOL_PREFIX = {PEER_MESH: "Mesh", PEER_GLOBAL: "Global", PEER_NODE: "Node"}

# When one address is listed under several kinds, only the first of this order gets a session
# (two BIRD protocols towards one neighbour from one source address cannot both be up).
# Calico's v1 templates render every kind independently; we keep the mesh session (its AS comes
# from the other node's own record) and prefer a node-specific BGPPeer to a global one.
PEER_PRECEDENCE = (PEER_MESH, PEER_NODE, PEER_GLOBAL)

# Short BGP timers (seconds): a session reaches Established about 1 s after BIRD starts or
# reconfigures instead of about 4-5 s with BIRD's defaults (connect delay 5, retry 120, error
# wait 60..300). Mesh graceful restart time as in Calico.
CONNECT_DELAY_TIME = 1
CONNECT_RETRY_TIME = 2
ERROR_WAIT_TIME = (1, 5)
MESH_GRACEFUL_RESTART_TIME = 120
SCAN_TIME = 2  # kernel and device scans


@dataclass(frozen=True)
class Peer:
    """One BGP session: a mesh peer (another node) or an explicit BGPPeer resource."""

    ip: str  # the neighbour's IPv4 address
    as_number: int
    kind: str  # PEER_MESH, PEER_GLOBAL or PEER_NODE
    name: str = ""  # the other node's name (mesh) or the BGPPeer resource's name


@dataclass(frozen=True)
class Pool:
    cidr: str
    ipip: bool = False  # ipipMode Always (or CrossSubnet): learned routes go via tunl0
    disable_bgp_export: bool = False


@dataclass(frozen=True)
class BirdInput:
    node_name: str
    router_id: str  # this node's BGP IPv4 address; also the source address of every session
    as_number: int
    peers: tuple[Peer, ...] = ()
    pools: tuple[Pool, ...] = ()
    blocks: tuple[str, ...] = ()  # CIDRs of this node's confirmed affine blocks: one blackhole each
    log_file: str = ""  # empty: log to stderr
    tunnel_device: str = "tunl0"


_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def _comment(text: str) -> str:
    """Free text (node and resource names) made safe for a one-line `#` comment."""
    return re.sub(r"[^\x20-\x7e]", "?", text)


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IPv4 address") from None


def _ipv4_net(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IPv4 CIDR") from None


def _net_key(net: ipaddress.IPv4Network) -> tuple[int, int]:
    return int(net.network_address), net.prefixlen


def _underscored(ip: ipaddress.IPv4Address) -> str:
    return str(ip).replace(".", "_")


def protocol_name(peer: Peer) -> str:
    """The BIRD protocol name of a session: `Mesh_192_0_2_2`, `Global_...`, `Node_...`."""
    return f"{PROTOCOL_PREFIX[peer.kind]}_{_underscored(_ipv4(peer.ip, 'peer'))}"


def select_peers(inp: BirdInput) -> list[Peer]:
    """The sessions to configure: IPv4 only, never ourselves, one per address, sorted by address."""
    me = _ipv4(inp.router_id, "router id")
    chosen: dict[ipaddress.IPv4Address, Peer] = {}
    for kind in PEER_PRECEDENCE:
        # Within a kind, a duplicate address keeps the lowest (AS, name): independent of input order.
        for peer in sorted(inp.peers, key=lambda p: (p.as_number, p.name)):
            if peer.kind not in PROTOCOL_PREFIX:
                raise ValueError(f"peer {peer.ip}: unknown kind {peer.kind!r}")
            if peer.kind != kind or ":" in peer.ip:
                continue
            ip = _ipv4(peer.ip, f"{kind} peer {peer.name!r}")
            if ip == me or ip in chosen:
                continue
            if not 0 < peer.as_number < 2**32:
                raise ValueError(f"peer {ip}: invalid AS number {peer.as_number}")
            chosen[ip] = Peer(str(ip), peer.as_number, peer.kind, peer.name)
    return [chosen[ip] for ip in sorted(chosen)]


def _pools(inp: BirdInput) -> list[tuple[ipaddress.IPv4Network, Pool]]:
    """IPv4 pools sorted by CIDR; two entries for one CIDR merge (IPIP or no-export if either is)."""
    out: dict[ipaddress.IPv4Network, Pool] = {}
    for pool in inp.pools:
        if ":" in pool.cidr:
            continue
        net = _ipv4_net(pool.cidr, "pool")
        seen = out.get(net, Pool(str(net)))
        out[net] = Pool(str(net), ipip=seen.ipip or pool.ipip,
                        disable_bgp_export=seen.disable_bgp_export or pool.disable_bgp_export)
    return sorted(out.items(), key=lambda item: _net_key(item[0]))


def _blocks(inp: BirdInput) -> list[ipaddress.IPv4Network]:
    nets = {_ipv4_net(b, "block") for b in inp.blocks if ":" not in b}
    return sorted(nets, key=_net_key)


GRACEFUL_RESTART_WAIT = 20  # seconds


def _header(inp: BirdInput) -> list[str]:
    log = "log stderr all;"
    if inp.log_file:
        if any(c in inp.log_file for c in '"\\\n\r'):
            raise ValueError(f"log file {inp.log_file!r}: quotes, backslashes and newlines are not allowed")
        log = f'log "{inp.log_file}" all;'
    return [
        f"# BIRD 2 configuration for node {_comment(inp.node_name)}, generated by cni-calico (calico-node).",
        "# Do not edit: rewritten from the datastore, and BIRD reconfigured, whenever it changes.",
        "",
        f"router id {_ipv4(inp.router_id, 'router id')};",
        log,
        "# After a graceful stop (-R) the kernel keeps the old routes until the sessions are back;",
        "# a peer that never returns must not hold that up for BIRD's default of 240 s.",
        f"graceful restart wait {GRACEFUL_RESTART_WAIT};",
        "",
    ]


def _export_filter(pools: list[tuple[ipaddress.IPv4Network, Pool]],
                   blocks: list[ipaddress.IPv4Network]) -> list[str]:
    out = [
        "# What this node announces: its own blocks as aggregates (never the workload /32s beneath",
        "# them) and other routes inside pools that allow BGP export; nothing else.",
        "filter calico_export_to_bgp_peers {",
    ]
    for net, pool in pools:
        if pool.disable_bgp_export:
            out.append(f"  if net ~ {net} then reject;  # pool {net}: BGP export disabled")
    for net in blocks:
        out.append(f"  if net = {net} then accept;  # block {net} of this node")
        out.append(f"  if net ~ {net} then reject;")
    for net, pool in pools:
        if not pool.disable_bgp_export:
            out.append(f"  if net ~ {net} then accept;  # pool {net}")
    out += ["  reject;", "}", ""]
    return out


def _kernel_filter(pools: list[tuple[ipaddress.IPv4Network, Pool]], tunnel_device: str) -> list[str]:
    out = [
        "# What BIRD programs into the kernel. A route learned from a peer for an IPIP pool leaves",
        f'# through the tunnel: "via <peer> dev {tunnel_device} onlink" (Debian\'s BIRD 2 has no',
        "# krt_tunnel: onlink, then ifname, then gw build the same next hop). Our own blocks come",
        "# from protocol static as blackholes and stay blackholes. Interface routes (protocol",
        "# direct) are the kernel's own already: BIRD 2 would add a second copy, so they stay out.",
        "# Everything else is unchanged.",
        "filter calico_kernel_programming {",
        "  if source = RTS_DEVICE then reject;",
    ]
    for net, pool in pools:
        if pool.ipip:
            out += [
                f"  if net ~ {net} then {{  # IPIP pool {net}",
                "    if source = RTS_BGP then {",
                "      onlink = true;",
                f'      ifname = "{tunnel_device}";',
                "      gw = bgp_next_hop;",
                "    }",
                "    accept;",
                "  }",
            ]
    out += ["  accept;", "}", ""]
    return out


def _protocols(blocks: list[ipaddress.IPv4Network]) -> list[str]:
    out = [
        "# Interfaces coming and going.",
        "protocol device {",
        f"  scan time {SCAN_TIME};",
        "}",
        "",
        "# Addresses of the host's interfaces (workload veths cali* and kube-ipvs* excluded).",
        "protocol direct {",
        "  ipv4;",
        '  interface -"cali*", -"kube-ipvs*", "*";',
        "}",
        "",
        "# The kernel table: learn the workload routes, program the routes learned from peers, keep",
        "# them when BIRD stops (persist) so a restart does not cut traffic.",
        "protocol kernel {",
        "  ipv4 {",
        "    import all;",
        "    export filter calico_kernel_programming;",
        "  };",
        "  learn;",
        "  persist;",
        "  merge paths on;",
        "  graceful restart;",
        f"  scan time {SCAN_TIME};",
        "}",
        "",
        "# One blackhole per block affine to this node: the aggregate announced to peers; the",
        "# workload /32s inside it are more specific and win locally.",
        "protocol static calico_blocks {",
        "  ipv4;",
    ]
    out += [f"  route {net} blackhole;" for net in blocks] or ["  # no blocks for this node"]
    out += ["}", ""]
    return out


def _bgp_template(inp: BirdInput) -> list[str]:
    if not 0 < inp.as_number < 2**32:
        raise ValueError(f"invalid AS number {inp.as_number}")
    wait_min, wait_max = ERROR_WAIT_TIME
    return [
        "# Every session: sourced from this node's address, multihop like Calico (so eBGP peers",
        "# need not be on a shared link), next hops resolved recursively through the direct routes.",
        "template bgp bgp_template {",
        '  description "Connection to BGP peer";',
        "  debug { states };",
        f"  local {_ipv4(inp.router_id, 'router id')} as {inp.as_number};",
        "  multihop;",
        "  graceful restart on;",
        f"  connect delay time {CONNECT_DELAY_TIME};",
        f"  connect retry time {CONNECT_RETRY_TIME};",
        f"  error wait time {wait_min}, {wait_max};",
        "  ipv4 {",
        "    import all;",
        "    export filter calico_export_to_bgp_peers;",
        "    next hop self;",
        "    gateway recursive;",
        "    add paths on;",
        "  };",
        "}",
        "",
    ]


def _sessions(inp: BirdInput, peers: list[Peer]) -> list[str]:
    me = _ipv4(inp.router_id, "router id")
    titles = {PEER_MESH: "Node-to-node mesh", PEER_GLOBAL: "Global peers", PEER_NODE: "Node-specific peers"}
    out: list[str] = []
    for kind in (PEER_MESH, PEER_GLOBAL, PEER_NODE):
        out.append(f"# ------------- {titles[kind]} -------------")
        of_kind = [p for p in peers if p.kind == kind]
        if not of_kind:
            out += [f"# No {kind} peers.", ""]
        for peer in of_kind:
            ip = ipaddress.IPv4Address(peer.ip)
            label = f" {_comment(peer.name)}" if peer.name else ""
            out.append(f"# {kind} peer{label} ({ip})")
            out.append(f"protocol bgp {protocol_name(peer)} from bgp_template {{")
            out.append(f"  neighbor {ip} as {peer.as_number};")
            if kind == PEER_MESH:
                # Unidirectional mesh, as Calico: only the higher address connects, so a graceful
                # restart is not aborted by the other side's connection. Calico compares the address
                # strings; we compare numerically (10.0.0.10 > 10.0.0.9). Either is a total order, so
                # the two ends of a session agree as long as every node renders with this module.
                if ip > me:
                    out.append("  passive on;  # mesh sessions are opened by the higher address: "
                               "the peer connects to us")
                out.append(f"  graceful restart time {MESH_GRACEFUL_RESTART_TIME};")
            out += ["}", ""]
    return out


def render(inp: BirdInput) -> str:
    """The whole BIRD 2 configuration of node `inp.node_name`; the same input gives the same text.

    IPv4 only: pools, blocks and peers with an IPv6 address are ignored. Raises ValueError on an
    address, CIDR, AS number, log file or device name that would not make a valid configuration.
    """
    if not _IFNAME_RE.match(inp.tunnel_device):
        raise ValueError(f"tunnel device {inp.tunnel_device!r} is not a valid interface name")
    pools = _pools(inp)
    blocks = _blocks(inp)
    lines = (_header(inp) + _export_filter(pools, blocks) + _kernel_filter(pools, inp.tunnel_device)
             + _protocols(blocks) + _bgp_template(inp) + _sessions(inp, select_peers(inp)))
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
