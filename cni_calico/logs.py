"""Logging for the CNI plugins and calico-node: which call a line is about, how much is written,
and where it goes.

Every line logged while a CNI call runs ends with the call's identity in Calico's field names,
`Command=ADD ContainerID="..." Namespace="..." Pod="..."` (the last two for pods). The identity is
a context variable set by `skel.run` around the call, so calico-node's workers, which serve
several calls at once, each label their own lines; a thread started by a call carries it when its
target is wrapped with `in_this_call`.

Our loggers (`cni_calico.*`) log at the configured level; every other library's (pyroute2,
asyncio, grpc, ...) stays at WARNING unless `log_level_libraries` asks for more.

Standard library only, and little of it: skel imports this before anything else is known. The
log file's writer (`logfile`) is imported only when a file is configured.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Callable, Mapping

# Calico's level names (logrus) that Python spells differently.
_ALIASES = {"warn": "WARNING", "fatal": "CRITICAL", "panic": "CRITICAL"}
LEVELS = ("debug", "info", "warning", "warn", "error", "critical", "fatal", "panic")
PACKAGE = "cni_calico"  # the loggers that take the configured level
_FORMAT = "%(asctime)s.%(msecs)03d [%(levelname)s][%(process)d] %(name)s %(lineno)d: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# Calico's defaults for the CNI plugin's log file (lumberjack's MaxSize, MaxAge, MaxBackups).
DEFAULT_MAX_SIZE_MB = 100
DEFAULT_MAX_AGE_DAYS = 30
DEFAULT_MAX_COUNT = 10

_handler: logging.Handler | None = None
_kept = False  # set in a serving process: per-call settings must not move its logs
_call: contextvars.ContextVar[str] = contextvars.ContextVar("cni_call", default="")


# ------------------------------------------------------------------ settings (pure)

def parse_level(name: str) -> int:
    """A level name (Calico's or Python's, any case) to its number; ValueError if unknown."""
    if not isinstance(name, str) or name.lower() not in LEVELS:
        raise ValueError(f"unknown log level {name!r}")
    return int(getattr(logging, _ALIASES.get(name.lower(), name.upper())))


class LogSettings:  # noqa: PLW1641 (mutable and compared by value: deliberately not hashable)
    """Where and how much a process logs. A plain class: a dataclass costs ~0.7 ms to define, paid
    by every CNI call (skel imports this module first thing)."""

    # In the constructor's order, which __repr__ follows.
    __slots__ = ("level", "libraries_level", "file_path", "max_size_mb", "max_age_days", "max_count")  # noqa: RUF023

    def __init__(self, level: int = logging.WARNING, libraries_level: int | None = None, file_path: str | None = None,
                 max_size_mb: int = DEFAULT_MAX_SIZE_MB, max_age_days: int = DEFAULT_MAX_AGE_DAYS,
                 max_count: int = DEFAULT_MAX_COUNT) -> None:
        self.level = level
        self.libraries_level = libraries_level  # None: WARNING, or `level` when that is higher
        self.file_path = file_path
        self.max_size_mb = max_size_mb  # 0: never rotated here (calico-node: logrotate's job)
        self.max_age_days = max_age_days
        self.max_count = max_count

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogSettings) and self._values() == other._values()

    def __repr__(self) -> str:
        return "LogSettings(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def effective_libraries_level(self) -> int:
        return self.libraries_level if self.libraries_level is not None else max(self.level, logging.WARNING)


def _whole_number(config: Mapping[str, Any], key: str, default: int) -> int:
    """Calico's rule for the rotation keys: absent or 0 means the default."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number, not {value!r}")
    return value or default


def settings_from_netconf(config: Mapping[str, Any]) -> LogSettings:
    """The log settings of a network configuration; ValueError names a bad key."""
    try:
        level = parse_level(config.get("log_level") or "warning")
    except ValueError:
        raise ValueError(f"unknown log_level {config.get('log_level')!r}") from None
    libraries = config.get("log_level_libraries")
    try:
        libraries_level = parse_level(libraries) if libraries else None
    except ValueError:
        raise ValueError(f"unknown log_level_libraries {libraries!r}") from None
    path = config.get("log_file_path") or None
    if path is not None and not isinstance(path, str):
        raise ValueError(f"log_file_path must be a string, not {path!r}")
    return LogSettings(level=level, libraries_level=libraries_level, file_path=path,
                       max_size_mb=_whole_number(config, "log_file_max_size", DEFAULT_MAX_SIZE_MB),
                       max_age_days=_whole_number(config, "log_file_max_age", DEFAULT_MAX_AGE_DAYS),
                       max_count=_whole_number(config, "log_file_max_count", DEFAULT_MAX_COUNT))


# ------------------------------------------------------------------ the call's identity

def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def call_fields(command: str, container_id: str, cni_args: str) -> str:
    """The suffix naming a call: ` Command=ADD ContainerID="..."`, and `Namespace="..." Pod="..."`
    when CNI_ARGS names a pod. Read leniently: a malformed CNI_ARGS is the call's error to report,
    not a reason to log without the identity."""
    pairs = dict(pair.partition("=")[::2] for pair in cni_args.split(";") if pair)
    fields = f" Command={command or '?'} ContainerID={_quoted(container_id)}"
    namespace, pod = pairs.get("K8S_POD_NAMESPACE", ""), pairs.get("K8S_POD_NAME", "")
    if namespace and pod:
        fields += f" Namespace={_quoted(namespace)} Pod={_quoted(pod)}"
    return fields


def begin_call(command: str, container_id: str, cni_args: str) -> contextvars.Token[str]:
    """Label what this thread logs from now on; hand the token to `end_call`."""
    return _call.set(call_fields(command, container_id, cni_args))


def end_call(token: contextvars.Token[str]) -> None:
    _call.reset(token)


def in_this_call(target: Callable[..., Any]) -> Callable[..., Any]:
    """`target`, to run on another thread as part of the current call (threads start with an
    empty context: without this their lines would not name the call)."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(target, *args, **kwargs)


class CallFormatter(logging.Formatter):
    """Calico's line layout, the call's identity after the message (before any traceback)."""

    def __init__(self) -> None:
        super().__init__(_FORMAT, _DATE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's name
        return super().formatMessage(record) + _call.get()


# ------------------------------------------------------------------ destinations

def keep_process_logging() -> None:
    global _kept  # noqa: PLW0603 (process-wide, as logging's own configuration is)
    _kept = True


def configure_call(config: Mapping[str, Any]) -> None:
    """Route this process's logs as a call's network configuration asks (a process serving
    calls keeps its own settings). ValueError names a bad key."""
    settings = settings_from_netconf(config)
    if not _kept:
        configure(settings)


def configure(settings: LogSettings) -> None:
    """Route this process's logs; calling it again replaces the previous destination."""
    global _handler  # noqa: PLW0603 (process-wide, as logging's own configuration is)
    if _kept:
        return
    root = logging.getLogger()
    root.setLevel(settings.effective_libraries_level)
    logging.getLogger(PACKAGE).setLevel(settings.level)
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    _handler = _open(settings)
    _handler.setFormatter(CallFormatter())
    root.addHandler(_handler)


def _open(settings: LogSettings) -> logging.Handler:
    if not settings.file_path:
        return logging.StreamHandler()
    from .logfile import SharedLogFile

    try:
        return SharedLogFile(settings.file_path, max_bytes=settings.max_size_mb * 1024 * 1024,
                             max_age_days=settings.max_age_days, max_count=settings.max_count)
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write the log file %s: %s; logging to stderr",
                                            settings.file_path, exc)
        return logging.StreamHandler()
