"""calico-kube-controllers' settings, from Calico's environment variables. Pure.

Calico's names where Calico has them (`ENABLED_CONTROLLERS`, `LOG_LEVEL`, `RECONCILER_PERIOD`,
`COMPACTION_PERIOD`, `HEALTH_ENABLED`, `KUBECONFIG`, `ETCD_*`); durations in Go's notation
(`5m`, `90s`, `1h30m`, `0`). What Calico keeps in its KubeControllersConfiguration resource
(the metrics port, the leak grace period) is read from variables of our own naming, as is the
leader election Calico does not have.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping

from .. import logs
from ..datastore import EtcdSettings

CONTROLLERS = ("policy", "namespace", "serviceaccount", "workloadendpoint", "node")
ALIASES = {"profile": "namespace"}  # Calico's older name for the namespace controller
DEFAULT_CONTROLLERS = ",".join(CONTROLLERS)


class ConfigError(ValueError):
    """A setting the controllers cannot start with; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    etcd: EtcdSettings
    kubeconfig: str | None  # None: in-cluster (the service account's token and CA)
    controllers: tuple[str, ...]
    log_level: int
    reconciler_period: float  # seconds between full reconciles of every controller
    compaction_period: float  # seconds between etcd compactions (0: never)
    health_enabled: bool
    metrics_host: str
    metrics_port: int  # 0: no HTTP server (no /metrics, no /liveness, /readiness)
    leak_grace_period: float  # an allocation whose pod is gone is released after this (0: never)
    leader_election: bool
    leader_ttl: int  # seconds without a keep-alive before another instance may take over
    identity: str  # who holds the leadership, as written in the election key


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds: `300ms`, `1.5h`, `2h45m`; `0` alone needs no unit.
    Negative durations are refused (no setting here means anything by them)."""
    value = text.strip()
    if value == "0":
        return 0.0
    if not value or value.startswith("-"):
        raise ValueError(f"invalid duration {text!r}")
    position, total = value.lstrip("+"), 0.0
    while position:
        match = _DURATION_PART.match(position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 5m, 1h30m")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = position[match.end():]
    return total


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid boolean {text!r}: expected true or false")


def parse_controllers(text: str) -> tuple[str, ...]:
    """`policy,namespace,...` in the order given, each once; Calico's alias `profile` is namespace."""
    out: list[str] = []
    for raw in text.split(","):
        name = ALIASES.get(raw.strip(), raw.strip())
        if not name:
            continue
        if name not in CONTROLLERS:
            raise ValueError(f"unknown controller {raw.strip()!r} (known: {', '.join(CONTROLLERS)})")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no controller enabled")
    return tuple(out)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"invalid port {text!r}: 0 (off) to 65535")
    return int(text)


def load(env: Mapping[str, str]) -> Settings:
    """The settings from the environment; ConfigError naming the first bad variable."""

    def read(name: str, default: str, parse):  # type: ignore[no-untyped-def]
        text = env.get(name, "")
        try:
            return parse(text if text != "" else default)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def ttl(text: str) -> int:
        seconds = parse_duration(text)
        if seconds < 2:
            raise ValueError(f"{text!r} is too short: at least 2s (etcd's shortest lease)")
        return round(seconds)

    return Settings(
        etcd=EtcdSettings.resolve(None, None, None, None, env),
        kubeconfig=env.get("KUBECONFIG") or None,
        controllers=read("ENABLED_CONTROLLERS", DEFAULT_CONTROLLERS, parse_controllers),
        log_level=read("LOG_LEVEL", "info", logs.parse_level),
        reconciler_period=read("RECONCILER_PERIOD", "5m", _positive_duration),
        compaction_period=read("COMPACTION_PERIOD", "10m", parse_duration),
        health_enabled=read("HEALTH_ENABLED", "true", parse_bool),
        metrics_host=env.get("PROMETHEUS_METRICS_HOST") or "127.0.0.1",
        metrics_port=read("PROMETHEUS_METRICS_PORT", "9094", _port),
        leak_grace_period=read("LEAK_GRACE_PERIOD", "15m", parse_duration),
        leader_election=read("LEADER_ELECTION", "true", parse_bool),
        leader_ttl=read("LEADER_ELECTION_TTL", "15s", ttl),
        identity=env.get("LEADER_ELECTION_ID") or f"{socket.gethostname()}-{os.getpid()}",
    )


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r}: must be longer than 0")
    return seconds
