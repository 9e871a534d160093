"""An explicit undo stack: each side effect registers its inverse; a failure unwinds in reverse."""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)


class UndoStack:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, description: str, undo: Callable[[], object]) -> None:
        self._steps.append((description, undo))

    def unwind(self) -> list[str]:
        """Run every undo, newest first; one failing does not stop the others. Returns what failed."""
        failed = []
        while self._steps:
            description, undo = self._steps.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 (logged and returned: the other undos still run)
                log.error("undo %s failed: %s", description, exc)
                failed.append(description)
        return failed

    def __len__(self) -> int:
        return len(self._steps)
