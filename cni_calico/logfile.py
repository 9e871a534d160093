"""A log file that many processes append to at once, rotated the way Calico's CNI plugin rotates
its own (lumberjack: a full file is renamed `<name>-<UTC time><ext>`, at most `max_count` of those
are kept, none older than `max_age_days`), and that follows a file moved away by logrotate.

Why not RotatingFileHandler: every CNI call is its own process, and that handler assumes it is
the only writer. Two processes finding the file full would both rename it (the second renaming
the new, nearly empty file over...), and each goes on writing into whatever inode it opened.
Here:

- every line is one write() on an O_APPEND descriptor: lines from different processes never
  interleave or overwrite each other;
- before each line the path is compared with the open descriptor (stat and fstat, as
  WatchedFileHandler does): a file renamed by another process or by logrotate is left for the
  new one at the path, so a process writes at most the line in flight into a rotated file;
- a full file is rotated under an exclusive flock on the full file itself. A process that waited
  for the lock finds the path holding another file and writes there: one rotation per full file.

The pure part (backup names, which backups to remove) is separate from the I/O.
"""

from __future__ import annotations

import logging
import os
import time

_STAMP_FORMAT = "%Y-%m-%dT%H-%M-%S"  # lumberjack's, plus microseconds: fixed width, sorts by time
_STAMP_LENGTH = len("2006-01-02T15-04-05.000000")
_DAY_MICROS = 86_400_000_000


# ------------------------------------------------------------------ names and retention (pure)

def stamp(micros: int) -> str:
    """A UTC time (microseconds since the epoch) as it appears in a backup's name."""
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime(_STAMP_FORMAT, time.gmtime(seconds)) + f".{fraction:06d}"


def backup_name(path: str, micros: int) -> str:
    """`/var/log/calico/cni/cni.log` rotated at `micros` -> `.../cni-2024-05-01T10-11-12.345678.log`."""
    root, ext = os.path.splitext(path)
    return f"{root}-{stamp(micros)}{ext}"


def backup_stamp(path: str, name: str) -> str | None:
    """The time stamp of a file name in the log's directory if it is one of the log's backups."""
    root, ext = os.path.splitext(os.path.basename(path))
    prefix = root + "-"
    if not (name.startswith(prefix) and name.endswith(ext)):
        return None
    middle = name[len(prefix):len(name) - len(ext)] if ext else name[len(prefix):]
    if len(middle) != _STAMP_LENGTH or middle[4] != "-" or middle[10] != "T" or middle[19] != ".":
        return None
    if not middle.replace("-", "").replace("T", "").replace(".", "").isdigit():
        return None
    return middle


def backups_to_remove(path: str, names: list[str], now_micros: int, max_age_days: int,
                      max_count: int) -> list[str]:
    """Of the names in the log's directory: the backups beyond the newest `max_count`, and those
    rotated more than `max_age_days` ago (0: no limit of that kind)."""
    backups = sorted(((s, n) for n in names if (s := backup_stamp(path, n)) is not None), reverse=True)
    cutoff = stamp(now_micros - max_age_days * _DAY_MICROS) if max_age_days else ""
    return [name for i, (when, name) in enumerate(backups)
            if (max_count and i >= max_count) or when < cutoff]


def _now_micros() -> int:
    return time.time_ns() // 1000


# ------------------------------------------------------------------ the handler

class SharedLogFile(logging.Handler):
    """Append each record as one line to `path`. With `max_bytes`, a file that a line would take
    past it is rotated first (a line longer than that still goes into an empty file); with 0 it
    is never rotated here, only followed when moved (calico-node: logrotate's job)."""

    def __init__(self, path: str, max_bytes: int = 0, max_age_days: int = 0, max_count: int = 0) -> None:
        super().__init__()
        self.path = os.path.abspath(path)
        self.max_bytes = max_bytes
        self.max_age_days = max_age_days
        self.max_count = max_count
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        self._fd: int | None = self._open()
        if max_bytes:
            self._remove_old_backups()  # as lumberjack does on opening: old ones go even if nothing rotates

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fd = self._open()

    def _moved(self) -> bool:
        """Whether the path no longer names the open file (renamed or removed)."""
        assert self._fd is not None
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return True
        mine = os.fstat(self._fd)
        return (at_path.st_ino, at_path.st_dev) != (mine.st_ino, mine.st_dev)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            self._write(line)
        except Exception:  # noqa: BLE001 (logging must never break the call: handleError reports it)
            self.handleError(record)

    def _write(self, line: bytes) -> None:
        # handle() holds self.lock: the threads of this process take turns here.
        if self._fd is None or self._moved():
            self._reopen()
        assert self._fd is not None
        if self.max_bytes:
            size = os.fstat(self._fd).st_size
            if size and size + len(line) > self.max_bytes:
                self._rotate(len(line))
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]

    def _rotate(self, incoming: int) -> None:
        import fcntl  # only on rotation: not every call pays for the import

        assert self._fd is not None
        rotated = False
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            # Whoever held the lock before may have rotated this very file: then the path holds
            # a new one, which is where this line goes.
            if not self._moved() and os.fstat(self._fd).st_size + incoming > self.max_bytes:
                os.rename(self.path, self._free_backup_name())
                rotated = True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._reopen()
        if rotated:
            self._remove_old_backups()

    def _free_backup_name(self) -> str:
        when = _now_micros()
        name = backup_name(self.path, when)
        while os.path.exists(name):  # two rotations in one microsecond: take the next one
            when += 1
            name = backup_name(self.path, when)
        return name

    def _remove_old_backups(self) -> None:
        directory = os.path.dirname(self.path)
        for name in backups_to_remove(self.path, os.listdir(directory), _now_micros(),
                                      self.max_age_days, self.max_count):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:  # another process removed it first
                pass

    def close(self) -> None:
        self.acquire()  # Handler's own lock, as handle() holds it
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            self.release()
        super().close()
