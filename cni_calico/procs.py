"""Process facts read from /proc (no signals sent here)."""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """Alive and not a zombie: a dead process its parent has not reaped yet is gone for us."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def command_line(pid: int) -> list[str]:
    """Its argv, or [] when it is gone (or a kernel thread)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


AGENT_NAMES = ("calico-node", "calico-node.py", "cni_calico.node")  # frozen, source entry script, module


def is_calico_node(pid: int) -> bool:
    """Whether the process runs calico-node (its program or module is named so among the first
    arguments): a pid file left by an agent that died may name a process started since."""
    return any(Path(arg).name in AGENT_NAMES for arg in command_line(pid)[:3])
