"""Namespace lab for plugin tests: a simulated host netns, pod netns, etcd relayed into the host.

Nothing is created in the machine's own namespace: every link, route and sysctl lives in a
namespace made here, and every namespace is deleted by name at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni_calico.lab import binaries
from cni_calico.lab.relay import NetnsRelay

NETNS_DIR = "/var/run/netns"
FAULTS = str(Path(__file__).with_name("faults.py"))
BASE_LINKS = ["lo", "uplink", "uplink-peer"]  # what a simulated host holds before any pod


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Lab:
    etcd_port: int
    prefix: str = field(default_factory=lambda: "cc" + uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)
    relay: NetnsRelay | None = None
    fast_path: bool = False  # calls go to a calico-node serving the CNI fast path in the host
    agent_env: dict[str, str] = field(default_factory=dict)  # more settings for that calico-node
    faulty: bool = False  # that calico-node serves the fault-injecting plugin of tests/faults.py
    agent: subprocess.Popen[bytes] | None = None
    workdir: str = ""

    @property
    def host(self) -> str:
        return f"{self.prefix}-host"

    @property
    def etcd(self) -> str:
        """etcd as the simulated host sees it (its own loopback, relayed)."""
        return f"http://127.0.0.1:{self.etcd_port}"

    def netns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        return full

    def start(self) -> Lab:
        self.netns("host")
        # A host is a router with somewhere to send traffic: proxy ARP answers for 169.254.1.1
        # only when the host has a route to it, so give it a default route into an uplink (a veth
        # pair inside the host namespace: this kernel may lack the dummy driver).
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer"],
                    ["link", "set", "uplink-peer", "up"],
                    ["addr", "add", "192.0.2.1/24", "dev", "uplink"], ["link", "set", "uplink", "up"],
                    ["route", "add", "default", "dev", "uplink"]):
            sh("ip", "-n", self.host, *cmd)
        sh("ip", "netns", "exec", self.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.relay = NetnsRelay(self.etcd_port)
        self.relay.expose(f"{NETNS_DIR}/{self.host}")
        if self.fast_path:
            self._start_agent()
        return self

    @property
    def socket(self) -> str:
        return f"{self.workdir}/cni.sock"

    def _start_agent(self) -> None:
        """calico-node without BGP, only serving the fast path for this host."""
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-agent-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "ETCD_", "CALICO_"))}
        env.update(ETCD_ENDPOINTS=self.etcd, NODENAME="host1", IP="none", CALICO_NETWORKING_BACKEND="none",
                   NO_DEFAULT_POOLS="true", CALICO_HEALTH_PORT="0", HOSTNAME_FILE=f"{self.workdir}/nodename",
                   CALICO_LOG_FILE=f"{self.workdir}/agent.log", **self.agent_env)
        command = [sys.executable, FAULTS, "calico-node"] if self.faulty else binaries.command("calico-node")
        self.agent = subprocess.Popen(["ip", "netns", "exec", self.host, *command,
                                       "--run-dir", self.workdir], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"calico-node did not serve {self.socket}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.terminate()
            try:
                self.agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
            self.agent = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.relay:
            self.relay.close()
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()

    def pod(self, name: str) -> str:
        return f"{NETNS_DIR}/{self.netns(name)}"

    def conf(self, **extra: Any) -> dict[str, Any]:
        path = {"fast_path": "only", "fast_path_socket": self.socket} if self.fast_path else {"fast_path": "off"}
        return {"cniVersion": "1.0.0", "name": "net1", "type": "calico", "etcd_endpoints": self.etcd,
                "nodename": "host1", "ipam_lock_file": "", "ipam": {"type": "calico-ipam"}, **path, **extra}

    def cni(self, command: str, config: dict[str, Any] | str, *, container_id: str, netns: str, ifname: str = "eth0",
            args: str = "", env: dict[str, str] | None = None, plugin: str = "calico",
            faulty: bool = False) -> tuple[int, dict[str, Any] | None, str]:
        """Exec the plugin inside the simulated host, as a runtime on that host would (a str is sent
        as is); `faulty`: the fault-injecting plugin of tests/faults.py instead."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        full_env.update(CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns, CNI_IFNAME=ifname,
                        CNI_ARGS=args, CNI_PATH="/usr/lib/cni", **(env or {}))
        stdin = config if isinstance(config, str) else json.dumps(config)
        command = [sys.executable, FAULTS, plugin] if faulty else binaries.command(plugin)
        proc = subprocess.run(["ip", "netns", "exec", self.host, *command],
                              input=stdin.encode(), capture_output=True, env=full_env, timeout=120)
        out = proc.stdout.decode().strip()
        return proc.returncode, json.loads(out) if out else None, proc.stderr.decode()

    def in_host(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.host, *cmd, check=check)

    def host_links(self) -> list[str]:
        out = sh("ip", "-n", self.host, "-o", "link", "show").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())

    def host_routes(self) -> str:
        return sh("ip", "-n", self.host, "route", "show").stdout
