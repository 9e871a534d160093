"""A lab of simulated hosts: network namespaces on one shared link, an agent + BIRD in each.

Layout (nothing is created in the machine's own namespace):

    <p>-sw   a "switch" namespace: bridge br0 with 192.0.2.1/24 (the hosts' default gateway)
    <p>-h1   host 1: eth0 192.0.2.11/24 on the bridge, calico-node (+ BIRD), pods' veths
    <p>-h2   host 2: eth0 192.0.2.12/24 ...
    <p>-h1-<pod>  a pod's namespace, wired by the calico plugin run inside <p>-h1

etcd runs on the machine's loopback and is relayed onto each host's own loopback (see relay.py).
Everything is removed by name or PID in `stop()`, which also runs when start-up fails half way.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..cni.types import DEFAULT_NODENAME_FILE
from . import binaries
from .hosts import NETNS_DIR, CniOutcome, Namespaces, clean_env, exec_cni, kill_pid, sh, start_agent, stop_process
from .relay import NetnsRelay

SUBNET = "192.0.2"  # TEST-NET-1: documentation addresses, never routed anywhere real
GATEWAY = f"{SUBNET}.1"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONF = REPO / "examples" / "10-calico.conf"


@dataclass
class Host:
    index: int
    name: str  # the node name
    netns: str
    ip: str
    run_dir: Path
    agent: subprocess.Popen[bytes] | None = None
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> container id

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"

    @property
    def nodename_file(self) -> Path:
        return self.run_dir / "nodename"

    @property
    def bird_socket(self) -> Path:
        return self.run_dir / "bird.ctl"


class Cluster:
    def __init__(self, etcd_port: int, hosts: int = 2, *, prefix: str | None = None,
                 node_names: list[str] | None = None, python: str = sys.executable) -> None:
        self.etcd_port = etcd_port
        self.prefix = prefix or "cc" + uuid.uuid4().hex[:5]
        self.python = python
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.spaces = Namespaces(self.prefix)
        self.relay: NetnsRelay | None = None
        self.bin_dir = binaries.bin_dir(self.workdir / "bin")  # CNI_PATH: our plugins by name
        names = node_names or [f"node{i}" for i in range(1, hosts + 1)]
        self.hosts = [Host(i, name, f"{self.prefix}-h{i}", f"{SUBNET}.{10 + i}", self.workdir / name)
                      for i, name in enumerate(names, start=1)]

    @property
    def etcd(self) -> str:
        """etcd as every simulated host sees it: on its own loopback, relayed."""
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    # ------------------------------------------------------------ topology

    def _netns(self, name: str) -> str:
        """A namespace named `<prefix>-...` (`name` is the full name), removed by stop()."""
        return self.spaces.add(name.removeprefix(f"{self.prefix}-"))

    def start(self) -> Cluster:
        try:
            self._netns(self.switch)
            for cmd in (["link", "add", "br0", "type", "bridge"], ["addr", "add", f"{GATEWAY}/24", "dev", "br0"],
                        ["link", "set", "br0", "up"]):
                sh("ip", "-n", self.switch, *cmd)
            self.relay = NetnsRelay(self.etcd_port)
            for host in self.hosts:
                self._add_host(host)
        except BaseException:
            self.stop()
            raise
        return self

    def _add_host(self, host: Host) -> None:
        self._netns(host.netns)
        port = f"h{host.index}"
        sh("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        for cmd in (["link", "set", port, "master", "br0"], ["link", "set", port, "up"]):
            sh("ip", "-n", self.switch, *cmd)
        for cmd in (["addr", "add", f"{host.ip}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                    ["route", "add", "default", "via", GATEWAY]):
            sh("ip", "-n", host.netns, *cmd)
        host.run_dir.mkdir(parents=True, exist_ok=True)
        assert self.relay is not None
        self.relay.expose(host.netns_path)

    # ------------------------------------------------------------ agents

    def agent_env(self, host: Host, **extra: str) -> dict[str, str]:
        env = clean_env()
        env.update(ETCD_ENDPOINTS=self.etcd, NODENAME=host.name, IP=host.ip + "/24", CALICO_RUN_DIR=str(host.run_dir),
                   HOSTNAME_FILE=str(host.nodename_file), CALICO_HEALTH_PORT="9099", CALICO_LOG_LEVEL="info",
                   CALICO_LOG_FILE=str(host.run_dir / "calico-node.log"), NO_DEFAULT_POOLS="true")
        env.update(extra)
        return env

    def start_agent(self, host: Host, wait: bool = True, **extra_env: str) -> subprocess.Popen[bytes]:
        """calico-node inside the host's namespace, as `ip netns exec` runs it (same PID)."""
        host.agent = start_agent(host.netns, [*binaries.command("calico-node"), "--run-dir", str(host.run_dir)],
                                 self.agent_env(host, **extra_env), output=str(host.run_dir / "calico-node.out"))
        if wait:
            self.wait_ready(host)
        return host.agent

    def start_agents(self) -> None:
        """calico-node on every host, started together (their BGP sessions come up together)."""
        for host in self.hosts:
            self.start_agent(host, wait=False)
        for host in self.hosts:
            self.wait_ready(host)

    def wait_ready(self, host: Host, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host.agent is not None and host.agent.poll() is not None:
                raise RuntimeError(f"calico-node on {host.name} exited ({host.agent.returncode}): "
                                   f"{self.agent_output(host)[-800:]}")
            if self.readiness(host)[0] == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"calico-node on {host.name} not ready after {timeout} s: {self.readiness(host)}")

    def readiness(self, host: Host, path: str = "/readiness") -> tuple[int, str]:
        """GET the agent's health endpoint on the host's own loopback."""
        code = ("import sys, urllib.request, urllib.error\n"
                "try:\n r = urllib.request.urlopen('http://127.0.0.1:9099' + sys.argv[1], timeout=2)\n"
                " print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n"
                "except OSError as e:\n print(0); print(e)\n")
        out = sh("ip", "netns", "exec", host.netns, self.python, "-c", code, path, check=False).stdout
        status, _, body = out.partition("\n")
        return int(status or 0), body

    def agent_output(self, host: Host) -> str:
        parts = []
        for name in ("calico-node.out", "calico-node.log"):
            path = host.run_dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop_agent(self, host: Host, sig: int = signal.SIGTERM) -> None:
        if host.agent is not None:
            stop_process(host.agent, sig)
            host.agent = None

    def agent_pid_from_file(self, host: Host) -> int | None:
        """An agent started by `calicoctl node run` (not by this lab): found by its pid file."""
        return self._our_pid(host, "calico-node.pid")

    def bird_pid(self, host: Host) -> int | None:
        return self._our_pid(host, "bird.pid")

    def _our_pid(self, host: Host, pid_file: str) -> int | None:
        try:
            pid = int((host.run_dir / pid_file).read_text().strip())
        except (OSError, ValueError):
            return None
        try:  # only ever a process this lab started: its command line names our run directory
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if str(host.run_dir) in cmdline else None

    # ------------------------------------------------------------ pods

    def pod_conf(self, host: Host) -> dict[str, Any]:
        conf: dict[str, Any] = json.loads(EXAMPLE_CONF.read_text())
        # A real host has one /var/lib/calico/nodename; simulated hosts share a filesystem.
        conf.update(etcd_endpoints=self.etcd, nodename_file=str(host.nodename_file), log_level="warning",
                    fast_path_socket=str(host.run_dir / "cni.sock"))  # served when the host's agent runs
        return conf

    def cni(self, host: Host, command: str, container_id: str, netns: str, plugin: str = "calico",
            binary: str | None = None, cni_args: str = "", conf_extra: dict[str, Any] | None = None) -> dict[str, Any]:
        executable = binary or self.plugin_path(plugin)
        cni_env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                   "CNI_ARGS": cni_args, "CNI_PATH": str(Path(executable).parent) + ":/usr/lib/cni"}
        outcome = exec_cni([executable], cni_env, {**self.pod_conf(host), **(conf_extra or {})}, netns=host.netns,
                           env=clean_env(("CNI_", "ETCD_")))
        if outcome.status != 0:
            raise RuntimeError(f"{plugin} {command} {container_id} on {host.name}: {outcome.result or outcome.stderr}")
        return outcome.result or {}

    def plugin_path(self, plugin: str) -> str:
        return str(self.bin_dir / plugin)

    def add_pod(self, host: Host, pod: str, *, labels: dict[str, str] | None = None,
                k8s_namespace: str | None = None, conf_extra: dict[str, Any] | None = None) -> str:
        """A netns for the pod, then `calico ADD` run inside the host; returns the pod's IPv4 address.
        `labels` go in the config's args.cni.labels; `k8s_namespace` makes it a Kubernetes pod;
        `conf_extra` overrides network config keys (`name`, `fast_path`...)."""
        netns = self._netns(f"{host.netns}-{pod}")
        container_id = f"{host.name}-{pod}"
        cni_args = f"K8S_POD_NAMESPACE={k8s_namespace};K8S_POD_NAME={pod}" if k8s_namespace else ""
        extra = {"args": {"cni": {"labels": [{"key": k, "value": v} for k, v in (labels or {}).items()]}},
                 **(conf_extra or {})}
        result = self.cni(host, "ADD", container_id, f"{NETNS_DIR}/{netns}", cni_args=cni_args, conf_extra=extra)
        host.pods[pod] = container_id
        return str(result["ips"][0]["address"]).split("/")[0]

    def pod_netns(self, host: Host, pod: str) -> str:
        return f"{host.netns}-{pod}"

    def new_pod_netns(self, host: Host, pod: str) -> str:
        """A namespace for `pod` on `host` (removed by stop()); returns its path."""
        return f"{NETNS_DIR}/{self._netns(self.pod_netns(host, pod))}"

    def as_host(self, host: Host, command: Sequence[str]) -> list[str]:
        """`command` with the host's own identity, as on a real host: its hostname is its node name
        (a UTS namespace of its own) and so is `/var/lib/calico/nodename` should the machine have
        one (a mount namespace of its own, the host's file bound over it). A plugin given no node
        name in its config finds this one, as it would on a real host."""
        script = 'hostname "$0" && { [ ! -e "$1" ] || mount --bind "$2" "$1"; } && shift 2 && exec "$@"'
        return ["unshare", "--uts", "--mount", "sh", "-c", script, host.name, DEFAULT_NODENAME_FILE,
                str(host.nodename_file), *command]

    def exec_plugin(self, host: Host, config: dict[str, Any], command: str, container_id: str, netns: str,
                    cni_args: str = "", plugin: str = "calico") -> CniOutcome:
        """Exec a plugin inside `host` with exactly `config` (nothing of this lab's added), as the
        host's kubelet would run it."""
        cni_env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                   "CNI_ARGS": cni_args, "CNI_PATH": f"{self.bin_dir}:/usr/lib/cni"}
        return exec_cni(self.as_host(host, [self.plugin_path(plugin)]), cni_env, config, netns=host.netns,
                        env=clean_env())

    def ping(self, host: Host, pod: str, address: str, count: int = 1) -> bool:
        proc = sh("ip", "netns", "exec", self.pod_netns(host, pod), "ping", "-c", str(count), "-W", "2", address,
                  check=False)
        return proc.returncode == 0

    # ------------------------------------------------------------ looking

    def routes(self, host: Host) -> str:
        return sh("ip", "-n", host.netns, "route", "show").stdout

    def in_host(self, host: Host, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", host.netns, *cmd, check=check)

    def calicoctl(self, host: Host, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = self.agent_env(host)
        return subprocess.run(["ip", "netns", "exec", host.netns, *binaries.command("calicoctl"), *args],
                              capture_output=True, text=True, env=env, timeout=60, input=stdin, check=False)

    # ------------------------------------------------------------ teardown

    def stop(self) -> None:
        """Remove everything, even after a failure half way: agents, BIRDs, namespaces, files."""
        for host in self.hosts:
            try:
                self.stop_agent(host)
            except (OSError, subprocess.TimeoutExpired):
                pass
            for pid in (self.agent_pid_from_file(host), self.bird_pid(host)):
                if pid is not None:
                    kill_pid(pid)
        if self.relay:
            self.relay.close()
            self.relay = None
        self.spaces.remove_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()  # what a start that failed half way made
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
