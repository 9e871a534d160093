"""`calicoctl node status`: BGP peers from BIRD's `show protocols`, printed the way Calico prints them.

Pure: the caller asks BIRD (birdctl) and says whether the agent runs. Calico names each BGP
protocol `<Kind>_<peer address with _ for . or :>`; other protocols are not peers. One BIRD 2
serves both address families, so one list of peers feeds both tables. The table layout is that of
the Go tablewriter Calico uses: headers upper-cased and centred, cells left-aligned, a column as
wide as its widest cell but wrapping text past 30 characters at word boundaries.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .bird_config import PROTOCOL_PREFIX
from .birdctl import Protocol

PEER_TYPES = {prefix: kind for kind, prefix in PROTOCOL_PREFIX.items()}  # "Mesh" -> "node-to-node mesh"
HEADERS = ("Peer address", "Peer type", "State", "Since", "Info")
MAX_WIDTH = 30  # tablewriter's default: longer cells wrap
TOO_LONG_PENALTY = 100_000  # tablewriter's cost of a line over the limit
_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}")
_NUMBER = re.compile(r"^-*\d*\.?\d*$")  # tablewriter right-aligns cells that look numeric


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


def render_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A bordered table, as tablewriter draws it with its defaults."""
    widths = [min(len(h), MAX_WIDTH) for h in headers]
    cells: list[list[list[str]]] = []  # row -> column -> wrapped lines
    for row in rows:
        wrapped = []
        for col, text in enumerate(row):
            # Same order as tablewriter: the width grows to the (capped) cell, the cell wraps at the
            # width reached so far, then the width grows to a word too long to break.
            widths[col] = max(widths[col], min(len(text), MAX_WIDTH))
            lines = _wrap(text, widths[col])
            widths[col] = max(widths[col], *(len(line) for line in lines))
            wrapped.append(lines)
        cells.append(wrapped)

    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    out = [rule, "|" + "|".join(f" {_centre(h.upper(), w)} " for h, w in zip(headers, widths)) + "|\n", rule]
    for wrapped in cells:
        height = max(len(lines) for lines in wrapped)
        for i in range(height):
            parts = []
            for lines, w in zip(wrapped, widths):
                text = lines[i] if i < len(lines) else ""
                parts.append(f" {text.rjust(w) if _NUMBER.match(text) else text.ljust(w)} ")
            out.append("|" + "|".join(parts) + "|\n")
    out.append(rule)
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


def _centre(text: str, width: int) -> str:
    gap = width - len(text)
    left = gap // 2 if gap > 0 else 0
    return " " * left + text + " " * max(gap - left, 0)


def _wrap(text: str, limit: int) -> list[str]:
    """Break at spaces into lines of at most `limit`, with minimal raggedness (tablewriter's WrapWords)."""
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(len(w) for w in words)])
    n = len(words)
    # length[i][j]: words i..j on one line
    length = [[0] * n for _ in range(n)]
    for i in range(n):
        length[i][i] = len(words[i])
        for j in range(i + 1, n):
            length[i][j] = length[i][j - 1] + 1 + len(words[j])
    cost = [0] * n
    breaks = [n] * n
    for i in range(n - 1, -1, -1):
        if length[i][n - 1] <= limit:
            continue  # the rest fits on one line: free
        cost[i] = 2**31 - 1
        for j in range(i + 1, n):
            gap = limit - length[i][j - 1]
            c = gap * gap + cost[j] + (TOO_LONG_PENALTY if length[i][j - 1] > limit else 0)
            if c < cost[i]:
                cost[i], breaks[i] = c, j
    lines, i = [], 0
    while i < n:
        lines.append(" ".join(words[i:breaks[i]]))
        i = breaks[i]
    return lines
