"""Periodic etcd compaction, as Calico's kube-controllers run it in etcd mode (COMPACTION_PERIOD,
10 min by default, 0 off): every period, compact up to the revision seen one period earlier, so
watchers always have at least a period of history to resume from."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)


class Compactable(Protocol):
    def snapshot(self, prefix: str) -> tuple[list[object], int]: ...

    def compact(self, revision: int) -> None: ...


class Compactor:
    def __init__(self, ds: Compactable, period: float) -> None:
        self.ds = ds
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-compaction", daemon=True)

    def start(self) -> Compactor:
        if self.period > 0:
            self._thread.start()
        else:
            log.info("etcd compaction is off (COMPACTION_PERIOD=0)")
        return self

    def _run(self) -> None:
        previous: int | None = None
        while True:
            try:
                _, current = self.ds.snapshot("/calico/kube-controllers/")  # any small range: for the revision
                if previous is not None and previous > 1:
                    self.ds.compact(previous)
                    log.info("etcd compacted up to revision %d", previous)
                previous = current
            except Exception as exc:  # noqa: BLE001 (logged, retried): compacted already, or etcd away: next period
                log.warning("etcd compaction: %s", exc)
            if self._stop.wait(self.period):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
