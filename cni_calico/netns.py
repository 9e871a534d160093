"""Netlink in named network namespaces: the only importer of pyroute2.

A `Netns` holds one netlink socket bound to one namespace. The socket is opened by
switching the calling *thread* into the namespace and straight back (setns), which avoids
pyroute2's forked helper per namespace; nothing else ever runs in a switched thread but
the socket creation and sysctl file access, so no namespace leaks into other code.
`Netns(None)` is the namespace the process runs in: the simulated host under
`ip netns exec`, or the real host under a runtime; `host()` lends one, which calico-node's CNI
workers keep for their next call instead of opening a new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import netaddr

from .cni.netns_path import resolve
from .errors import DATAPLANE_FAILURE, INVALID_ENVIRONMENT, UNKNOWN_CONTAINER, CniError

CLONE_NEWNET = 0x40000000
SCOPE_LINK = 253
RTPROT_BOOT = 3  # what `ip route add` uses: the route prints without a "proto" word, like Calico's
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(path: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside the namespace at `path` (None: stay)."""
    if path is None:
        yield
        return
    try:
        target = os.open(resolve(path), os.O_RDONLY | os.O_CLOEXEC)  # a served call: as its caller sees it
    except OSError as exc:
        raise CniError(UNKNOWN_CONTAINER, f"network namespace {path} does not exist", str(exc)) from None
    origin = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(target)
        except OSError as exc:  # EINVAL: the path is no network namespace
            raise CniError(INVALID_ENVIRONMENT, f"{path} is not a network namespace", str(exc)) from None
        try:
            yield
        finally:
            _setns(origin)
    finally:
        os.close(target)
        os.close(origin)


def exists(path: str) -> bool:
    return bool(path) and os.path.exists(resolve(path))


class LinkExists(CniError):
    """The interface name is taken."""


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    mtu: int
    up: bool
    kind: str | None


