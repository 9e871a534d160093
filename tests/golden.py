"""Golden files: a rendered text must equal its file under tests/golden/. After an intended change,
regenerate them with `UPDATE_GOLDEN=1 .venv/bin/pytest <test file>` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def assert_matches_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()
