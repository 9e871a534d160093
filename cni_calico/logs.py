"""Logging for the CNI executables: stderr by default (stdout carries the result), or a file."""

from __future__ import annotations

import logging

_ALIASES = {"warn": "WARNING", "fatal": "CRITICAL", "panic": "CRITICAL"}
_FORMAT = "%(asctime)s [%(levelname)s] %(process)d %(name)s: %(message)s"
_handler: logging.Handler | None = None
_kept = False  # set in a serving process: per-call settings must not move its logs


def keep_process_logging() -> None:
    global _kept
    _kept = True


def configure(level: str = "warning", file_path: str | None = None) -> None:
    """Route this process's logs; calling it again replaces the previous destination."""
    global _handler
    if _kept:
        return
    root = logging.getLogger()
    root.setLevel(getattr(logging, _ALIASES.get(level.lower(), level.upper()), logging.WARNING))
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    try:
        _handler = logging.FileHandler(file_path) if file_path else logging.StreamHandler()
    except OSError:
        _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(_handler)
