"""Real packets between namespaces, for the policy tests: TCP and UDP listeners, connection
attempts, pings. Every process started here is stopped by its Popen handle (`Listeners.close`)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from typing import Callable

# A TCP server answering "ok" to every connection, and a UDP server printing each datagram's
# source address: the listener runs inside the pod's namespace, as the pod's own process would.
_TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"ok"); c.close()
"""
_UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(2048); print(peer[0], data.decode(errors="replace"), flush=True)
"""
_TCP_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
c.settimeout(float(sys.argv[3])); sys.exit(0 if c.recv(2) == b"ok" else 1)
"""
_UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[4]: s.bind((sys.argv[4], 0))
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
"""


def _in(netns: str, code: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", netns, sys.executable, "-c", code, *args]


class Listeners:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def _start(self, cmd: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "listening":
            raise RuntimeError(f"listener did not start: {cmd}")
        return proc

    def tcp(self, netns: str, port: int) -> subprocess.Popen[str]:
        return self._start(_in(netns, _TCP_SERVER, str(port)))

    def udp(self, netns: str, address: str, port: int) -> subprocess.Popen[str]:
        return self._start(_in(netns, _UDP_SERVER, address, str(port)))

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs.clear()


def tcp_ok(netns: str, address: str, port: int, timeout: float = 1.0) -> bool:
    return subprocess.run(_in(netns, _TCP_CLIENT, address, str(port), str(timeout)), capture_output=True,
                          timeout=timeout + 10).returncode == 0


def ping_ok(netns: str, address: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True).returncode == 0


def udp_send(netns: str, address: str, port: int, text: str, source: str = "") -> None:
    subprocess.run(_in(netns, _UDP_SEND, address, str(port), text, source), check=True, capture_output=True,
                   timeout=10)


def received(listener: subprocess.Popen[str], wait: float = 1.5) -> list[tuple[str, str]]:
    """(source address, text) of every datagram the UDP listener printed within `wait` seconds.
    Reads the pipe's descriptor directly: nothing else was printed after "listening", so no
    line sits unseen in the file object's buffer."""
    assert listener.stdout is not None
    fd = listener.stdout.fileno()
    data = b""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    lines = [line.split(maxsplit=1) for line in data.decode().splitlines() if line.strip()]
    return [(parts[0], parts[1] if len(parts) > 1 else "") for parts in lines]


def eventually(check: Callable[[], bool], expected: bool, within: float) -> float | None:
    """Seconds from now to the start of the first `check()` that returned `expected` (a blocked
    connection only reports after its timeout: what counts is when its packets were sent), or
    None if none did within `within`."""
    started = time.monotonic()
    while True:
        attempt = time.monotonic()
        if check() == expected:
            return attempt - started
        if time.monotonic() - started > within:
            return None
        time.sleep(0.05)
