"""Serialise IPAM on one host with a file lock, as Calico does (/var/run/calico/ipam.lock).

Concurrent ADDs on a host nearly always pick the same block; taking turns avoids most
compare-and-swap conflicts. Correctness never depends on it: every write is still a CAS.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from typing import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def host_lock(path: str) -> Iterator[None]:
    if not path:
        yield
        return
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # no lock is slower under contention, never wrong
        log.warning("cannot open IPAM lock %s (%s); continuing without it", path, exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
