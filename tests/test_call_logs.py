"""Logs a person can use, from the executables in a simulated host: every line of a call names it,
each call ends with one summary line, and other libraries' debug chatter stays out. Both paths:
the plugin doing the work itself (its `log_file_path`), and calico-node serving it (the agent's log)."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NotRequired, TypedDict

import pytest

from cni_calico.datastore import EtcdDatastore
from cni_calico.lab.admin import create_pool
from cni_calico.lab.etcd import PrivateEtcd

from .netlab import Lab

pytestmark = [pytest.mark.root, pytest.mark.etcd]


K8S_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid}"
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\[(\d+)\] "
                  r"(\S+) \d+: (.*?)"
                  r"((?: Command=\S+ ContainerID=\"[^\"]*\")(?: Namespace=\"[^\"]*\" Pod=\"[^\"]*\")?)?$")
SUMMARY = re.compile(r"^(calico|calico-ipam) (ADD|DEL|CHECK) (finished|failed) in \d+\.\d ms")


class Call(TypedDict):
    """Lab.cni's keyword arguments that say which container a call is for."""

    container_id: str
    netns: str
    args: NotRequired[str]
    ifname: NotRequired[str]


def identity(command: str, cid: str, pod: str = "") -> str:
    fields = f' Command={command} ContainerID="{cid}"'
    return fields + (f' Namespace="shop" Pod="{pod}"' if pod else "")


@contextmanager
def running_lab(etcd_server: PrivateEtcd, etcd_store: EtcdDatastore, fast_path: bool) -> Iterator[Lab]:
    create_pool(etcd_store, "p1", "10.100.0.0/16")
    lab = Lab(etcd_server.port, fast_path=fast_path, agent_env={"CALICO_LOG_LEVEL": "debug"})
    try:
        yield lab.start()
    finally:
        lab.stop()


@pytest.fixture(params=["standalone", "fast-path"])
def lab(request: pytest.FixtureRequest, etcd_server: PrivateEtcd, etcd: str, etcd_store: EtcdDatastore
        ) -> Iterator[Lab]:
    with running_lab(etcd_server, etcd_store, fast_path=request.param == "fast-path") as lab:
        yield lab


@pytest.fixture
def served(etcd_server: PrivateEtcd, etcd: str, etcd_store: EtcdDatastore) -> Iterator[Lab]:
    """A host whose calico-node serves the calls."""
    with running_lab(etcd_server, etcd_store, fast_path=True) as lab:
        yield lab


def parsed(path: Path) -> list[tuple[str, str, str, str, str]]:
    """(level, pid, logger, message, identity) per line; every line must be a whole record."""
    out = []
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        assert match, f"not a log line: {line!r}"
        out.append((match[1], match[2], match[3], match[4], match[5] or ""))
    return out


