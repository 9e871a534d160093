"""Applies rendered policy to the kernel: the side-effect half of `render`.

Scripts go to nftables' library in-process (libnftables, see that module) or, where it cannot be
loaded or another nft program is configured, to `nft -f -`; both take the same scripts.

The first apply after start replaces the whole table in one transaction (whatever an earlier
agent or a hand edit left); later ones send only the difference, also as one transaction. If a
difference is refused (the kernel no longer holds what we think it does), the whole table is
replaced instead.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Protocol, Sequence

from .libnftables import LibraryUnavailable, NftError, NftLibrary, refusal
from .ruleset import FAMILY, TABLE, Ruleset, full_script, update_script

log = logging.getLogger(__name__)

__all__ = ["NftCommand", "NftDataplane", "NftError", "NftLibrary", "NftRunner", "default_runner"]


class NftRunner(Protocol):
    def run(self, script: str) -> None:
        """Apply one script as one transaction; NftError if it is refused."""


class NftCommand:
    """`<command> -f -`: the nft program (tests run it inside a namespace with `ip netns exec`)."""

    def __init__(self, command: Sequence[str] = ("nft",)) -> None:
        self.command = list(command)

    def run(self, script: str) -> None:
        try:
            proc = subprocess.run([*self.command, "-f", "-"], input=script, capture_output=True, text=True, timeout=60,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"cannot run {self.command[-1]}: {exc}") from None
        if proc.returncode != 0:
            raise refusal(proc.stderr, f"{self.command[-1]} exited with {proc.returncode}")

    def __repr__(self) -> str:
        return f"NftCommand({' '.join(self.command)})"


def default_runner(nft_binary: str = "") -> NftRunner:
    """The library unless an nft program is named (or the library cannot be loaded)."""
    if nft_binary:
        return NftCommand([nft_binary])
    try:
        return NftLibrary()
    except LibraryUnavailable as exc:
        log.warning("nftables library unavailable (%s): running the nft program instead", exc)
        return NftCommand(["nft"])


class NftDataplane:
    def __init__(self, runner: NftRunner) -> None:
        self.runner = runner
        self.current: Ruleset | None = None  # what the kernel holds, as last applied

    def apply(self, ruleset: Ruleset) -> str:
        """Make the kernel hold `ruleset`: "full", "update" or "unchanged"."""
        if self.current is not None:
            script = update_script(self.current, ruleset)
            if not script:
                return "unchanged"
            try:
                self.runner.run(script)
                self.current = ruleset
                return "update"
            except NftError as exc:
                log.warning("nft refused an incremental update (%s): replacing the whole table", exc)
        self.current = None
        self.runner.run(full_script(ruleset))
        self.current = ruleset
        return "full"

    def remove(self) -> None:
        """Delete the project's table: the host is left as it was before the agent."""
        self.runner.run(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
        self.current = None
