"""CNI dispatcher: the only module that touches the process environment, stdin, stdout or exit.

`run()` takes all its I/O as arguments so tests drive it with dicts and StringIO;
`main()` binds it to the real process. Only the standard library (and `logs`, which uses only
the standard library) is imported here: VERSION and every input error are answered before any
plugin module is loaded.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field, replace
from typing import IO, Any, Callable, Mapping, Protocol

from .. import logs
from ..errors import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    CniError,
)
from .netns_path import NetnsPath
from .netns_path import inspect as inspect_netns
from .versions import LATEST_VERSION, SUPPORTED_VERSIONS, VERSION_REPLY

# Environment each command needs (CNI spec 1.1.0, "Parameters" per operation).
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "STATUS": (),
    "GC": (),
}
# The first spec version that defines each command.
MIN_VERSION = {"ADD": "0.1.0", "DEL": "0.1.0", "CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}

_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
MAX_IFNAME = 15

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CmdArgs:
    """One CNI invocation, decoded and validated."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: dict[str, str]  # CNI_ARGS as K=V pairs
    path: tuple[str, ...]  # CNI_PATH directories
    stdin_data: bytes
    config: dict[str, Any]  # the decoded network configuration
    env: Mapping[str, str] = field(default_factory=dict)  # the whole environment, for delegation

    @property
    def cni_version(self) -> str:
        return str(self.config.get("cniVersion") or "0.1.0")


class Handlers(Protocol):
    """What a plugin implements; each returns the JSON object to print, or None."""

    def add(self, args: CmdArgs) -> dict[str, Any]: ...
    def delete(self, args: CmdArgs) -> None: ...
    def check(self, args: CmdArgs) -> None: ...
    def status(self, args: CmdArgs) -> None: ...
    def gc(self, args: CmdArgs) -> None: ...


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def parse_cni_args(raw: str) -> dict[str, str]:
    """Parse `K=V;K=V`; a pair without `=` is an invalid environment."""
    out: dict[str, str] = {}
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: invalid pair {pair!r}", "expected K=V;K=V")
        out[key] = value
    return out


def _validate_ifname(ifname: str) -> None:
    if len(ifname) > MAX_IFNAME:
        raise CniError(INVALID_ENVIRONMENT, f"interface name {ifname!r} is too long", "at most 15 characters")
    if ifname in (".", "..") or any(c in "/:" or c.isspace() for c in ifname):
        raise CniError(INVALID_ENVIRONMENT, f"invalid interface name {ifname!r}",
                       "no '/', ':' or whitespace, and not '.' or '..'")


def _cmd_args(command: str, env: Mapping[str, str], stdin_data: bytes, config: dict[str, Any]) -> CmdArgs:
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not _CONTAINER_ID.match(container_id):
        raise CniError(INVALID_ENVIRONMENT, f"invalid characters in CNI_CONTAINERID {container_id!r}")
    ifname = env.get("CNI_IFNAME", "")
    if ifname:
        _validate_ifname(ifname)
    return CmdArgs(
        command=command,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        stdin_data=stdin_data,
        config=config,
        env=dict(env),
    )


def _checked_netns(args: CmdArgs) -> CmdArgs:
    """Refuse a CNI_NETNS that is the plugin's own namespace (as the CNI library does: acting on it
    would configure or delete the host's own interfaces) or, to ADD and CHECK, one that is no
    network namespace at all. DEL goes on without it: the host side is cleaned up as when the
    namespace is gone, so a runtime can always remove the attachment."""
    if not args.netns:
        return args
    kind = inspect_netns(args.netns)
    if kind is NetnsPath.OWN:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {args.netns} is the plugin's own network namespace",
                       "a container's network namespace must not be the host's")
    if kind is NetnsPath.NOT_A_NETNS:
        if args.command == "DEL":
            log.warning("CNI_NETNS %s is not a network namespace: cleaning up the host side only", args.netns)
            return replace(args, netns="")
        if args.command in ("ADD", "CHECK"):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {args.netns} is not a network namespace",
                           "expected a path like /var/run/netns/<name> or /proc/<pid>/ns/net")
    return args


def _read_stdin(stdin: IO[Any]) -> bytes:
    try:
        data = stdin.read()
    except (OSError, ValueError) as exc:
        raise CniError(IO_FAILURE, f"error reading network configuration from stdin: {exc}") from exc
    return data.encode() if isinstance(data, str) else data


def _decode_config(data: bytes) -> dict[str, Any]:
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODING_FAILURE, f"error decoding network configuration: {exc}") from exc
    if not isinstance(config, dict):
        raise CniError(DECODING_FAILURE, "error decoding network configuration: not a JSON object")
    version = config.get("cniVersion", "0.1.0")
    if not isinstance(version, str):
        raise CniError(DECODING_FAILURE, "error decoding network configuration: cniVersion must be a string")
    return config


def _check_version(command: str, version: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f'config is "{version}", plugin supports {list(SUPPORTED_VERSIONS)}')
    if version_tuple(version) < version_tuple(MIN_VERSION[command]):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f'config is "{version}", {command} needs {MIN_VERSION[command]} or later')


