"""File locks on one host: IPAM's (as Calico's /var/run/calico/ipam.lock) and an attachment's.

Concurrent ADDs on a host nearly always pick the same block; taking turns on IPAM's lock avoids
most compare-and-swap conflicts, and correctness never depends on it: every write is still a CAS.
An attachment's lock makes the calls for one workload take turns (a runtime's retried ADD beside
the first, a new sandbox's ADD beside the old one's DEL), as they would act on one veth. flock
locks belong to an open file, so threads of one process (calico-node's fast path) take turns too.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import zlib
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
        log.warning("cannot open the lock %s (%s); continuing without it", path, exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


ATTACHMENT_LOCK_BUCKETS = 64


def attachment_lock_path(directory: str, name: str) -> str:
    """One of a fixed set of lock files for an attachment's name (its host veth): calls for one
    workload take turns, calls for others almost never wait, and the files do not pile up."""
    bucket = zlib.crc32(name.encode()) % ATTACHMENT_LOCK_BUCKETS
    return os.path.join(directory, f"cni-attachment-{bucket:02d}.lock")
