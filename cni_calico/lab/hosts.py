"""What every lab is made of: network namespaces made and removed by name, an agent started and
stopped by PID, and a CNI plugin exec'd the way a runtime does it. `Cluster` (several hosts on a
bridge, BGP between them) and `PluginHost` (one host, the plugins and maybe a calico-node serving
them) are built from these, and so are the tests, the demo and the benchmarks.

Nothing is created in the machine's own namespace: every link, route and sysctl lives in a
namespace made here, and every namespace is deleted by name at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..procs import running
from . import binaries
from .relay import NetnsRelay

NETNS_DIR = "/var/run/netns"
BASE_LINKS = ["lo", "uplink", "uplink-peer"]  # what a PluginHost's namespace holds before any pod


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def clean_env(drop: Sequence[str] = ("CNI_", "ETCD_", "CALICO_")) -> dict[str, str]:
    """This process's environment without the variables a lab sets itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop))}


@dataclass
class Namespaces:
    """Namespaces named `<prefix>-<name>`, loopback up, all removed by `remove_all`."""

    prefix: str = field(default_factory=lambda: "cc" + uuid.uuid4().hex[:6])
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", full)
        self.names.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def remove_all(self) -> None:
        for name in reversed(self.names):
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()


@dataclass(frozen=True)
class CniOutcome:
    status: int
    result: dict[str, Any] | None  # stdout decoded
    stderr: str


def exec_cni(command: Sequence[str], cni_env: Mapping[str, str], config: dict[str, Any] | str | bytes, *,
             netns: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 120) -> CniOutcome:
    """Exec a plugin as a runtime does: the CNI variables, the config on stdin (a str or bytes is
    sent as is), inside the namespace `netns` when given."""
    full = {**(env if env is not None else clean_env(("CNI_",))), **cni_env}
    data = config if isinstance(config, (str, bytes)) else json.dumps(config)
    argv = ["ip", "netns", "exec", netns, *command] if netns else list(command)
    proc = subprocess.run(argv, input=data.encode() if isinstance(data, str) else data, capture_output=True,
                          env=full, timeout=timeout, check=False)
    out = proc.stdout.decode().strip()
    return CniOutcome(proc.returncode, json.loads(out) if out else None, proc.stderr.decode())


def start_agent(netns: str, command: Sequence[str], env: Mapping[str, str], output: str | None = None
                ) -> subprocess.Popen[bytes]:
    """calico-node (or `command`) inside the namespace, as `ip netns exec` runs it (same PID)."""
    argv = ["ip", "netns", "exec", netns, *command]
    if not output:
        return subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    with open(output, "ab") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 15) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=wait)


def kill_pid(pid: int, sig: int = signal.SIGTERM, wait: float = 10) -> None:
    """Signal one PID and wait for it to go, then SIGKILL it."""
    try:
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and running(pid):
        time.sleep(0.05)
    if running(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@dataclass
class PluginHost:
    """One simulated host for the plugins: its namespace (a veth uplink and a default route, so
    proxy ARP answers for 169.254.1.1), pods as namespaces, etcd relayed onto its loopback, and,
    with `fast_path`, a calico-node without BGP serving the plugins' calls."""

    etcd_port: int
    fast_path: bool = False
    agent_env: dict[str, str] = field(default_factory=dict)  # more settings for that calico-node
    agent_command: list[str] | None = None  # instead of calico-node (e.g. a fault-injecting one)
    spaces: Namespaces = field(default_factory=Namespaces)
    relay: NetnsRelay | None = None
    agent: subprocess.Popen[bytes] | None = None
    workdir: str = ""

    @property
    def prefix(self) -> str:
        return self.spaces.prefix

    @property
    def host(self) -> str:
        return f"{self.prefix}-host"

    @property
    def etcd(self) -> str:
        """etcd as the simulated host sees it (its own loopback, relayed)."""
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def socket(self) -> str:
        return f"{self.workdir}/cni.sock"

    def start(self) -> PluginHost:
        try:
            self.spaces.add("host")
            for cmd in (["link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer"],
                        ["link", "set", "uplink-peer", "up"], ["addr", "add", "192.0.2.1/24", "dev", "uplink"],
                        ["link", "set", "uplink", "up"], ["route", "add", "default", "dev", "uplink"]):
                sh("ip", "-n", self.host, *cmd)
            sh("ip", "netns", "exec", self.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.relay = NetnsRelay(self.etcd_port)
            self.relay.expose(f"{NETNS_DIR}/{self.host}")
            if self.fast_path:
                self._start_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_agent(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-agent-")
        env = clean_env()
        env.update(ETCD_ENDPOINTS=self.etcd, NODENAME="host1", IP="none", CALICO_NETWORKING_BACKEND="none",
                   NO_DEFAULT_POOLS="true", CALICO_HEALTH_PORT="0", HOSTNAME_FILE=f"{self.workdir}/nodename",
                   CALICO_LOG_FILE=f"{self.workdir}/agent.log", **self.agent_env)
        command = self.agent_command or binaries.command("calico-node")
        self.agent = start_agent(self.host, [*command, "--run-dir", self.workdir], env)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"calico-node did not serve {self.socket}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.agent is not None:
            stop_process(self.agent)
            self.agent = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.relay:
            self.relay.close()
            self.relay = None
        self.spaces.remove_all()

    def pod(self, name: str) -> str:
        return f"{NETNS_DIR}/{self.spaces.add(name)}"

    def conf(self, **extra: Any) -> dict[str, Any]:
        path = {"fast_path": "only", "fast_path_socket": self.socket} if self.fast_path else {"fast_path": "off"}
        return {"cniVersion": "1.0.0", "name": "net1", "type": "calico", "etcd_endpoints": self.etcd,
                "nodename": "host1", "ipam_lock_file": "", "ipam": {"type": "calico-ipam"}, **path, **extra}

    def cni(self, command: str, config: dict[str, Any] | str, *, container_id: str, netns: str, ifname: str = "eth0",
            args: str = "", env: dict[str, str] | None = None, plugin: str = "calico",
            executable: Sequence[str] | None = None) -> tuple[int, dict[str, Any] | None, str]:
        """Exec the plugin (or `executable`) inside the simulated host, as a runtime on that host
        would."""
        cni_env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                   "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": "/usr/lib/cni", **(env or {})}
        outcome = exec_cni(executable or binaries.command(plugin), cni_env, config, netns=self.host)
        return outcome.status, outcome.result, outcome.stderr

    def in_host(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.host, *cmd, check=check)

    def host_links(self) -> list[str]:
        out = sh("ip", "-n", self.host, "-o", "link", "show").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())

    def host_routes(self) -> str:
        return sh("ip", "-n", self.host, "route", "show").stdout
