"""The CNI fast path's wire format and client. The client's imports are `os`, `sys` (loaded at
start-up anyway) and the `_socket` builtin, nothing more: the frozen `calico` and `calico-ipam`
load this first, and every module imported here is paid for on every CNI call (`socket` alone
pulls in enum and selectors, `json` pulls in re).

A call is one connection to the agent's unix socket. Request: the magic `cni1`, then three
length-prefixed fields (plugin name, environment as NUL-separated `K=V`, stdin), with the
caller's descriptor of CNI_NETNS attached to the first bytes (SCM_RIGHTS) when it could open it:
the agent may run in another mount namespace than the runtime, where the path shows something
else. Reply: a 4-byte exit status and a length-prefixed stdout. The agent runs the very same handlers, warm. When the
socket is absent or refuses the connection the caller does the work itself (standalone); once the
agent has accepted a call, a missing answer is CNI error 11 — never a second attempt in-process,
which could race the first.
"""

from __future__ import annotations

import _socket
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the CNI path
if TYPE_CHECKING:
    from typing import Any, Mapping

DEFAULT_SOCKET = "/var/run/calico/cni.sock"
DEFAULT_TIMEOUT = 60.0
MODES = ("auto", "off", "only")  # only: never fall back to standalone (for tests and benchmarks)
MAX_FIELD = 16 * 1024 * 1024
MAGIC = b"cni1"
_FD_SIZE = 4  # a descriptor in SCM_RIGHTS data: a C int
_ENCODING = ("utf-8", "surrogateescape")  # environment strings round-trip whatever bytes they hold


class NotServed(Exception):
    """Nobody is serving: do the work in this process."""


class ServedButFailed(Exception):
    """The agent took the call but gave no answer (timeout, dropped connection)."""


# ------------------------------------------------------------------ wire format

