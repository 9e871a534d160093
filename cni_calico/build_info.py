"""Which source this program was built from, for `calicoctl version`: the git commit and the build
date. `make build` writes both into `_build.py` before freezing; run from a source tree, the
commit is asked of git and the build date is unknown."""

from __future__ import annotations

import subprocess
from pathlib import Path

UNKNOWN = "unknown"


def build_info() -> tuple[str, str]:
    """(git commit, build date)."""
    try:
        from ._build import BUILD_DATE, GIT_COMMIT
    except ImportError:
        return _source_commit(), UNKNOWN
    return GIT_COMMIT, BUILD_DATE


def _source_commit() -> str:
    tree = Path(__file__).resolve().parent.parent
    if not (tree / ".git").exists():
        return UNKNOWN
    try:
        found = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else UNKNOWN
