"""The CNI fast path's wire format and client. Standard library only: the frozen `calico` and
`calico-ipam` import this before anything else, and must stay cheap when they hand the call over.

A call is one connection to the agent's unix socket: a length-prefixed JSON request
{plugin, env, stdin (base64)} and a length-prefixed JSON reply {status, stdout}. The agent runs
the very same handlers, warm. When the socket is absent or refuses the connection the caller does
the work itself (standalone); once the agent has accepted a call, a missing answer is CNI error
11 — never a second attempt in-process, which could race the first.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any, Mapping

DEFAULT_SOCKET = "/var/run/calico/cni.sock"
DEFAULT_TIMEOUT = 60.0
MODES = ("auto", "off", "only")  # only: never fall back to standalone (for tests and benchmarks)
MAX_FRAME = 16 * 1024 * 1024


class NotServed(Exception):
    """Nobody is serving: do the work in this process."""


class ServedButFailed(Exception):
    """The agent took the call but gave no answer (timeout, dropped connection)."""


def send_frame(sock: socket.socket, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    header = _recv_exact(sock, 4)
    (length,) = struct.unpack(">I", header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is too large")
    return json.loads(_recv_exact(sock, length))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _config(stdin: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(stdin or b"{}")
    except ValueError:
        return {}  # a broken config is the standalone path's to report, with the right code
    return parsed if isinstance(parsed, dict) else {}


def settings(env: Mapping[str, str], stdin: bytes) -> tuple[str, str, float]:
    """(mode, socket path, timeout): the network config's `fast_path*` keys, else CALICO_CNI_* env."""
    conf = _config(stdin)
    mode = str(conf.get("fast_path") or env.get("CALICO_CNI_FAST_PATH") or "auto")
    path = str(conf.get("fast_path_socket") or env.get("CALICO_CNI_SOCKET") or DEFAULT_SOCKET)
    try:
        timeout = float(conf.get("fast_path_timeout") or env.get("CALICO_CNI_TIMEOUT") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError):
        timeout = DEFAULT_TIMEOUT
    return (mode if mode in MODES else "auto"), path, timeout


def call(plugin: str, env: Mapping[str, str], stdin: bytes, path: str, timeout: float) -> tuple[int, str]:
    """Hand one CNI call to the agent: (exit status, stdout)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        try:
            sock.connect(path)
        except OSError as exc:  # absent, refused, not a socket, not allowed: not served
            raise NotServed(str(exc)) from None
        sock.settimeout(timeout)
        try:
            send_frame(sock, {"plugin": plugin, "env": dict(env), "stdin": base64.b64encode(stdin).decode()})
            reply = recv_frame(sock)
            return int(reply["status"]), str(reply["stdout"])
        except (OSError, ValueError, KeyError, ConnectionError) as exc:
            raise ServedButFailed(f"calico-node accepted the call but did not answer: {exc}") from None
    finally:
        sock.close()


def try_fast_path(plugin: str, env: Mapping[str, str], stdin: bytes) -> tuple[int, str] | None:
    """The reply when the agent served the call; None to run standalone."""
    if env.get("CNI_COMMAND") == "VERSION":
        return None  # answered locally without any import worth avoiding
    mode, path, timeout = settings(env, stdin)
    if mode == "off":
        return None
    try:
        return call(plugin, env, stdin, path, timeout)
    except NotServed as exc:
        if mode == "only":
            return 1, _error(stdin, f"the CNI fast path is required but not served at {path}: {exc}")
        return None
    except ServedButFailed as exc:
        return 1, _error(stdin, str(exc))


def _error(stdin: bytes, msg: str) -> str:
    """CNI error 11 (try again later) in the caller's cniVersion, as skel answers errors."""
    from .errors import TRY_AGAIN_LATER, CniError  # standard library only, like this module
    from .skel import LATEST_VERSION, SUPPORTED_VERSIONS

    version = str(_config(stdin).get("cniVersion") or "0.1.0")
    return json.dumps(CniError(TRY_AGAIN_LATER, msg).to_dict(version if version in SUPPORTED_VERSIONS
                                                               else LATEST_VERSION))


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED: pid, uid, gid)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def own_uid() -> int:
    return os.geteuid()