def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _recv_exact(sock: _socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv_field(sock: _socket.socket) -> bytes:
    size = int.from_bytes(_recv_exact(sock, 4), "big")
    if size > MAX_FIELD:
        raise ValueError(f"a field of {size} bytes is too large")
    return _recv_exact(sock, size)


def encode_request(plugin: str, env: dict[str, str], stdin: bytes) -> bytes:
    environment = b"\0".join(f"{k}={v}".encode(*_ENCODING) for k, v in env.items())
    return MAGIC + _field(plugin.encode()) + _field(environment) + _field(stdin)


def _recv_magic(sock: _socket.socket, fds: list[int]) -> bytes:
    """The first bytes, and the descriptors that came with them (at most one is taken: any
    more are closed by the kernel as the control buffer has no room for them)."""
    data, ancillary, _, _ = sock.recvmsg(len(MAGIC), _socket.CMSG_SPACE(_FD_SIZE))
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _FD_SIZE
            fds.extend(int.from_bytes(payload[i:i + _FD_SIZE], sys.byteorder, signed=True)
                       for i in range(0, whole, _FD_SIZE))
    if not data:
        raise ConnectionError("connection closed mid-message")
    return data + (_recv_exact(sock, len(MAGIC) - len(data)) if len(data) < len(MAGIC) else b"")


def read_request(sock: _socket.socket, fds: list[int] | None = None) -> tuple[str, dict[str, str], bytes]:
    """The request; with `fds`, the descriptor sent with it (CNI_NETNS as the caller opened it)
    is appended there, and the caller must close it."""
    magic = _recv_exact(sock, len(MAGIC)) if fds is None else _recv_magic(sock, fds)
    if magic != MAGIC:
        raise ValueError("not a fast-path request")
    plugin = _recv_field(sock).decode(*_ENCODING)
    env = {}
    for item in _recv_field(sock).split(b"\0"):
        key, sep, value = item.decode(*_ENCODING).partition("=")
        if sep:
            env[key] = value
    return plugin, env, _recv_field(sock)


def encode_reply(status: int, stdout: str) -> bytes:
    return status.to_bytes(4, "big") + _field(stdout.encode(*_ENCODING))


def read_reply(sock: _socket.socket) -> tuple[int, str]:
    status = int.from_bytes(_recv_exact(sock, 4), "big")
    return status, _recv_field(sock).decode(*_ENCODING)


# ------------------------------------------------------------------ client

def _config(stdin: bytes) -> dict[str, Any]:
    import json  # only when the config names a fast_path setting: see settings()

    try:
        parsed = json.loads(stdin or b"{}")
    except ValueError:
        return {}  # a broken config is the standalone path's to report, with the right code
    return parsed if isinstance(parsed, dict) else {}


def settings(env: Mapping[str, str], stdin: bytes) -> tuple[str, str, float]:
    """(mode, socket path, timeout): the network config's `fast_path*` keys, else CALICO_CNI_* env.
    The config is parsed only when it mentions `"fast_path`: most never do, and parsing costs
    the json import."""
    conf = _config(stdin) if b'"fast_path' in stdin else {}
    mode = str(conf.get("fast_path") or env.get("CALICO_CNI_FAST_PATH") or "auto")
    path = str(conf.get("fast_path_socket") or env.get("CALICO_CNI_SOCKET") or DEFAULT_SOCKET)
    try:
        timeout = float(conf.get("fast_path_timeout") or env.get("CALICO_CNI_TIMEOUT") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError):
        timeout = DEFAULT_TIMEOUT
    return (mode if mode in MODES else "auto"), path, timeout


def call(plugin: str, env: Mapping[str, str], stdin: bytes, path: str, timeout: float) -> tuple[int, str]:
    """Hand one CNI call to the agent: (exit status, stdout)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        try:
            sock.connect(path)
        except OSError as exc:  # absent, refused, not a socket, not allowed: not served
            raise NotServed(str(exc)) from None
        sock.settimeout(timeout)
        try:
            _send_request(sock, encode_request(plugin, dict(env), stdin), env.get("CNI_NETNS", ""))
            return read_reply(sock)
        except (OSError, ValueError, ConnectionError) as exc:
            raise ServedButFailed(f"calico-node accepted the call but did not answer: {exc}") from None
    finally:
        sock.close()


def _send_request(sock: _socket.socket, request: bytes, netns: str) -> None:
    """The request, with CNI_NETNS opened here, in the runtime's mount namespace, attached to its
    first bytes. A path this process cannot open goes without: the agent looks at the path."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK) if netns else -1
    except OSError:
        fd = -1
    if fd < 0:
        sock.sendall(request)
        return
    try:
        sent = sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(_FD_SIZE, sys.byteorder))])
    finally:
        os.close(fd)  # the message holds its own reference
    sock.sendall(request[sent:])


def try_fast_path(plugin: str, env: Mapping[str, str], stdin: bytes) -> tuple[int, str] | None:
    """The reply when the agent served the call; None to run standalone."""
    if env.get("CNI_COMMAND") == "VERSION":
        return None  # answered locally, from constants
    mode, path, timeout = settings(env, stdin)
    if mode == "off":
        return None
    try:
        return call(plugin, env, stdin, path, timeout)
    except NotServed as exc:
        if mode == "only":
            return 1, error_reply(stdin, f"the CNI fast path is required but not served at {path}: {exc}")
        return None
    except ServedButFailed as exc:
        return 1, error_reply(stdin, str(exc))


def error_reply(stdin: bytes, msg: str, code: int | None = None) -> str:
    """A CNI error (11, try again later, unless `code` says otherwise) in the caller's cniVersion,
    as skel answers errors."""
    import json

    from ..errors import (  # standard library only, like this module
        TRY_AGAIN_LATER,
        CniError,
    )
    from .versions import LATEST_VERSION, SUPPORTED_VERSIONS

    version = str(_config(stdin).get("cniVersion") or "0.1.0")
    error = CniError(TRY_AGAIN_LATER if code is None else code, msg)
    return json.dumps(error.to_dict(version if version in SUPPORTED_VERSIONS else LATEST_VERSION))


def own_uid() -> int:
    return os.geteuid()
