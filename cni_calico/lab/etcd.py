"""A private etcd on a free loopback port with a temporary data dir, stopped by its own PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateEtcd:
    """`with PrivateEtcd() as etcd: etcd.endpoint` -> "http://127.0.0.1:<port>"."""

    def __init__(self, binary: str = "etcd") -> None:
        self.binary = shutil.which(binary) or binary
        self.data_dir = ""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> PrivateEtcd:
        """Start, or start again after `kill()` with the same data and port (an etcd restart)."""
        self.data_dir = self.data_dir or tempfile.mkdtemp(prefix="cni-calico-etcd-")
        self.port = self.port or free_port()
        peer = free_port()
        with open(os.path.join(self.data_dir, "etcd.log"), "wb") as log:  # etcd keeps its own descriptor
            self.process = subprocess.Popen(
                [self.binary, "--name", "lab", "--data-dir", os.path.join(self.data_dir, "data"),
                 "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", f"lab=http://127.0.0.1:{peer}", "--log-level", "error"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}; see {self.data_dir}/etcd.log")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd did not become healthy on {self.endpoint} within {timeout}s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=0.5) as reply:
                return b'"true"' in reply.read()
        except OSError:
            return False

    def pause(self) -> None:
        """Stop answering (SIGSTOP) without losing data: simulates an unreachable etcd."""
        if self.process:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process:
            os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Stop the server but keep its data dir, so `start()` can't be confused with it."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def stop(self) -> None:
        self.kill()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = ""

    def __enter__(self) -> PrivateEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
