"""A controller's queue of work: each item at most once while it waits, failures retried later.

Like client-go's workqueue, reduced to one worker per controller: an item added again while it
waits is not doubled, one added while it is being worked on is worked on again after. A waiting
FULL makes every other waiting item redundant: after a list of 10,000 objects, one full reconcile
rather than 10,000 single ones and then a full one. An item
that failed comes back after a backoff that grows with its failures; FULL stands for "reconcile
everything" and is what the periodic resync and a relist add.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Hashable

FULL = "<full reconcile>"
RETRY = (0.05, 30.0)  # first and longest wait before a failed item is tried again


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[Hashable, None] = {}  # insertion-ordered set
        self._later: list[tuple[float, int, Hashable]] = []  # (due, tiebreak, item)
        self._order = itertools.count()
        self._failures: dict[Hashable, int] = {}
        self._closed = False

    def add(self, item: Hashable) -> None:
        """Queue an item. A waiting FULL subsumes every other item (it reads everything when it
        runs), so they are dropped while it waits; an item added once FULL has started is kept."""
        with self._cond:
            if item == FULL:
                self._pending.clear()
            elif FULL in self._pending:
                return
            self._pending[item] = None
            self._cond.notify()

    def retry(self, item: Hashable) -> float:
        """Add the item again after a backoff for its consecutive failures; the wait."""
        with self._cond:
            failures = self._failures.get(item, 0) + 1
            self._failures[item] = failures
            first, longest = RETRY
            wait = min(longest, first * 2 ** (failures - 1))
            heapq.heappush(self._later, (time.monotonic() + wait, next(self._order), item))
            self._cond.notify()
            return float(wait)

    def forget(self, item: Hashable) -> None:
        """The item succeeded: its next failure starts the backoff over."""
        with self._cond:
            self._failures.pop(item, None)

    def get(self, timeout: float) -> Hashable | None:
        """The next item, or None after `timeout` seconds (or once closed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    item = heapq.heappop(self._later)[2]
                    if item == FULL:
                        self._pending.clear()
                    if item == FULL or FULL not in self._pending:
                        self._pending[item] = None
                if self._pending:
                    item = next(iter(self._pending))
                    del self._pending[item]
                    return item
                wake = min([deadline] + ([self._later[0][0]] if self._later else []))
                if now >= deadline:
                    return None
                self._cond.wait(wake - now)
            return None

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._later)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
