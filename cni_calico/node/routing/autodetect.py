"""Choose this node's BGP address from its interfaces (Calico's IP_AUTODETECTION_METHOD). Pure."""

from __future__ import annotations

import re
from typing import Sequence

import netaddr

# Interfaces Calico's first-found never picks: loopback, workload and tunnel devices, bridges of
# container engines.
EXCLUDED = re.compile(r"^(lo|cali.*|tunl.*|vxlan.*|docker.*|cni.*|flannel.*|veth.*|virbr.*|kube-ipvs.*|wg.*)$")


class AutodetectError(ValueError):
    pass


def choose(method: str, interfaces: Sequence[tuple[str, netaddr.IPNetwork]]) -> netaddr.IPNetwork:
    """`first-found`, `interface=<regex>[,<regex>]`, `skip-interface=<regex>`, `cidr=<cidr>[,...]`."""
    kind, _, arg = method.partition("=")
    candidates = [(name, net) for name, net in interfaces if not net.ip.is_loopback()]
    if kind == "first-found":
        picked = [(n, a) for n, a in candidates if not EXCLUDED.match(n)]
    elif kind == "interface":
        patterns = [re.compile(p) for p in arg.split(",") if p]
        picked = [(n, a) for n, a in candidates if any(p.fullmatch(n) for p in patterns)]
    elif kind == "skip-interface":
        patterns = [re.compile(p) for p in arg.split(",") if p]
        picked = [(n, a) for n, a in candidates if not EXCLUDED.match(n) and not any(p.fullmatch(n) for p in patterns)]
    elif kind == "cidr":
        try:
            nets = [netaddr.IPNetwork(c) for c in arg.split(",") if c]
        except (netaddr.AddrFormatError, ValueError) as exc:
            raise AutodetectError(f"IP_AUTODETECTION_METHOD: bad CIDR in {method!r}") from exc
        picked = [(n, a) for n, a in candidates if any(a.ip in net for net in nets)]
    else:
        raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: expected first-found, interface=, "
                              "skip-interface= or cidr=")
    if not picked:
        raise AutodetectError(f"no interface address matches IP_AUTODETECTION_METHOD={method}")
    return picked[0][1]
