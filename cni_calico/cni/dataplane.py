"""The kernel side of an attachment, Calico's way (as Calico's `dataplane.Dataplane`): set up,
tear down, check. The plugin decides what happens and when; this does the netlink work.

Host side: a veth `cali...` with MAC ee:ee:ee:ee:ee:ee, proxy ARP, forwarding, route_localnet,
neigh proxy_delay 0 (IPv6: proxy_ndp, accept_ra 0) and a /32 (/128) route per address.
Container side: CNI_IFNAME with the /32 (/128) addresses, `169.254.1.1 dev eth0 scope link` and a
default route via it (IPv6: via fe80::ecee:eeff:feee:eeee, DAD off), ip_forward as configured.

`LinuxDataplane(host_netns)` acts in the host namespace at `host_netns`, or in the process's own
(None): calico-node's fast path and a standalone plugin use their own, in-process tests a
throwaway one. A `Wiring` holds the open sockets of one ADD or CHECK, on the calling thread.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

import netaddr

from .. import netns
from ..errors import CHECK_FAILED, DATAPLANE_FAILURE, CniError
from ..netns import LinkExists, Netns

log = logging.getLogger(__name__)

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"


def host_route(address: netaddr.IPNetwork) -> netaddr.IPNetwork:
    """The workload's address narrowed to a host route: /32 or /128."""
    return netaddr.IPNetwork(f"{address.ip}/{32 if address.version == 4 else 128}")


@dataclass(frozen=True)
class Pair:
    """A veth pair as created: the host end's index, the container end's index and MAC."""

    host_index: int
    container_index: int
    container_mac: str


