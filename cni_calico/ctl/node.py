"""`calicoctl node run`, `node status` and `node stop`.

`node run` starts calico-node detached; the agent writes its pid to `calico-node.pid` in its run
directory (CALICO_RUN_DIR, default /var/run/calico) and removes it when it exits. `node stop`
finds it there and stops it as a service manager would: SIGTERM (the agent then stops BIRD in
graceful-restart mode, so routes stay in the kernel and with the peers while it is down), then
waits for it to exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from .errors import CtlError

DEFAULT_RUN_DIR = "/var/run/calico"
NOT_RUNNING = "Calico process is not running."  # Calico's words (node status)
PID_FILE = "calico-node.pid"  # the agent writes it (node/agent.py) and removes it on exit


def run_dir(env: dict[str, str]) -> Path:
    return Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)


def agent_pid(directory: Path) -> int | None:
    """The agent's PID if its pid file names a live process."""
    try:
        pid = int((directory / PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def status(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    from ..node.routing.birdctl import BirdControl, BirdError
    from ..node.routing.status import format_status, peers_from_protocols

    directory = run_dir(env)
    if agent_pid(directory) is None:
        raise CtlError(NOT_RUNNING)
    try:
        protocols = BirdControl(directory / "bird.ctl", timeout=5).protocols()
    except BirdError as exc:  # the agent runs but BIRD does not answer: say so in the table's place
        out.write(format_status(True, [], str(exc)))
        return 1
    out.write(format_status(True, peers_from_protocols(protocols)))
    return 0


def agent_command() -> list[str]:
    """The agent beside this program when installed as binaries, else this Python's module."""
    beside = Path(sys.argv[0]).absolute().with_name("calico-node")  # the link beside calicoctl
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("calico-node")
    return [found] if found else [sys.executable, "-m", "cni_calico.node"]


def run(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    """Start the agent detached for this host and wait until it is serving (Calico's `node run`)."""
    from ..node.main import overrides

    values = overrides(args)
    directory = Path(str(values.get("run_dir") or env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR))
    if (pid := agent_pid(directory)) is not None:
        raise CtlError(f"calico-node is already running on this host (pid {pid})")
    directory.mkdir(parents=True, exist_ok=True)
    flags = ["--run-dir", str(directory)]  # on the command line too: it identifies this agent's process
    for flag, key in (("--name", "nodename"), ("--ip", "ip"), ("--as", "as_number"), ("--backend", "backend"),
                      ("--ip-autodetection-method", "ip_autodetection_method"), ("--nodename-file", "nodename_file"),
                      ("--health-port", "health_port"), ("--log-level", "log_level")):
        if key in values:
            flags += [flag, str(values[key])]
    log_path = Path(str(values.get("log_file") or directory / "calico-node.log"))
    child_env = {**env, "CALICO_RUN_DIR": str(directory)}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(agent_command() + flags + ["--log-file", str(log_path)], env=child_env,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True)
    out.write(f"Starting calico-node (pid {proc.pid}), logging to {log_path}\n")
    deadline = time.monotonic() + args.timeout
    backend = values.get("backend", env.get("CALICO_NETWORKING_BACKEND") or "bird")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise CtlError(f"calico-node exited with status {proc.returncode}: {tail[0]}")
        if agent_pid(directory) == proc.pid and (backend == "none" or (directory / "bird.ctl").exists()):
            out.write("Calico node started successfully.\n")
            return 0
        time.sleep(0.1)
    raise CtlError(f"calico-node (pid {proc.pid}) did not become ready within {args.timeout:.0f} s; see {log_path}")


def stop(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    """Stop this host's agent: SIGTERM to the pid in its pid file, then wait until it has exited."""
    from ..procs import is_calico_node, running

    directory = Path(args.run_dir or env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)
    pid = agent_pid(directory)
    if pid is None or not running(pid):
        raise CtlError(NOT_RUNNING)
    if not is_calico_node(pid):
        raise CtlError(f"pid {pid} in {directory / PID_FILE} is not calico-node: left alone")
    out.write(f"Stopping calico-node (pid {pid})\n")
    out.flush()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited in between: stopped all the same
    deadline = time.monotonic() + args.timeout
    while running(pid):
        if time.monotonic() >= deadline:
            raise CtlError(f"calico-node (pid {pid}) is still running {args.timeout:.0f} s after SIGTERM")
        time.sleep(0.1)
    out.write("Calico node stopped.\n")
    return 0
