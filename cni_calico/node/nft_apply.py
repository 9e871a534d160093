"""Applies rendered policy to the kernel with `nft -f`: the side-effect half of nft_render.

The first apply after start replaces the whole table in one transaction (whatever an earlier
agent or a hand edit left); later ones send only the difference, also as one transaction. If a
difference is refused (the kernel no longer holds what we think it does), the whole table is
replaced instead.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Sequence

from .nft_ruleset import FAMILY, TABLE, Ruleset, full_script, update_script

log = logging.getLogger(__name__)


class NftError(RuntimeError):
    pass


class NftDataplane:
    def __init__(self, command: Sequence[str] = ("nft",)) -> None:
        self.command = list(command)  # how to run nft (tests run it inside a namespace)
        self.current: Ruleset | None = None  # what the kernel holds, as last applied

    def apply(self, ruleset: Ruleset) -> str:
        """Make the kernel hold `ruleset`: "full", "update" or "unchanged"."""
        if self.current is not None:
            script = update_script(self.current, ruleset)
            if not script:
                return "unchanged"
            try:
                self._run(script)
                self.current = ruleset
                return "update"
            except NftError as exc:
                log.warning("nft refused an incremental update (%s): replacing the whole table", exc)
        self.current = None
        self._run(full_script(ruleset))
        self.current = ruleset
        return "full"

    def remove(self) -> None:
        """Delete the project's table: the host is left as it was before the agent."""
        self._run(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
        self.current = None

    def _run(self, script: str) -> None:
        try:
            proc = subprocess.run([*self.command, "-f", "-"], input=script, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"cannot run {self.command[-1]}: {exc}") from None
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise NftError("; ".join(lines[:3]) or f"{self.command[-1]} exited with {proc.returncode}")