class Wiring:
    """One attachment's veth pair, with the host's and the container's sockets open."""

    def __init__(self, host: Netns, container: Netns, host_ifname: str, ifname: str) -> None:
        self.host = host
        self.container = container
        self.host_ifname = host_ifname
        self.ifname = ifname

    def exists(self) -> bool:
        """Whether the container already has an interface of this name."""
        return self.container.link(self.ifname) is not None

    def container_mac(self) -> str:
        return _must(self.container.link(self.ifname), self.ifname).mac

    def create(self, mtu: int) -> Pair:
        """The pair, the host end up; a host end of the same name left by an attachment never
        deleted (the name is this workload's) is replaced."""
        try:
            self.host.create_veth(self.host_ifname, self.ifname, self.container, mtu, HOST_MAC)
        except LinkExists:
            self.host.delete_link(self.host_ifname)
            log.warning("replaced a stale host interface %s", self.host_ifname)
            self.host.create_veth(self.host_ifname, self.ifname, self.container, mtu, HOST_MAC)
        host_link = _must(self.host.link(self.host_ifname), self.host_ifname)
        container_link = _must(self.container.link(self.ifname), self.ifname)
        return Pair(host_link.index, container_link.index, container_link.mac)

    def remove(self) -> bool:
        """The pair, by its host end (which takes the container end and the routes with it)."""
        return self.host.delete_link(self.host_ifname)

    def remove_both_ends(self) -> None:
        self.container.delete_link(self.ifname)
        self.host.delete_link(self.host_ifname)

    def configure(self, pair: Pair, addresses: list[netaddr.IPNetwork], allow_ip_forwarding: bool) -> None:
        """Sysctls, addresses and routes on both sides (removed with the pair)."""
        self._configure_host_side(addresses)
        self._configure_container_side(pair.container_index, addresses, allow_ip_forwarding)
        for address in addresses:
            self.host.add_route(host_route(address), pair.host_index)

    def _configure_host_side(self, addresses: list[netaddr.IPNetwork]) -> None:
        name = self.host_ifname
        for key, value in (("proxy_arp", "1"), ("forwarding", "1"), ("route_localnet", "1")):
            self.host.write_sysctl(f"net/ipv4/conf/{name}/{key}", value)
        self.host.write_sysctl(f"net/ipv4/neigh/{name}/proxy_delay", "0")
        if any(a.version == 6 for a in addresses):
            for key, value in (("proxy_ndp", "1"), ("accept_ra", "0"), ("forwarding", "1")):
                self.host.write_sysctl(f"net/ipv6/conf/{name}/{key}", value)

    def _configure_container_side(self, index: int, addresses: list[netaddr.IPNetwork],
                                  allow_ip_forwarding: bool) -> None:
        container = self.container
        has_v6 = any(a.version == 6 for a in addresses)
        if has_v6:  # no duplicate address detection: the address would sit "tentative" for a second
            container.write_sysctl(f"net/ipv6/conf/{self.ifname}/accept_dad", "0")
        container.set_up(index)
        for address in addresses:
            container.add_address(index, host_route(address))
        if any(a.version == 4 for a in addresses):
            container.add_route(netaddr.IPNetwork(f"{GATEWAY_V4}/32"), index)
            container.add_route(netaddr.IPNetwork("0.0.0.0/0"), index, gateway=GATEWAY_V4)
        if has_v6:
            container.add_route(netaddr.IPNetwork("::/0"), index, gateway=GATEWAY_V6)
        container.write_sysctl("net/ipv4/ip_forward", "1" if allow_ip_forwarding else "0")

    def check(self, addresses: list[netaddr.IPNetwork]) -> None:
        """Both sides as ADD left them, or CniError 107 naming what is wrong."""
        self._check_container(addresses)
        self._check_host(addresses)

    def _check_container(self, addresses: list[netaddr.IPNetwork]) -> None:
        link = self.container.link(self.ifname)
        if link is None:
            raise CniError(CHECK_FAILED, f"interface {self.ifname} is missing from {self.container.label}")
        have = {str(a) for a in self.container.addresses(link.index)}
        for address in addresses:
            if str(host_route(address)) not in have:
                raise CniError(CHECK_FAILED, f"{self.ifname} lacks address {host_route(address)}",
                               f"it has {sorted(have) or 'none'}")
        for version, gateway in ((4, GATEWAY_V4), (6, GATEWAY_V6)):
            if any(a.version == version for a in addresses):
                default = "0.0.0.0/0" if version == 4 else "::/0"
                if (default, gateway) not in self.container.routes(link.index, version):
                    raise CniError(CHECK_FAILED, f"{self.ifname} lacks the default route via {gateway}")

    def _check_host(self, addresses: list[netaddr.IPNetwork]) -> None:
        link = self.host.link(self.host_ifname)
        if link is None:
            raise CniError(CHECK_FAILED, f"host interface {self.host_ifname} is missing")
        if not link.up:
            raise CniError(CHECK_FAILED, f"host interface {self.host_ifname} is down")
        for address in addresses:
            if (str(host_route(address)), None) not in self.host.routes(link.index, address.version):
                raise CniError(CHECK_FAILED, f"host route {host_route(address)} dev {self.host_ifname} is missing")


class LinuxDataplane:
    def __init__(self, host_netns: str | None = None) -> None:
        self.host_netns = host_netns

    @contextlib.contextmanager
    def host(self) -> Iterator[Netns]:
        if self.host_netns is None:
            with netns.host() as host:  # calico-node's workers keep theirs between calls
                yield host
        else:
            with Netns(self.host_netns) as host:
                yield host

    @contextlib.contextmanager
    def wiring(self, container_netns: str, host_ifname: str, ifname: str) -> Iterator[Wiring]:
        with self.host() as host, Netns(container_netns) as container:
            yield Wiring(host, container, host_ifname, ifname)

    def remove_container_end(self, container_netns: str, ifname: str) -> bool:
        """Delete `ifname` inside the container's namespace (the pair and the host route go with
        it); False when the namespace or the interface is gone. Safe on any thread."""
        if not netns.exists(container_netns):
            return False
        try:
            with Netns(container_netns) as container:
                return container.delete_link(ifname)
        except CniError as exc:  # it went away meanwhile: as good as gone
            log.info("container side %s in %s: %s", ifname, container_netns, exc.msg)
            return False

    def remove_host_end(self, host_ifname: str) -> bool:
        with self.host() as host:
            return host.delete_link(host_ifname)


def _must(link: netns.Link | None, name: str) -> netns.Link:
    if link is None:
        raise CniError(DATAPLANE_FAILURE, f"interface {name} vanished while being configured")
    return link
