"""`calicoctl node status`: BGP peers from BIRD's `show protocols`, printed the way Calico prints them.

Pure: the caller asks BIRD (birdctl) and says whether the agent runs. Calico names each BGP
protocol `<Kind>_<peer address with _ for . or :>`; other protocols are not peers. One BIRD 2
serves both address families, so one list of peers feeds both tables. The tables are Go
tablewriter's (`cni_calico.tables`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ...tables import render_table
from .bird_config import PROTOCOL_PREFIX
from .birdctl import Protocol

PEER_TYPES = {prefix: kind for kind, prefix in PROTOCOL_PREFIX.items()}  # "Mesh" -> "node-to-node mesh"
HEADERS = ("Peer address", "Peer type", "State", "Since", "Info")
_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}")


@dataclass(frozen=True)
class PeerStatus:
    address: str
    peer_type: str
    state: str  # BIRD's protocol state: up, start, down, ...
    since: str  # HH:MM:SS
    info: str  # BGP state and detail: Established, Active Socket: Connection refused, ...


def peers_from_protocols(protocols: list[Protocol]) -> list[PeerStatus]:
    peers = []
    for proto in protocols:
        if proto.proto != "BGP":
            continue
        match = _NAME.match(proto.name)
        if not match:
            continue
        address = _address(match.group(2))
        if address is None:  # not a name Calico gives a peer
            continue
        peers.append(PeerStatus(address=address, peer_type=PEER_TYPES[match.group(1)], state=proto.state,
                                since=_clock(proto.since), info=proto.info))
    return peers


def format_status(running: bool, peers: list[PeerStatus], reason: str = "") -> str:
    """The whole output of `calicoctl node status`.

    Not running: Calico's one line, then `reason` (why) on the next. Running with a `reason`:
    BIRD could not be asked, which Calico reports in place of each table.
    """
    if not running:
        return "Calico process is not running.\n" + (f"{reason}\n" if reason else "")
    out = ["Calico process is running.\n"]
    for version in (4, 6):
        out.append(f"\nIPv{version} BGP status\n")
        if reason:
            out.append(f"Error querying BIRD: {reason}\n")
            continue
        mine = [p for p in peers if ipaddress.ip_address(p.address).version == version]
        if mine:
            out.append(render_table(HEADERS, [(p.address, p.peer_type, p.state, p.since, p.info) for p in mine]))
        else:
            out.append(f"No IPv{version} peers found.\n")
    out.append("\n")
    return "".join(out)


def _address(encoded: str) -> str | None:
    """`192_0_2_2` -> 192.0.2.2, `fd80_24e2__2` -> fd80:24e2::2; None when it is neither."""
    for sep in (".", ":"):
        try:
            return str(ipaddress.ip_address(encoded.replace("_", sep)))
        except ValueError:
            continue
    return None


def _clock(since: str) -> str:
    """HH:MM:SS out of any of BIRD's time formats; a date alone (old BIRD formats) stays as it is."""
    match = _TIME.search(since)
    return match.group(0) if match else since
