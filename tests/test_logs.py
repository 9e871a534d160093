"""What a CNI call's log lines say (cni_calico.logs, and skel's summary line), in-process."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

from cni_calico import logs
from cni_calico.cni import skel

from .conftest import REPO
from .test_skel import ENV, Recorder

CONFIG = {"cniVersion": "1.0.0", "name": "net1", "type": "calico", "log_level": "info"}
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1"


class Lines(logging.Handler):
    """Every record that reaches the root logger, formatted as the log file would have it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.CallFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Lines]:
    """Capture what the root logger passes on; put the process's logging back afterwards."""
    root, ours = logging.getLogger(), logging.getLogger(logs.PACKAGE)
    saved = (root.level, ours.level, logs._handler)
    lines = Lines()
    root.addHandler(lines)
    try:
        yield lines
    finally:
        root.removeHandler(lines)
        if logs._handler is not None and logs._handler is not saved[2]:
            root.removeHandler(logs._handler)
            logs._handler.close()
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        logs._handler = saved[2]


def run(command: str, config: dict[str, Any] = CONFIG, handlers: Recorder | None = None,
        **env: str) -> tuple[int, str]:
    out = io.StringIO()
    status = skel.run(lambda: handlers or Recorder(), {**ENV, "CNI_COMMAND": command, **env},
                      io.BytesIO(json.dumps(config).encode()), out, "calico")
    return status, out.getvalue()


# ---------------------------------------------------------------- settings

def test_settings_default_to_calicos_rotation_and_warning() -> None:
    settings = logs.settings_from_netconf({"name": "n"})
    assert (settings.level, settings.file_path) == (logging.WARNING, None)
    assert (settings.max_size_mb, settings.max_age_days, settings.max_count) == (100, 30, 10)
    assert settings.effective_libraries_level == logging.WARNING


def test_settings_read_every_key_and_zero_means_the_default() -> None:
    settings = logs.settings_from_netconf({"log_level": "Debug", "log_file_path": "/var/log/calico/cni/cni.log",
                                           "log_file_max_size": 5, "log_file_max_age": 0, "log_file_max_count": 2,
                                           "log_level_libraries": "info"})
    assert settings == logs.LogSettings(level=logging.DEBUG, libraries_level=logging.INFO,
                                        file_path="/var/log/calico/cni/cni.log", max_size_mb=5, max_age_days=30,
                                        max_count=2)


@pytest.mark.parametrize("level, number", [("warn", logging.WARNING), ("fatal", logging.CRITICAL),
                                           ("panic", logging.CRITICAL), ("ERROR", logging.ERROR)])
def test_calicos_level_names(level: str, number: int) -> None:
    assert logs.parse_level(level) == number


def test_libraries_never_log_more_than_our_own_level_unless_asked() -> None:
    assert logs.LogSettings(level=logging.ERROR).effective_libraries_level == logging.ERROR
    assert logs.LogSettings(level=logging.DEBUG).effective_libraries_level == logging.WARNING


@pytest.mark.parametrize("config, key", [
    ({"log_level": "verbose"}, "log_level"), ({"log_level_libraries": "loud"}, "log_level_libraries"),
    ({"log_file_max_size": "100"}, "log_file_max_size"), ({"log_file_max_age": -1}, "log_file_max_age"),
    ({"log_file_max_count": True}, "log_file_max_count"), ({"log_file_max_size": 1.5}, "log_file_max_size"),
    ({"log_file_path": 7}, "log_file_path"),
])
def test_bad_settings_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        logs.settings_from_netconf(config)


def test_a_bad_setting_is_error_7_naming_it(captured: Lines) -> None:
    status, out = run("ADD", {**CONFIG, "log_file_max_count": "ten"})
    assert status == 1 and json.loads(out)["code"] == 7 and "log_file_max_count" in json.loads(out)["msg"]


# ---------------------------------------------------------------- the call's identity

def test_fields_use_calicos_names() -> None:
    assert logs.call_fields("ADD", "c1", POD_ARGS) == ' Command=ADD ContainerID="c1" Namespace="default" Pod="web-0"'
    assert logs.call_fields("DEL", "cnitool-1", "") == ' Command=DEL ContainerID="cnitool-1"'


def test_fields_survive_a_malformed_cni_args_and_odd_values() -> None:
    assert logs.call_fields("ADD", "", "junk;K8S_POD_NAME=a;=x") == ' Command=ADD ContainerID=""'
    fields = logs.call_fields("", "c1", 'K8S_POD_NAMESPACE=n"s;K8S_POD_NAME=a\\b')
    assert fields == ' Command=? ContainerID="c1" Namespace="n\\"s" Pod="a\\\\b"'