def _validate_network_name(config: dict[str, Any]) -> None:
    name = config.get("name")
    if not name:
        raise CniError(INVALID_NETWORK_CONFIG, "missing network name")
    if not isinstance(name, str) or not _NETWORK_NAME.match(name):
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid characters found in network name {name!r}")


def run(load_handlers: Callable[[], Handlers], env: Mapping[str, str], stdin: IO[Any], stdout: IO[str],
        plugin: str = "") -> int:
    """Serve one CNI call; returns the exit status. Never raises. Every line logged meanwhile
    names the call, and the call ends with one INFO line: what it did, how long it took."""
    command = env.get("CNI_COMMAND", "")
    if command == "VERSION":
        stdout.write(VERSION_REPLY)
        return 0
    started = time.monotonic()
    call = logs.begin_call(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_ARGS", ""))
    try:
        status, outcome = _serve(load_handlers, command, env, stdin, stdout)
        took = 1000 * (time.monotonic() - started)
        name = f"{plugin} {command}" if plugin else command or "call"
        log.info("%s %s in %.1f ms%s", name, "finished" if status == 0 else "failed", took, outcome)
        return status
    finally:
        logs.end_call(call)


def _serve(load_handlers: Callable[[], Handlers], command: str, env: Mapping[str, str], stdin: IO[Any],
           stdout: IO[str]) -> tuple[int, str]:
    """The call itself: (exit status, what the summary line says after the time taken)."""
    reply_version = LATEST_VERSION
    try:
        if not command:
            raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
        if command not in REQUIRED_ENV:
            raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}",
                           "expected ADD, DEL, CHECK, STATUS, GC or VERSION")
        missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
        if missing:
            raise CniError(INVALID_ENVIRONMENT, f"required env variables [{', '.join(missing)}] missing")
        stdin_data = _read_stdin(stdin)
        config = _decode_config(stdin_data)
        reply_version = config.get("cniVersion", "0.1.0")
        if reply_version not in SUPPORTED_VERSIONS:
            reply_version = LATEST_VERSION
        _configure_logs(config)
        log.debug("network %r, CNI_NETNS=%s CNI_IFNAME=%s CNI_ARGS=%s", config.get("name"),
                  env.get("CNI_NETNS", ""), env.get("CNI_IFNAME", ""), env.get("CNI_ARGS", ""))
        _check_version(command, config.get("cniVersion", "0.1.0"))
        _validate_network_name(config)
        args = _checked_netns(_cmd_args(command, env, stdin_data, config))
        handlers = load_handlers()
        result = _dispatch(handlers, args)
        if result is not None:
            stdout.write(json.dumps(result))  # encode fully first: a failure must not leave half a result
        addresses = result_addresses(result)
        return 0, f": {', '.join(addresses)}" if addresses else ""
    except CniError as err:
        json.dump(err.to_dict(reply_version), stdout)
        return 1, f": {err.msg}" + (f": {err.details}" if err.details else "") + f" (code {err.code})"
    except Exception as exc:  # the last line of defence: a CNI error, never a traceback on stdout
        log.exception("unexpected failure")
        json.dump(CniError(INTERNAL, f"internal error: {exc}").to_dict(reply_version), stdout)
        return 1, f": internal error: {exc} (code {INTERNAL})"


def _configure_logs(config: dict[str, Any]) -> None:
    try:
        logs.configure_call(config)
    except ValueError as exc:
        raise CniError(INVALID_NETWORK_CONFIG, str(exc)) from None


def result_addresses(result: Mapping[str, Any] | None) -> list[str]:
    """The addresses of an ADD result in any cniVersion's shape (`ips`, or 0.1/0.2's `ip4`/`ip6`)."""
    if not isinstance(result, Mapping):
        return []
    found = [ip.get("address") for ip in result.get("ips") or () if isinstance(ip, Mapping)]
    found += [result[key].get("ip") for key in ("ip4", "ip6") if isinstance(result.get(key), Mapping)]
    return [str(address) for address in found if address]


def _dispatch(handlers: Handlers, args: CmdArgs) -> dict[str, Any] | None:
    if args.command == "ADD":
        return handlers.add(args)
    if args.command == "DEL":
        handlers.delete(args)
    elif args.command == "CHECK":
        handlers.check(args)
    elif args.command == "STATUS":
        handlers.status(args)
    elif args.command == "GC":
        handlers.gc(args)
    return None


def main(load_handlers: Callable[[], Handlers], stdin: IO[Any] | None = None, plugin: str = "") -> None:
    """Process entry point for a CNI plugin executable (`stdin`: already read by the fast-path client)."""
    import os

    status = run(load_handlers, os.environ, stdin if stdin is not None else sys.stdin.buffer, sys.stdout, plugin)
    sys.stdout.flush()
    # The answer is out and every netlink socket and transaction is closed; what is left is the
    # interpreter's teardown (the etcd channel, grpc's threads, every module), which costs tens of
    # ms. Flush the logs and leave.
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)
