"""What a `CNI_NETNS` path is, asked of the kernel before any plugin acts on it (standard library only).

A runtime may hand over a path that is no network namespace (a leftover plain file, a directory,
a mount gone stale) or the plugin's own namespace (a mistake that, acted upon, would configure or
delete the host's own interfaces). Both are told apart from a real container namespace here.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextvars import ContextVar, Token
from enum import Enum

NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type (Linux 4.11+)
CLONE_NEWNET = 0x40000000
OWN_NAMESPACE = "/proc/self/ns/net"


class NetnsPath(Enum):
    MISSING = "missing"
    NOT_A_NETNS = "not a network namespace"
    OWN = "the plugin's own network namespace"
    CONTAINER = "a network namespace"


# (CNI_NETNS as the runtime gave it, where this process opens it instead) for the call in progress.
CALLER_OPENED: ContextVar[tuple[str, str] | None] = ContextVar("caller_opened_netns", default=None)


def caller_opened(path: str, fd: int) -> Token[tuple[str, str] | None]:
    """For the rest of this call (this thread and the work it hands on with its context), open
    CNI_NETNS `path` through `fd`, the caller's descriptor of it: calico-node serving a call may run
    in another mount namespace than the runtime, where the same path shows something else (a
    namespace mounted where mounts do not propagate is an empty file there). Returns the token
    to give `CALLER_OPENED.reset`."""
    return CALLER_OPENED.set((path, f"/proc/self/fd/{fd}"))


def resolve(path: str) -> str:
    """Where to open the namespace the runtime named `path`: the caller's descriptor of it when
    the call came with one, else the path itself."""
    opened = CALLER_OPENED.get()
    return opened[1] if opened is not None and path and opened[0] == path else path


def inspect(path: str) -> NetnsPath:
    """Classify `path` (as the caller sees it: see `resolve`); never raises for what a runtime
    might pass."""
    try:
        fd = os.open(resolve(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return NetnsPath.MISSING
    except OSError as exc:
        return NetnsPath.MISSING if exc.errno == errno.ENOTDIR else NetnsPath.NOT_A_NETNS
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:  # ENOTTY/EINVAL: a file, a directory, a device: not a namespace
            return NetnsPath.NOT_A_NETNS
        if kind != CLONE_NEWNET:
            return NetnsPath.NOT_A_NETNS
        here = os.stat(OWN_NAMESPACE)
        there = os.fstat(fd)
        return NetnsPath.OWN if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino) else NetnsPath.CONTAINER
    finally:
        os.close(fd)
