"""The fast path's wire format and its client's start-up budget (pure: no agent, no socket file)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from cni_calico.cni import fastpath
from cni_calico.cni.versions import SUPPORTED_VERSIONS, VERSION_REPLY

from .conftest import REPO

T = TypeVar("T")


def _roundtrip(data: bytes, reader: Callable[[socket.socket], T]) -> T:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        return reader(right)


def test_request_round_trips_env_and_binary_stdin() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=x=y", "EMPTY": "", "ODD": "caf\udce9"}
    stdin = bytes(range(256)) * 3
    plugin, got_env, got_stdin = _roundtrip(fastpath.encode_request("calico-ipam", env, stdin), fastpath.read_request)
    assert (plugin, got_env, got_stdin) == ("calico-ipam", env, stdin)


def test_reply_round_trips() -> None:
    out = json.dumps({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.1/32"}], "note": "ünïcode"})
    assert _roundtrip(fastpath.encode_reply(1, out), fastpath.read_reply) == (1, out)


def test_a_request_without_the_magic_is_refused() -> None:
    with pytest.raises(ValueError, match="not a fast-path request"):
        _roundtrip(b"POST / HTTP/1.1\r\n\r\n", fastpath.read_request)


def test_a_truncated_message_is_a_dropped_connection() -> None:
    whole = fastpath.encode_request("calico", {"CNI_COMMAND": "DEL"}, b"{}")
    with pytest.raises(ConnectionError):
        _roundtrip(whole[:-1], fastpath.read_request)


def test_an_oversized_field_is_refused_before_reading_it() -> None:
    with pytest.raises(ValueError, match="too large"):
        _roundtrip(fastpath.MAGIC + (fastpath.MAX_FIELD + 1).to_bytes(4, "big"), fastpath.read_request)


def test_version_reply_is_what_json_would_write() -> None:
    assert json.loads(VERSION_REPLY) == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert json.dumps(json.loads(VERSION_REPLY)) == VERSION_REPLY


@pytest.mark.parametrize("conf, env, expected", [
    (b'{"cniVersion": "1.0.0", "name": "n", "type": "calico"}', {}, ("auto", fastpath.DEFAULT_SOCKET, 60.0)),
    (b'{"name": "n"}', {"CALICO_CNI_SOCKET": "/run/x.sock", "CALICO_CNI_FAST_PATH": "only"},
     ("only", "/run/x.sock", 60.0)),
    (b'{"fast_path": "off", "fast_path_socket": "/a.sock", "fast_path_timeout": 3}',
     {"CALICO_CNI_SOCKET": "/b.sock"}, ("off", "/a.sock", 3.0)),
    (b'{"fast_path": "sometimes"}', {}, ("auto", fastpath.DEFAULT_SOCKET, 60.0)),
    (b'{"fast_path_timeout": "soon"}', {}, ("auto", fastpath.DEFAULT_SOCKET, 60.0)),
    (b'{"fast_path": ', {"CALICO_CNI_FAST_PATH": "off"}, ("off", fastpath.DEFAULT_SOCKET, 60.0)),
])
def test_settings_from_config_then_environment(conf: bytes, env: dict[str, str], expected: tuple) -> None:
    assert fastpath.settings(env, conf) == expected


def test_the_client_imports_no_more_than_it_needs() -> None:
    """Every module the client loads is paid on every CNI call: json, socket, re, typing, enum and
    the plugin stack must stay out until a call is handed to the standalone path."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
             "import cni_calico.cni.client; print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = set(subprocess.run([sys.executable, "-S", "-c", probe, str(REPO)], check=True,
                                capture_output=True, text=True).stdout.split())
    assert "cni_calico.cni.fastpath" in loaded
    heavy = {"json", "socket", "re", "typing", "enum", "selectors", "struct", "base64", "cni_calico.cni.skel",
             "pydantic", "netaddr", "pyroute2", "etcd3"}
    assert not loaded & heavy, f"the client loads {sorted(loaded & heavy)}"


def test_the_callers_netns_descriptor_travels_with_the_request(tmp_path: Path) -> None:
    """The client opens CNI_NETNS in its own mount namespace and attaches the descriptor; the
    agent gets the very file the caller opened (here /proc/self/ns/net, which any user may open)."""
    request = fastpath.encode_request("calico", {"CNI_NETNS": "/proc/self/ns/net"}, b"{}")
    left, right = socket.socketpair()
    with left, right:
        fastpath._send_request(left, request, "/proc/self/ns/net")
        left.shutdown(socket.SHUT_WR)
        fds: list[int] = []
        _, env, _ = fastpath.read_request(right, fds)
    try:
        assert env == {"CNI_NETNS": "/proc/self/ns/net"} and len(fds) == 1
        here, there = os.stat("/proc/self/ns/net"), os.fstat(fds[0])
        assert (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
    finally:
        for fd in fds:
            os.close(fd)
    # A path the client cannot open goes without a descriptor (the agent looks at the path).
    for netns in ("", str(tmp_path / "missing")):
        left, right = socket.socketpair()
        with left, right:
            fastpath._send_request(left, request, netns)
            left.shutdown(socket.SHUT_WR)
            fds = []
            assert fastpath.read_request(right, fds)[0] == "calico" and fds == []
