"""`calicoctl node stop` on stand-in processes (no root needed): what it signals, what it refuses,
how it waits. The real agent is stopped in a simulated host in tests/test_node_agent.py."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from cni_calico.ctl.main import run
from cni_calico.procs import running

# A stand-in named as the agent's entry script; it writes its pid file as the agent does.
STAND_IN = """\
import os, signal, sys, time
from pathlib import Path
pid_file = Path(sys.argv[1]) / "calico-node.pid"
def stop(*_):
    if sys.argv[2] == "graceful":
        pid_file.unlink()
        sys.exit(0)
signal.signal(signal.SIGTERM, stop)
pid_file.write_text(str(os.getpid()))
while True:
    time.sleep(0.1)
"""


def ctl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        code = run(list(argv), {}, out)
    finally:
        sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:  # ours only, by pid
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def stand_in(tmp_path: Path, processes: list[subprocess.Popen[bytes]], mode: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "calico-node.py"
    script.write_text(STAND_IN)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), mode])
    processes.append(proc)
    deadline = time.monotonic() + 10
    while not (tmp_path / "calico-node.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_stop_sends_sigterm_and_waits_for_the_exit(tmp_path: Path, processes: list[subprocess.Popen[bytes]]
                                                   ) -> None:
    agent = stand_in(tmp_path, processes, "graceful")
    assert ctl("node", "stop", "--run-dir", str(tmp_path)) == \
        (0, f"Stopping calico-node (pid {agent.pid})\nCalico node stopped.\n", "")
    assert agent.wait(timeout=5) == 0 and not (tmp_path / "calico-node.pid").exists()


def test_an_agent_that_does_not_exit_in_time_is_reported_and_left_running(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    agent = stand_in(tmp_path, processes, "stubborn")
    started = time.monotonic()
    code, out, err = ctl("node", "stop", "--run-dir", str(tmp_path), "--timeout", "1")
    assert (code, out) == (1, f"Stopping calico-node (pid {agent.pid})\n")
    assert err == f"calico-node (pid {agent.pid}) is still running 1 s after SIGTERM\n"
    assert 1 <= time.monotonic() - started < 5 and running(agent.pid)  # no SIGKILL behind the user's back


def test_a_pid_file_naming_another_program_is_refused(tmp_path: Path,
                                                      processes: list[subprocess.Popen[bytes]]) -> None:
    """An agent killed hard leaves its pid file; the pid may belong to another program since."""
    other = subprocess.Popen(["sleep", "30"])
    processes.append(other)
    (tmp_path / "calico-node.pid").write_text(str(other.pid))
    assert ctl("node", "stop", "--run-dir", str(tmp_path)) == \
        (1, "", f"pid {other.pid} in {tmp_path}/calico-node.pid is not calico-node: left alone\n")
    assert running(other.pid)


def test_nothing_to_stop(tmp_path: Path) -> None:
    assert ctl("node", "stop", "--run-dir", str(tmp_path)) == (1, "", "Calico process is not running.\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "calico-node.pid").write_text(str(dead.pid))  # an agent that died: its pid file stayed
    assert ctl("node", "stop", "--run-dir", str(tmp_path)) == (1, "", "Calico process is not running.\n")
    (tmp_path / "calico-node.pid").write_text("garbage")
    assert ctl("node", "stop", "--run-dir", str(tmp_path)) == (1, "", "Calico process is not running.\n")
