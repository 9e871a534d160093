"""How the lab, the demo and the tests run our executables.

With CNI_CALICO_FROZEN=1 (what `make test` and `make bench` set after `make build`) they exec
the PyInstaller binaries in dist/, exactly what /opt/cni/bin gets; otherwise this Python with the
entry scripts in packaging/ (the same code, unfrozen).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
NAMES = ("calico", "calico-ipam", "calicoctl", "calico-node", "calico-kube-controllers")


def frozen() -> bool:
    return os.environ.get("CNI_CALICO_FROZEN") == "1"


def command(name: str) -> list[str]:
    if name not in NAMES:
        raise ValueError(f"not one of our executables: {name}")
    if frozen():
        binary = DIST / name
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} is missing: run `make build` (CNI_CALICO_FROZEN=1 asks for it)")
        return [str(binary)]
    return [sys.executable, str(REPO / "packaging" / f"{name}.py")]


def bin_dir(workdir: Path) -> Path:
    """A directory holding executables by their names, for CNI_PATH: links to the frozen binaries,
    or small wrappers around the entry scripts."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        target = workdir / name
        if target.exists() or target.is_symlink():
            target.unlink()
        if frozen():
            target.symlink_to(DIST / name)
        else:
            target.write_text(f"#!/bin/sh\nexec {' '.join(command(name))} \"$@\"\n")
            target.chmod(0o755)
    return workdir