def test_each_thread_labels_lines_with_its_own_call(captured: Lines) -> None:
    """calico-node serves calls on several workers at once: the identity is per call, not per process."""
    log = logging.getLogger("cni_calico.test")
    log.setLevel(logging.INFO)
    both_inside = threading.Barrier(2)

    def call(container_id: str) -> None:
        token = logs.begin_call("ADD", container_id, "")
        try:
            both_inside.wait(timeout=5)  # both calls are open when either logs
            log.info("working on %s", container_id)
            helper = threading.Thread(target=logs.in_this_call(lambda: log.info("helper of %s", container_id)))
            helper.start()
            helper.join()
            both_inside.wait(timeout=5)
        finally:
            logs.end_call(token)

    threads = [threading.Thread(target=call, args=(cid,)) for cid in ("c-one", "c-two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.info("between calls")
    ours = [line for line in captured.lines if "cni_calico.test" in line]
    assert len(ours) == 5
    for line in ours[:-1]:
        cid = "c-one" if "c-one" in line.split(": ", 1)[1].split(" Command=")[0] else "c-two"
        assert line.endswith(f' Command=ADD ContainerID="{cid}"'), line
    assert ours[-1].endswith("between calls")


def test_a_thread_started_without_in_this_call_has_no_identity(captured: Lines) -> None:
    log = logging.getLogger("cni_calico.test")
    log.setLevel(logging.INFO)
    token = logs.begin_call("DEL", "c9", "")
    try:
        plain = threading.Thread(target=lambda: log.info("plain thread"))
        plain.start()
        plain.join()
    finally:
        logs.end_call(token)
    assert next(line for line in captured.lines if "plain thread" in line).endswith("plain thread")


def test_a_traceback_follows_the_identity(captured: Lines) -> None:
    log = logging.getLogger("cni_calico.test")
    token = logs.begin_call("ADD", "c1", "")
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        logs.end_call(token)
    first, *rest = next(line for line in captured.lines if "failed" in line).splitlines()
    assert first.endswith('failed Command=ADD ContainerID="c1"') and rest[0] == "Traceback (most recent call last):"


# ---------------------------------------------------------------- skel's one summary line per call

def summaries(captured: Lines) -> list[str]:
    return [line for line in captured.lines if "cni_calico.cni.skel" in line and "[INFO]" in line]


@pytest.mark.parametrize("result, shown", [
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.65.1.5/32"}, {"address": "fd00::5/128"}]},
     ": 10.65.1.5/32, fd00::5/128"),
    ({"cniVersion": "0.2.0", "ip4": {"ip": "10.65.1.5/32"}, "ip6": {"ip": "fd00::5/128"}},
     ": 10.65.1.5/32, fd00::5/128"),
    ({"cniVersion": "1.0.0", "ips": []}, ""),
])
def test_add_ends_with_one_line_naming_its_addresses(captured: Lines, result: dict[str, Any], shown: str) -> None:
    status, _ = run("ADD", handlers=Recorder(result=result), CNI_ARGS=POD_ARGS, CNI_CONTAINERID="c1")
    assert status == 0
    [line] = summaries(captured)
    assert "calico ADD finished in " in line
    assert line.endswith(f' ms{shown} Command=ADD ContainerID="c1" Namespace="default" Pod="web-0"'), line


def test_a_failure_ends_with_one_line_naming_the_error(captured: Lines) -> None:
    from cni_calico.errors import CniError

    status, _ = run("DEL", handlers=Recorder(raises=CniError(11, "etcd unreachable", "3 endpoints")))
    assert status == 1
    [line] = summaries(captured)
    assert "calico DEL failed in " in line and ": etcd unreachable: 3 endpoints (code 11) Command=DEL" in line


def test_an_unexpected_failure_is_logged_with_its_traceback_then_summed_up(captured: Lines) -> None:
    status, _ = run("CHECK", handlers=Recorder(raises=ZeroDivisionError("x")))
    assert status == 1
    errors = [line for line in captured.lines if "[ERROR]" in line]
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0]
    [line] = summaries(captured)
    assert "calico CHECK failed in " in line and "internal error: x (code 100)" in line


def test_version_is_not_a_call_to_log(captured: Lines) -> None:
    status, out = run("VERSION")
    assert status == 0 and "supportedVersions" in out
    assert captured.lines == []


def test_the_identity_ends_with_the_call(captured: Lines) -> None:
    run("ADD")
    logging.getLogger("cni_calico.test").warning("after")
    assert captured.lines[-1].endswith("after")


# ---------------------------------------------------------------- levels

def test_other_libraries_stay_at_warning_unless_asked(captured: Lines) -> None:
    token = logs.begin_call("ADD", "c1", "")
    try:
        logs.configure(logs.settings_from_netconf({"log_level": "debug"}))
        for name in ("pyroute2.netlink.core", "asyncio", "cni_calico.netns"):
            logging.getLogger(name).debug("chatter from %s", name)
        logging.getLogger("pyroute2").warning("a real problem")
        logs.configure(logs.settings_from_netconf({"log_level": "info", "log_level_libraries": "debug"}))
        logging.getLogger("asyncio").debug("asked for")
        logging.getLogger("cni_calico.netns").debug("below our level")
    finally:
        logs.end_call(token)
    messages = [line.split(": ", 1)[1].split(" Command=")[0] for line in captured.lines]
    assert messages == ["chatter from cni_calico.netns", "a real problem", "asked for"]


def test_the_logs_module_loads_nothing_skel_does_not_already_need() -> None:
    """skel imports logs before VERSION is answered: it must not bring anything heavy."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import json, logging, re, dataclasses, typing; "
             "before = set(sys.modules); import cni_calico.logs; "
             "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = set(subprocess.run([sys.executable, "-S", "-c", probe, str(REPO)], check=True,
                                capture_output=True, text=True).stdout.split())
    assert loaded <= {"__future__", "cni_calico", "cni_calico.logs", "contextvars", "_contextvars"}, loaded


def test_calico_node_reads_its_levels_and_never_rotates_its_file() -> None:
    from cni_calico.node.config import ConfigError, load

    settings = load({"CALICO_LOG_LEVEL": "debug", "CALICO_LOG_LEVEL_LIBRARIES": "info",
                     "CALICO_LOG_FILE": "/var/log/calico/node.log"}).log_settings
    assert settings == logs.LogSettings(level=logging.DEBUG, libraries_level=logging.INFO,
                                        file_path="/var/log/calico/node.log", max_size_mb=0)
    assert load({}).log_settings.effective_libraries_level == logging.WARNING
    with pytest.raises(ConfigError, match=r"CALICO_LOG_LEVEL_LIBRARIES: .*unknown log level 'loud'"):
        load({"CALICO_LOG_LEVEL_LIBRARIES": "loud"})