def test_every_line_of_a_call_names_it_and_each_call_sums_up_once(lab: Lab, tmp_path: Path) -> None:
    log_file = tmp_path / "calico" / "cni.log"
    conf = lab.conf(log_level="debug", log_file_path=str(log_file))
    pod_ns, tool_ns = lab.pod("web"), lab.pod("tool")
    web: Call = {"container_id": "c0ffee01", "netns": pod_ns, "args": K8S_ARGS.format(pod="web-0", cid="c0ffee01")}
    calls: list[tuple[str, Call, str, str]] = [  # (command, keyword arguments, plugin, identity)
        ("ADD", web, "calico", identity("ADD", "c0ffee01", "web-0")),
        ("ADD", {"container_id": "cnitool-7", "netns": tool_ns}, "calico", identity("ADD", "cnitool-7")),
        ("ADD", {"container_id": "ipam-only", "netns": tool_ns, "ifname": "net9"}, "calico-ipam",
         identity("ADD", "ipam-only")),
        ("DEL", web, "calico", identity("DEL", "c0ffee01", "web-0")),
        ("DEL", {"container_id": "cnitool-7", "netns": tool_ns}, "calico", identity("DEL", "cnitool-7")),
        ("DEL", {"container_id": "ipam-only", "netns": tool_ns, "ifname": "net9"}, "calico-ipam",
         identity("DEL", "ipam-only")),
    ]
    for command, kwargs, plugin, _ in calls:
        status, out, err = lab.cni(command, conf, plugin=plugin, **kwargs)
        assert status == 0, (command, kwargs, out, err)

    lines = parsed(Path(f"{lab.workdir}/agent.log") if lab.fast_path else log_file)
    assert not lab.fast_path or not log_file.exists()  # a served call logs where the agent does
    assert not [line for line in lines if not line[2].startswith("cni_calico.")], "another library's lines"
    # The agent's own lines (its view of etcd, policy) belong to no call; every other line does.
    call_lines = [line for line in lines if not line[2].startswith("cni_calico.node.")]
    wanted = {fields for *_, fields in calls}
    assert {line[4] for line in call_lines} == wanted
    if not lab.fast_path:  # one process per call: all its lines name that one call
        assert all(len({line[4] for line in call_lines if line[1] == pid}) == 1 for pid in {ln[1] for ln in lines})
    summaries = [line for line in lines if line[0] == "INFO" and SUMMARY.match(line[3])]
    assert sorted(line[4] for line in summaries) == sorted(wanted)  # exactly one per call
    for command, _, plugin, fields in calls:
        [summary] = [line[3] for line in summaries if line[4] == fields]
        assert summary.startswith(f"{plugin} {command} finished in ")
        if command == "ADD":
            assert re.search(r" ms: 10\.100\.\d+\.\d+/(32|26)$", summary), summary
    assert any(line[0] == "DEBUG" for line in call_lines)  # log_level debug reached our own loggers


def test_a_failed_call_sums_up_its_error(lab: Lab, tmp_path: Path) -> None:
    log_file = tmp_path / "cni.log"
    conf = lab.conf(log_level="info", log_file_path=str(log_file))
    status, out, _ = lab.cni("ADD", conf, container_id="gone-1", netns="/var/run/netns/no-such-netns",
                             args=K8S_ARGS.format(pod="ghost", cid="gone-1"))
    assert status == 1 and out is not None
    lines = parsed(Path(f"{lab.workdir}/agent.log") if lab.fast_path else log_file)
    [summary] = [line for line in lines if SUMMARY.match(line[3])]
    assert summary[3].startswith("calico ADD failed in ") and summary[3].endswith(f"(code {out['code']})")
    assert out["msg"] in summary[3] and summary[4] == identity("ADD", "gone-1", "ghost")


def test_calls_served_at_once_each_keep_their_own_identity(served: Lab) -> None:
    """calico-node's workers serve these together; its threads must not mix up whose line is whose."""
    lab = served
    conf = lab.conf()
    names = [f"par{n}" for n in range(6)]
    netns = {name: lab.pod(name) for name in names}
    failures: list[object] = []

    def add(name: str) -> None:
        status, out, err = lab.cni("ADD", conf, container_id=name, netns=netns[name],
                                   args=K8S_ARGS.format(pod=f"pod-{name}", cid=name))
        if status != 0:
            failures.append((name, out, err))

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    lines = parsed(Path(f"{lab.workdir}/agent.log"))
    for name in names:
        # IPAM's line (on a thread of the call's own) and the summary name the call they are about.
        [assigned] = [line for line in lines if line[3].startswith("assigned ") and line[3].endswith(f"net1.{name}")]
        assert assigned[4] == identity("ADD", name, f"pod-{name}")
        [summary] = [line for line in lines
                     if SUMMARY.match(line[3]) and line[4] == identity("ADD", name, f"pod-{name}")]
        assert summary[3].startswith("calico ADD finished")


def test_the_agents_log_survives_logrotate(served: Lab) -> None:
    """logrotate renames the file under the running agent: later lines go to the new file."""
    lab = served
    log = Path(f"{lab.workdir}/agent.log")
    assert lab.cni("ADD", lab.conf(), container_id="before", netns=lab.pod("before"))[0] == 0
    rotated = log.rename(log.with_name("agent.log.1"))
    assert lab.cni("ADD", lab.conf(), container_id="after", netns=lab.pod("after"))[0] == 0
    assert 'ContainerID="before"' in rotated.read_text() and 'ContainerID="after"' not in rotated.read_text()
    assert "calico ADD finished in" in log.read_text() and 'ContainerID="after"' in log.read_text()
