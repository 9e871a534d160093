"""A record of every request the stand-in served, for tests that prove how a client behaves
(that it reuses its connection, that it watches rather than polls)."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    user: str
    connection: int  # which TCP connection carried it (numbered from 1)
    watch: bool = False
    status: int = 0  # filled in when the answer is sent


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._connections = 0

    def new_connection(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections

    @property
    def connections(self) -> int:
        return self._connections

    def add(self, record: RequestRecord) -> RequestRecord:
        with self._lock:
            self._records.append(record)
        return record

    def records(self, path: str | None = None, method: str | None = None,
                watch: bool | None = None) -> list[RequestRecord]:
        with self._lock:
            return [rec for rec in self._records
                    if (path is None or rec.path == path) and (method is None or rec.method == method)
                    and (watch is None or rec.watch == watch)]

    def count(self, path: str | None = None, method: str | None = None, watch: bool | None = None) -> int:
        return len(self.records(path, method, watch))

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
