"""`make demo` is the README's main command: it must work, prove traffic, and leave nothing behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cni_calico.lab import demo

pytestmark = [pytest.mark.root, pytest.mark.bird, pytest.mark.etcd]


def leftovers() -> list[str]:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in namespaces.splitlines() if line.startswith(f"{demo.PREFIX}-")]


def test_demo_with_three_hosts_routes_and_reaches_every_pod() -> None:
    proc = subprocess.run([sys.executable, "-m", "cni_calico.lab.demo", "--hosts", "3", "--pods", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert out.count("| node-to-node mesh | up    |") == 6  # each of 3 hosts sees 2 Established peers
    assert len(re.findall(r"^blackhole 10\.100\.\d+\.\d+/26 proto bird", out, re.M)) == 3
    assert len(re.findall(r"^10\.100\.\d+\.\d+/26 via 192\.0\.2\.1\d dev eth0 proto bird", out, re.M)) == 6
    assert "FAILED" not in out and "UNEXPECTED" not in out
    # 6 cross-host pings, then the policy: host 3's pod1 unreachable by ICMP, reachable once deleted;
    # then Kubernetes mode: the plugin run with the seed's config reads each pod from the API, so
    # its endpoint has the pod's labels and both profiles from the ADD on (the controllers never
    # write profiles); client and other reach web, a NetworkPolicy blocks other (not client),
    # deleting it lets other through again
    assert out.count(": ok") == 7 + 4 and out.count(": blocked") == 1 + 1
    seed = json.loads(next(line for line in out.splitlines() if line.startswith('{"name": "calico-k8s-network"')))
    assert set(seed) == {"name", "cniVersion", "type", "etcd_endpoints", "log_level", "ipam", "policy", "kubernetes"}
    assert seed["policy"] == {"type": "k8s"} and set(seed["kubernetes"]) == {"kubeconfig"}
    assert re.search(r"^  153node/web: [\d.]+; endpoint labels \{'app': 'web', .*'projectcalico.org/serviceaccount': "
                     r"'web'\}, profiles kns\.demo, ksa\.demo\.web$", out, re.M)
    assert "151node/other -> 153node/web" in out and "in etcd as Calico's knp.default.web-from-clients" in out
    assert "result: all reached, policy enforced" in out
    assert leftovers() == [] and not demo.STATE.exists()


def controllers_of(workdir: str) -> list[int]:
    """PIDs of the demo's calico-kube-controllers: its environment names the demo's kubeconfig."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and b"calico-kube-controllers" in (entry / "cmdline").read_bytes()
                    and workdir.encode() in (entry / "environ").read_bytes()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("kill_at", ["creating 1 pods per host", "the endpoints got their pods' labels"])
def test_demo_clean_removes_what_a_killed_demo_left(kill_at: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cni_calico.lab.demo", "--hosts", "2", "--pods", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workdir = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # kill it once the pods exist (or the controllers run): all is up
            if kill_at in line:
                break
        time.sleep(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert leftovers() != [] and demo.STATE.exists()
        workdir = json.loads(demo.STATE.read_text())["workdir"]
        assert bool(controllers_of(workdir)) == ("labels" in kill_at)
    finally:
        cleaned = subprocess.run([sys.executable, "-m", "cni_calico.lab.demo", "--clean"],
                                 capture_output=True, text=True, timeout=120)
    assert cleaned.returncode == 0, cleaned.stderr
    assert leftovers() == [] and not demo.STATE.exists()
    bird = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"/tmp/{demo.PREFIX}-" not in bird  # no agent or BIRD of the demo survives
    assert workdir and controllers_of(workdir) == []  # nor its calico-kube-controllers
