"""The plugin tests' lab: one simulated host (cni_calico.lab.hosts.PluginHost), optionally with
the fault-injecting plugin of tests/faults.py, exec'd directly or served by its calico-node."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cni_calico.lab.hosts import BASE_LINKS, NETNS_DIR, PluginHost, sh

__all__ = ["BASE_LINKS", "FAULTS", "NETNS_DIR", "Lab", "sh"]

FAULTS = str(Path(__file__).with_name("faults.py"))


@dataclass
class Lab(PluginHost):
    faulty: bool = False  # its calico-node serves the fault-injecting plugin

    def __post_init__(self) -> None:
        if self.faulty:
            self.agent_command = [sys.executable, FAULTS, "calico-node"]

    def cni(self, command: str, config: dict[str, Any] | str, *, container_id: str, netns: str, ifname: str = "eth0",
            args: str = "", env: dict[str, str] | None = None, plugin: str = "calico",
            executable: Sequence[str] | None = None, faulty: bool = False) -> tuple[int, dict[str, Any] | None, str]:
        """As PluginHost.cni; `faulty`: the fault-injecting plugin, standalone."""
        if faulty:
            executable = [sys.executable, FAULTS, plugin]
        return super().cni(command, config, container_id=container_id, netns=netns, ifname=ifname, args=args,
                           env=env, plugin=plugin, executable=executable)
