"""`calicoctl node run` and `calicoctl node status`."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from .errors import CtlError

DEFAULT_RUN_DIR = "/var/run/calico"


def run_dir(env: dict[str, str]) -> Path:
    return Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)


def agent_pid(directory: Path) -> int | None:
    """The agent's PID if its pid file names a live process."""
    try:
        pid = int((directory / "calico-node.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def status(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    from ..node.birdctl import BirdControl, BirdError
    from ..node.status import format_status, peers_from_protocols

    directory = run_dir(env)
    if agent_pid(directory) is None:
        out.write(format_status(False, [], f"no calico-node agent is running (no live pid in {directory})"))
        return 1
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
