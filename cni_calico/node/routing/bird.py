"""Supervise one BIRD process: start it in the foreground, reload, stop, restart after a crash.

BIRD runs as our child in whatever network namespace the caller is in (the agent already runs
inside its host's namespace), with its own config, control socket and pid file. Its stdout and
stderr, where it reports config errors at startup, go to `<pid file stem>.out` next to the pid file;
its log proper goes wherever the config's `log` statement says.

A BIRD left behind by a crashed agent (found by its pid file, or by scanning /proc, through its
command line naming our control socket) is not adopted but replaced: it is not our child, so we
could neither reap it nor see its output, and it runs whatever config the dead agent gave it. It
is stopped with `graceful restart`, so the kernel and the peers keep its routes until the new
BIRD, started in graceful-restart recovery, has re-learned them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ...procs import running
from .birdctl import BirdControl, BirdError

START_TIMEOUT = 10.0  # BIRD answers on its socket within milliseconds unless something is wrong
EXIT_TIMEOUT = 5.0  # per stage of a stop: command, then SIGTERM, then SIGKILL
POLL = 0.05
TAIL_CHARS = 2000


class BirdDaemon:
    def __init__(self, config_path: Path, socket_path: Path, pid_path: Path, binary: str = "bird") -> None:
        self.config_path = Path(config_path).absolute()
        self.socket_path = Path(socket_path).absolute()
        self.pid_path = Path(pid_path).absolute()
        self.binary = binary
        self.output_path = self.pid_path.with_name(self.pid_path.stem + ".out")
        self._proc: subprocess.Popen[bytes] | None = None
        self._wanted = False  # set by start (even a failed one), cleared by stop: restart_if_dead acts on it

    @property
    def pid(self) -> int | None:
        """The PID of the BIRD started last (it may have died since: see `alive()`)."""
        return self._proc.pid if self._proc else None

    def control(self, timeout: float = 5.0) -> BirdControl:
        return BirdControl(self.socket_path, timeout)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, graceful_recovery: bool = False) -> None:
        """Start BIRD and return once it answers on its socket; `graceful_recovery` passes `-R`.

        Recovery is also used when a leftover BIRD was replaced: it stopped for a graceful restart.
        """
        if self.alive():
            return
        replaced = self._replace_leftover()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "-f", "-c", str(self.config_path), "-s", str(self.socket_path), "-P", str(self.pid_path)]
        if graceful_recovery or replaced:
            argv.append("-R")
        with open(self.output_path, "ab") as out:
            offset = out.tell()
            try:
                # Own session: a Ctrl-C aimed at the agent must not take the routing daemon down with it.
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True)
            except OSError as exc:
                raise BirdError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        # Wanted from now on, even if this start fails: restart_if_dead keeps trying (and raising,
        # for the agent to report) until stop().
        self._wanted = True
        self._wait_ready(offset)

    def reload(self) -> None:
        """Apply the config file again; on a bad file BIRD keeps running the old one and this raises."""
        if not self.alive():
            raise BirdError(f"BIRD is not running (control socket {self.socket_path})")
        self.control().configure()

    def stop(self, graceful: bool = False) -> None:
        """Stop BIRD: `graceful restart` keeps its routes in the kernel and at the peers; else `down`."""
        self._wanted = False
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                control = self.control(timeout=EXIT_TIMEOUT)
                if graceful:
                    control.graceful_restart()
                else:
                    control.down()
            except BirdError:
                pass  # not answering: the signals below still stop it
            if not _wait_child(proc, EXIT_TIMEOUT):
                proc.send_signal(signal.SIGTERM)  # BIRD shuts down (not gracefully) on SIGTERM
                if not _wait_child(proc, EXIT_TIMEOUT):
                    proc.kill()
                    proc.wait()
        if proc is not None:
            self._remove_files_of(proc.pid)

    def restart_if_dead(self) -> bool:
        """Bring a crashed BIRD back (True if it had to); one stopped on purpose stays stopped."""
        if not self._wanted or self.alive():
            return False
        # Recovery mode: the kernel keeps the routes the dead BIRD installed until the sessions
        # are back and have re-sent their routes, instead of BIRD flushing them at startup.
        self.start(graceful_recovery=True)
        return True

    # ------------------------------------------------------------ helpers

    def _wait_ready(self, offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            status = self._proc.poll()
            if status is not None:
                raise BirdError(f"BIRD exited at start (status {status}): {self._output_tail(offset)}")
            try:
                self.control(timeout=1.0).command("show status")
                return
            except BirdError:
                pass
            if time.monotonic() > deadline:
                self._proc.kill()
                self._proc.wait()
                raise BirdError(f"BIRD did not answer on {self.socket_path} within {START_TIMEOUT:g} s: "
                                f"{self._output_tail(offset)}")
            time.sleep(POLL)

    def _output_tail(self, offset: int) -> str:
        try:
            with open(self.output_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace").strip()
        except OSError:
            text = ""
        return text[-TAIL_CHARS:] or "no output"

    def _replace_leftover(self) -> bool:
        """Stop a BIRD still serving our socket from before (a crashed agent), then clear its files.

        True if there was one.
        """
        leftovers = self._leftovers()
        for pid in leftovers:
            try:
                BirdControl(self.socket_path, EXIT_TIMEOUT).graceful_restart()
            except BirdError:
                pass
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if _wait_pid(pid, EXIT_TIMEOUT):
                    break
                if self._is_ours(pid):  # re-check right before signalling: PIDs get reused
                    os.kill(pid, sig)
            _wait_pid(pid, EXIT_TIMEOUT)
        try:
            BirdControl(self.socket_path, 1.0).command("show status")
        except BirdError:
            self._remove_files()  # stale: BIRD is not running behind them
            return bool(leftovers)
        raise BirdError(f"another BIRD answers on {self.socket_path} and is not one we can stop "
                        "(no process with that socket in its command line)")

    def _leftovers(self) -> list[int]:
        try:
            recorded = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            recorded = 0
        if recorded and self._is_ours(recorded):
            return [recorded]
        # No usable pid file: look for a BIRD naming our socket (bounded scan of /proc).
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and self._is_ours(int(p))]

    def _is_ours(self, pid: int) -> bool:
        """A live BIRD whose command line names our control socket (and is not our current child)."""
        if self._proc is not None and pid == self._proc.pid and self._proc.poll() is None:
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
        if not argv or os.path.basename(argv[0]) != os.path.basename(self.binary):
            return False
        sockets = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-s"]
        return any(os.path.abspath(s) == str(self.socket_path) for s in sockets)

    def _remove_files_of(self, pid: int) -> None:
        """After our BIRD died: its files, unless a BIRD started since (another agent) owns them now."""
        try:
            recorded = int(self.pid_path.read_text().strip() or pid)
        except (OSError, ValueError):
            recorded = pid
        if recorded == pid or not running(recorded):
            _unlink(self.pid_path)
        try:
            BirdControl(self.socket_path, 1.0).command("show status")
        except BirdError:
            _unlink(self.socket_path)  # nobody answers: stale

    def _remove_files(self) -> None:
        _unlink(self.socket_path)
        _unlink(self.pid_path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _wait_child(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _wait_pid(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to end; True if it did."""
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True
