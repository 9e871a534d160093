"""IP networks as the standard library's ipaddress gives them, for code that handles both versions."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def subnet_of(net: Network, other: Network) -> bool:
    """`net` lies inside `other`: never across IP versions (where ipaddress raises TypeError)."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return net.subnet_of(other)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return net.subnet_of(other)
    return False