class Netns:
    """A netlink socket in one namespace, with the operations the plugin needs."""

    def __init__(self, path: str | None) -> None:
        from pyroute2 import IPRoute  # heavy: only when the dataplane is really touched

        self.path = path
        with entered(path):
            self.ipr = IPRoute()
            self._fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        self.ipr.close()
        os.close(self._fd)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def label(self) -> str:
        return self.path or "host namespace"

    # ------------------------------------------------------------ links

    def link(self, name: str) -> Link | None:
        try:  # one RTM_GETLINK by name: a lookup first would dump every link on the host
            msg = self.ipr.link("get", ifname=name)[0]
        except Exception as exc:
            if getattr(exc, "code", None) == errno.ENODEV:
                return None
            raise CniError(DATAPLANE_FAILURE, f"cannot look up {name} in {self.label}: {exc}") from exc
        info = msg.get_attr("IFLA_LINKINFO")
        return Link(index=msg["index"], name=name, mac=msg.get_attr("IFLA_ADDRESS") or "",
                    mtu=msg.get_attr("IFLA_MTU") or 0, up=bool(msg["flags"] & 1),
                    kind=info.get_attr("IFLA_INFO_KIND") if info else None)

    def create_veth(self, name: str, peer: str, peer_ns: Netns, mtu: int, mac: str) -> None:
        """A veth pair: `name` here with `mac`, and up; `peer` created directly inside `peer_ns`
        (still down). LinkExists when `name` is taken here."""
        try:
            self.ipr.link("add", ifname=name, kind="veth", address=mac, mtu=mtu, state="up",
                          peer={"ifname": peer, "net_ns_fd": peer_ns._fd, "mtu": mtu})
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                raise LinkExists(DATAPLANE_FAILURE, f"{name} already exists in {self.label}") from exc
            raise CniError(DATAPLANE_FAILURE, f"create veth {name} in {self.label}: {exc}") from exc

    def set_up(self, index: int) -> None:
        self._netlink("set link up", self.ipr.link, "set", index=index, state="up")

    def delete_link(self, name: str) -> bool:
        """Delete a link if present (a veth takes its peer and routes with it); True if it existed."""
        link = self.link(name)
        if link is None:
            return False
        try:
            self.ipr.link("del", index=link.index)
        except Exception as exc:  # raced with another delete: gone is what we wanted
            if getattr(exc, "code", None) != errno.ENODEV:
                raise CniError(DATAPLANE_FAILURE, f"cannot delete {name} in {self.label}: {exc}") from exc
        return True

    # ------------------------------------------------------------ addresses and routes

    def add_address(self, index: int, address: netaddr.IPNetwork) -> None:
        self._netlink(f"add address {address}", self.ipr.addr, "add", index=index, address=str(address.ip),
                      prefixlen=address.prefixlen)

    def addresses(self, index: int) -> list[netaddr.IPNetwork]:
        out = []
        for msg in self.ipr.get_addr(index=index):
            address = msg.get_attr("IFA_ADDRESS")
            if address and not netaddr.IPAddress(address).is_link_local():
                out.append(netaddr.IPNetwork(f"{address}/{msg['prefixlen']}"))
        return out

    def interface_addresses(self, version: int) -> list[tuple[str, netaddr.IPNetwork]]:
        """(interface name, address) of every non-link-local address of one family, in link order."""
        names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in self.ipr.get_links()}
        found = []
        for msg in self.ipr.get_addr(family=2 if version == 4 else 10):
            address = msg.get_attr("IFA_ADDRESS")
            if address and not netaddr.IPAddress(address).is_link_local():
                found.append((msg["index"], names.get(msg["index"], "?"),
                              netaddr.IPNetwork(f"{address}/{msg['prefixlen']}")))
        return [(name, address) for _, name, address in sorted(found, key=lambda item: item[0])]

    def ensure_ipip_tunnel(self, name: str, address: netaddr.IPAddress, mtu: int = 1440) -> Link:
        """tunl0 up with `address`/32 (the kernel creates tunl0 with the ipip module; add it if absent)."""
        link = self.link(name)
        if link is None:
            self._netlink(f"create ipip tunnel {name} (does this kernel have ipip?)", self.ipr.link, "add",
                          ifname=name, kind="ipip")
            link = self.link(name)
            assert link is not None
        if str(address) not in {str(a.ip) for a in self.addresses(link.index)}:
            for old in self.addresses(link.index):  # one tunnel address: a changed one replaces the old
                self._netlink(f"remove {old} from {name}", self.ipr.addr, "del", index=link.index,
                              address=str(old.ip), prefixlen=old.prefixlen)
            self.add_address(link.index, netaddr.IPNetwork(f"{address}/32"))
        self._netlink(f"set {name} up", self.ipr.link, "set", index=link.index, state="up", mtu=mtu)
        return link

    def add_route(self, dst: netaddr.IPNetwork, index: int, gateway: str | None = None) -> None:
        """`dst dev <index> scope link`, or `dst via gateway dev <index>`."""
        kwargs: dict[str, Any] = {"dst": str(dst.cidr), "oif": index, "proto": RTPROT_BOOT}
        if gateway:
            kwargs["gateway"] = gateway
        else:
            kwargs["scope"] = SCOPE_LINK
        self._netlink(f"add route {dst}", self.ipr.route, "add", family=2 if dst.version == 4 else 10, **kwargs)

    def routes(self, index: int, version: int) -> list[tuple[str, str | None]]:
        """(destination CIDR, gateway) of the routes through a link."""
        out = []
        for msg in self.ipr.get_routes(family=2 if version == 4 else 10, oif=index):
            if msg.get_attr("RTA_TABLE") not in (None, 254):
                continue
            dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
            out.append((f"{dst}/{msg['dst_len']}", msg.get_attr("RTA_GATEWAY")))
        return out

    # ------------------------------------------------------------ sysctls

    def write_sysctl(self, key: str, value: str) -> None:
        """`key` like `net/ipv4/conf/cali1/proxy_arp`, written as seen from this namespace."""
        with entered(self.path):
            try:
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write(value)
            except OSError as exc:
                raise CniError(DATAPLANE_FAILURE, f"cannot set sysctl {key}={value} in {self.label}: {exc}") from exc

    # ------------------------------------------------------------ helpers

    def _netlink(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except CniError:
            raise
        except Exception as exc:
            raise CniError(DATAPLANE_FAILURE, f"{what} in {self.label}: {exc}") from exc


# pyroute2 keeps a socket and an event loop per thread that uses an IPRoute (thread-local), so a
# socket can only be kept for reuse by the thread that made it: calico-node's CNI workers, which
# serve call after call, keep one each. Any other thread gets a fresh one, closed after use.
_kept = threading.local()


def keep_host_socket() -> None:
    """The calling thread keeps its host() socket between uses (a long-lived worker only)."""
    _kept.enabled = True


@contextlib.contextmanager
def host() -> Iterator[Netns]:
    """A socket in the process's own namespace for the body. A keeping thread gets its kept one
    again after a body that succeeded; after a failure it may hold half a conversation, so it is
    closed. Opening and closing one costs about 0.6 ms of CPU."""
    keep = getattr(_kept, "enabled", False)
    ns = (getattr(_kept, "ns", None) if keep else None) or Netns(None)
    _kept.ns = None
    try:
        yield ns
    except BaseException:
        ns.close()
        raise
    if keep:
        _kept.ns = ns
    else:
        ns.close()
