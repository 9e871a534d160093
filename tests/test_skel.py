"""The CNI dispatcher (cni_calico.cni.skel), driven with dicts and in-memory streams.

The handlers here are a small recording fake: the thing under test is the dispatcher.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cni_calico.cni import skel
from cni_calico.errors import CniError

CONFIG = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico"}
ENV = {
    "CNI_CONTAINERID": "c0ffee-1",
    "CNI_NETNS": "/var/run/netns/c1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}
ADD_RESULT = {"cniVersion": "1.0.0", "ips": [{"address": "10.65.1.5/32"}], "dns": {}}


class Recorder:
    """Handlers that record each call and return or raise what they are told to."""

    def __init__(self, raises: BaseException | None = None, result: Any = ADD_RESULT) -> None:
        self.calls: list[tuple[str, skel.CmdArgs]] = []
        self.raises = raises
        self.result = result

    def _record(self, name: str, args: skel.CmdArgs) -> None:
        self.calls.append((name, args))
        if self.raises is not None:
            raise self.raises

    def add(self, args: skel.CmdArgs) -> dict[str, Any]:
        self._record("add", args)
        return self.result

    def delete(self, args: skel.CmdArgs) -> None:
        self._record("delete", args)

    def check(self, args: skel.CmdArgs) -> None:
        self._record("check", args)

    def status(self, args: skel.CmdArgs) -> None:
        self._record("status", args)

    def gc(self, args: skel.CmdArgs) -> None:
        self._record("gc", args)


class Call:
    """One skel.run: exit status, raw stdout, decoded stdout, and the handlers it used."""

    def __init__(self, command: str | None, config: Any = CONFIG, *, env: dict[str, str] | None = None,
                 drop: tuple[str, ...] = (), stdin: Any = None, handlers: Recorder | None = None) -> None:
        full_env = {**ENV, **(env or {})}
        if command is not None:
            full_env["CNI_COMMAND"] = command
        for name in drop:
            full_env.pop(name, None)
        if stdin is None:
            data = config if isinstance(config, (bytes, str)) else json.dumps(config)
            stdin = io.BytesIO(data.encode() if isinstance(data, str) else data)
        self.handlers = handlers or Recorder()
        self.loads = 0
        out = io.StringIO()
        self.status = skel.run(self._load, full_env, stdin, out)
        self.stdout = out.getvalue()
        self.json = json.loads(self.stdout) if self.stdout else None

    def _load(self) -> Recorder:
        self.loads += 1
        return self.handlers

    @property
    def called(self) -> list[str]:
        return [name for name, _ in self.handlers.calls]


def assert_error(call: Call, code: int, *in_msg: str, version: str = skel.LATEST_VERSION) -> None:
    """stdout holds exactly one CNI error object; exit 1; no handler ran."""
    assert call.status == 1, call.stdout
    assert json.loads(call.stdout) == call.json  # a single JSON document, nothing else
    assert call.json["code"] == code, call.json
    assert call.json["cniVersion"] == version
    assert isinstance(call.json["msg"], str) and call.json["msg"]
    assert set(call.json) <= {"cniVersion", "code", "msg", "details"}
    for text in in_msg:
        assert text in call.json["msg"], call.json


class UnreadableStream(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise OSError(5, "Input/output error")

    def readable(self) -> bool:
        return True


# ---------------------------------------------------------------- environment

@pytest.mark.parametrize("env", [{}, {"CNI_COMMAND": ""}])
def test_missing_command_is_4(env):
    call = Call(None, env=env)
    assert_error(call, 4, "CNI_COMMAND")
    assert call.loads == 0


@pytest.mark.parametrize("command", ["add", "Delete", "STOP", "VERSIONS", " ADD"])
def test_unknown_command_is_4(command):
    call = Call(command)
    assert_error(call, 4, "unknown CNI_COMMAND")
    assert call.loads == 0


@pytest.mark.parametrize("command, drop, missing", [
    ("ADD", ("CNI_CONTAINERID",), "[CNI_CONTAINERID]"),
    ("ADD", ("CNI_NETNS",), "[CNI_NETNS]"),
    ("ADD", ("CNI_IFNAME",), "[CNI_IFNAME]"),
    ("ADD", ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"), "[CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME]"),
    ("ADD", ("CNI_NETNS", "CNI_IFNAME"), "[CNI_NETNS, CNI_IFNAME]"),
    ("CHECK", ("CNI_NETNS",), "[CNI_NETNS]"),
    ("DEL", ("CNI_CONTAINERID",), "[CNI_CONTAINERID]"),
    ("DEL", ("CNI_IFNAME",), "[CNI_IFNAME]"),
])
def test_missing_env_is_4_naming_the_variables(command, drop, missing):
    call = Call(command, drop=drop)
    assert_error(call, 4, missing)
    assert call.called == []


def test_an_empty_variable_counts_as_missing():
    call = Call("ADD", env={"CNI_NETNS": ""})
    assert_error(call, 4, "[CNI_NETNS]")


@pytest.mark.parametrize("netns", [None, ""])
def test_del_without_netns_is_fine(netns):
    call = Call("DEL", drop=("CNI_NETNS",)) if netns is None else Call("DEL", env={"CNI_NETNS": netns})
    assert call.status == 0
    assert call.stdout == ""
    assert call.called == ["delete"]
    assert call.handlers.calls[0][1].netns == ""


@pytest.mark.parametrize("command", ["STATUS", "GC"])
def test_status_and_gc_need_no_container_env(command):
    call = Call(command, {**CONFIG, "cniVersion": "1.1.0"}, drop=("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"))
    assert call.status == 0
    assert call.stdout == ""
    assert call.called == [command.lower()]


@pytest.mark.parametrize("container_id", ["-abc", "_abc", ".abc", "abc def", "abc/def", "abc;rm", "abc$", "é1"])
def test_invalid_container_id_is_4(container_id):
    call = Call("ADD", env={"CNI_CONTAINERID": container_id})
    assert_error(call, 4, "CNI_CONTAINERID", version="1.0.0")
    assert call.called == []


@pytest.mark.parametrize("container_id", ["a", "0123456789abcdef" * 4, "podman-c1.net_0", "ABC-def.1_2"])
def test_valid_container_ids(container_id):
    call = Call("ADD", env={"CNI_CONTAINERID": container_id})
    assert call.status == 0
    assert call.handlers.calls[0][1].container_id == container_id


@pytest.mark.parametrize("ifname, text", [
    ("a" * 16, "too long"),
    ("averyveryverylong0", "too long"),
    ("eth/0", "invalid interface name"),
    ("eth:0", "invalid interface name"),
    ("eth 0", "invalid interface name"),
    ("eth\t0", "invalid interface name"),
    (".", "invalid interface name"),
    ("..", "invalid interface name"),
])
def test_invalid_ifname_is_4(ifname, text):
    call = Call("ADD", env={"CNI_IFNAME": ifname})
    assert_error(call, 4, text, version="1.0.0")
    assert call.called == []


@pytest.mark.parametrize("ifname", ["eth0", "a" * 15, "net1.100", "e-th_0"])
def test_valid_ifnames(ifname):
    call = Call("ADD", env={"CNI_IFNAME": ifname})
    assert call.status == 0
    assert call.handlers.calls[0][1].ifname == ifname


@pytest.mark.parametrize("cni_args", ["K8S_POD_NAME", "A=1;B", "=value", "A=1;;=2"])
def test_malformed_cni_args_is_4(cni_args):
    call = Call("ADD", env={"CNI_ARGS": cni_args})
    assert_error(call, 4, "CNI_ARGS", version="1.0.0")
    assert call.called == []


@pytest.mark.parametrize("cni_args, parsed", [
    ("", {}),
    ("IgnoreUnknown=1", {"IgnoreUnknown": "1"}),
    ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx",
     {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "nginx"}),
    ("IP=10.65.1.7;", {"IP": "10.65.1.7"}),
    ("A=;B=x=y", {"A": "", "B": "x=y"}),
])
def test_cni_args_are_parsed_into_args(cni_args, parsed):
    call = Call("ADD", env={"CNI_ARGS": cni_args})
    assert call.status == 0
    assert call.handlers.calls[0][1].args == parsed


def test_cmd_args_carry_the_whole_invocation():
    raw = json.dumps(CONFIG).encode()
    call = Call("ADD", raw, env={"CNI_ARGS": "K=V"})
    args = call.handlers.calls[0][1]
    assert args.command == "ADD"
    assert args.container_id == "c0ffee-1"
    assert args.netns == "/var/run/netns/c1"
    assert args.ifname == "eth0"
    assert args.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert args.stdin_data == raw
    assert args.config == CONFIG
    assert args.cni_version == "1.0.0"
    assert args.env["CNI_COMMAND"] == "ADD"


# ---------------------------------------------------------------- stdin and config

def test_unreadable_stdin_is_5():
    call = Call("ADD", stdin=UnreadableStream())
    assert_error(call, 5, "stdin")
    assert call.called == []


@pytest.mark.parametrize("data", [b"", b"{", b"{'name': 'x'}", b'{"name": "x",}', b"\xff\xfe\x00garbage", "not json"])
def test_bad_json_is_6(data):
    call = Call("ADD", data)
    assert_error(call, 6, "error decoding network configuration")
    assert call.called == []


@pytest.mark.parametrize("data", ["[]", "[1, 2]", '"a string"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_6(data):
    call = Call("ADD", data)
    assert_error(call, 6, "not a JSON object")


@pytest.mark.parametrize("version", [1, 1.0, None, ["1.0.0"]])
def test_cni_version_that_is_not_a_string_is_6(version):
    call = Call("ADD", {**CONFIG, "cniVersion": version})
    assert_error(call, 6, "cniVersion")


def test_text_stdin_is_accepted():
    call = Call("ADD", stdin=io.StringIO(json.dumps(CONFIG)))
    assert call.status == 0
    assert call.handlers.calls[0][1].stdin_data == json.dumps(CONFIG).encode()


# ---------------------------------------------------------------- versions

@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
@pytest.mark.parametrize("version", ["9.9.9", "0.0.1", "1.2.0", "1.0", "", "latest"])
def test_unsupported_version_is_1(command, version):
    call = Call(command, {**CONFIG, "cniVersion": version})
    assert_error(call, 1, "incompatible CNI versions")
    assert version in call.json["details"]
    assert call.called == []


@pytest.mark.parametrize("command, version", [
    ("CHECK", "0.1.0"), ("CHECK", "0.2.0"), ("CHECK", "0.3.0"), ("CHECK", "0.3.1"),
    ("STATUS", "0.4.0"), ("STATUS", "1.0.0"),
    ("GC", "0.4.0"), ("GC", "1.0.0"),
])
def test_command_newer_than_the_config_version_is_1(command, version):
    call = Call(command, {**CONFIG, "cniVersion": version})
    assert_error(call, 1, f"does not allow {command}", version=version)
    assert call.called == []


def test_check_without_cni_version_is_1():
    config = {k: v for k, v in CONFIG.items() if k != "cniVersion"}
    call = Call("CHECK", config)
    assert_error(call, 1, "does not allow CHECK", version="0.1.0")


@pytest.mark.parametrize("command, version, handler", [
    ("ADD", "0.1.0", "add"), ("ADD", "0.2.0", "add"), ("ADD", "0.3.1", "add"), ("ADD", "1.1.0", "add"),
    ("DEL", "0.1.0", "delete"), ("DEL", "1.1.0", "delete"),
    ("CHECK", "0.4.0", "check"), ("CHECK", "1.0.0", "check"), ("CHECK", "1.1.0", "check"),
    ("STATUS", "1.1.0", "status"), ("GC", "1.1.0", "gc"),
])
def test_each_command_reaches_its_handler(command, version, handler):
    call = Call(command, {**CONFIG, "cniVersion": version})
    assert call.status == 0, call.stdout
    assert call.called == [handler]
    assert call.loads == 1


def test_add_without_cni_version_is_a_010_config():
    config = {k: v for k, v in CONFIG.items() if k != "cniVersion"}
    call = Call("ADD", config)
    assert call.status == 0
    assert call.handlers.calls[0][1].cni_version == "0.1.0"


@pytest.mark.parametrize("env, stdin", [
    ({}, None),
    ({"CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": ""}, None),  # podman's dummy env
    ({}, UnreadableStream()),
    ({}, io.BytesIO(b"not json")),
])
def test_version_prints_supported_versions_without_loading_the_plugin(env, stdin):
    def load() -> Recorder:
        raise AssertionError("VERSION must not load the plugin")

    out = io.StringIO()
    status = skel.run(load, {**ENV, **env, "CNI_COMMAND": "VERSION"}, stdin or io.BytesIO(b"{}"), out)
    assert status == 0
    assert json.loads(out.getvalue()) == {
        "cniVersion": "1.1.0",
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


# ---------------------------------------------------------------- network name

@pytest.mark.parametrize("config", [
    {"cniVersion": "1.0.0", "type": "calico"},
    {"cniVersion": "1.0.0", "name": "", "type": "calico"},
    {"cniVersion": "1.0.0", "name": None, "type": "calico"},
])
def test_missing_network_name_is_7(config):
    call = Call("ADD", config)
    assert_error(call, 7, "missing network name", version="1.0.0")
    assert call.called == []


@pytest.mark.parametrize("name", ["-net", "my net", "net/1", 42, ["net"]])
def test_invalid_network_name_is_7(name):
    call = Call("ADD", {**CONFIG, "name": name})
    assert_error(call, 7, "network name", version="1.0.0")


# ---------------------------------------------------------------- the error object

@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_error_echoes_the_config_version(version):
    call = Call("ADD", {"cniVersion": version, "type": "calico"})  # missing name: 7
    assert_error(call, 7, version=version)


@pytest.mark.parametrize("version", ["9.9.9", "0.0.1"])
def test_error_for_an_unsupported_config_version_uses_the_latest(version):
    call = Call("ADD", {"cniVersion": version, "name": "n"})
    assert_error(call, 1, version=skel.LATEST_VERSION)


def test_errors_before_the_config_is_read_use_the_latest_version():
    call = Call("ADD", {**CONFIG, "cniVersion": "0.3.1"}, drop=("CNI_NETNS",))
    assert_error(call, 4, version=skel.LATEST_VERSION)


def test_error_details_are_passed_through():
    call = Call("ADD", handlers=Recorder(raises=CniError(102, "pool exhausted", "pool 10.0.0.0/24 is full")))
    assert call.json == {"cniVersion": "1.0.0", "code": 102, "msg": "pool exhausted",
                         "details": "pool 10.0.0.0/24 is full"}


def test_error_without_details_has_no_details_key():
    call = Call("ADD", handlers=Recorder(raises=CniError(11, "etcd unreachable")))
    assert call.json == {"cniVersion": "1.0.0", "code": 11, "msg": "etcd unreachable"}
    assert call.status == 1


@pytest.mark.parametrize("command, version", [
    ("ADD", "1.0.0"), ("DEL", "0.3.1"), ("CHECK", "0.4.0"), ("STATUS", "1.1.0"), ("GC", "1.1.0"),
])
@pytest.mark.parametrize("code", [3, 11, 50, 107])
def test_handler_cni_error_code_passes_through(command, version, code):
    call = Call(command, {**CONFIG, "cniVersion": version},
                handlers=Recorder(raises=CniError(code, "handler says no")))
    assert_error(call, code, "handler says no", version=version)
    assert call.called == [command.lower() if command != "DEL" else "delete"]


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("missing"), ZeroDivisionError("x")])
def test_handler_unexpected_exception_is_100(command, exc):
    call = Call(command, handlers=Recorder(raises=exc))
    assert_error(call, 100, "internal error", version="1.0.0")
    assert "Traceback" not in call.stdout


def test_failure_loading_the_plugin_is_100():
    def load() -> Recorder:
        raise ImportError("No module named 'pyroute2'")

    out = io.StringIO()
    status = skel.run(load, {**ENV, "CNI_COMMAND": "ADD"}, io.BytesIO(json.dumps(CONFIG).encode()), out)
    assert status == 1
    reply = json.loads(out.getvalue())
    assert reply["code"] == 100
    assert "pyroute2" in reply["msg"]


def test_an_unprintable_add_result_is_one_error_object():
    # The result is only written once it is fully encoded: no half-written JSON before the error.
    call = Call("ADD", handlers=Recorder(result={"cniVersion": "1.0.0", "ips": [{"address": object()}]}))
    assert_error(call, 100, version="1.0.0")


# ---------------------------------------------------------------- success output

@pytest.mark.parametrize("result", [
    ADD_RESULT,
    {"cniVersion": "0.2.0", "ip4": {"ip": "10.65.1.5/32"}, "dns": {}},
    {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}], "ips": [], "dns": {"nameservers": ["10.0.0.10"]}},
])
def test_add_prints_the_result_as_json(result):
    call = Call("ADD", handlers=Recorder(result=result))
    assert call.status == 0
    assert call.json == result
    assert json.loads(call.stdout) == result


@pytest.mark.parametrize("command, version",
                         [("DEL", "1.0.0"), ("CHECK", "1.0.0"), ("STATUS", "1.1.0"), ("GC", "1.1.0")])
def test_other_commands_print_nothing_on_success(command, version):
    call = Call(command, {**CONFIG, "cniVersion": version})
    assert call.status == 0
    assert call.stdout == ""
    assert len(call.called) == 1


def test_run_never_raises_and_loads_handlers_once_per_call():
    call = Call("ADD")
    assert call.loads == 1
    assert call.called == ["add"]
