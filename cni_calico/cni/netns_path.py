"""What a `CNI_NETNS` path is, asked of the kernel before any plugin acts on it (standard library only).

A runtime may hand over a path that is no network namespace (a leftover plain file, a directory,
a mount gone stale) or the plugin's own namespace (a mistake that, acted upon, would configure or
delete the host's own interfaces). Both are told apart from a real container namespace here.
"""

from __future__ import annotations

import errno
import fcntl
import os
from enum import Enum

NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type (Linux 4.11+)
CLONE_NEWNET = 0x40000000
OWN_NAMESPACE = "/proc/self/ns/net"


class NetnsPath(Enum):
    MISSING = "missing"
    NOT_A_NETNS = "not a network namespace"
    OWN = "the plugin's own network namespace"
    CONTAINER = "a network namespace"


def inspect(path: str) -> NetnsPath:
    """Classify `path`; never raises for what a runtime might pass."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
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
