"""The README's manual walk-through, run verbatim: every command as shown, in a fresh shell.

It builds its own simulated host (a network namespace with a private etcd inside), so nothing
touches this machine's own namespace. Runs on the frozen build (the walk-through uses dist/).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from cni_calico.lab import binaries

from .conftest import REPO

pytestmark = [pytest.mark.root, pytest.mark.etcd,
              pytest.mark.skipif(not binaries.frozen(), reason="the walk-through runs dist/ (make build)")]

START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
NAMESPACES = ("walk-pod", "walk-host")
PID_FILE = Path("/tmp/walk-etcd.pid")


def walkthrough() -> str:
    text = (REPO / "README.md").read_text()
    block = text[text.index(START) + len(START):text.index(END)]
    found = re.search(r"```sh\n(.*?)```", block, re.S)
    assert found, "the walk-through is one ```sh block between the markers"
    return found.group(1)


def _clean_up() -> None:
    """What the walk-through removes itself, removed again by name in case it failed half way."""
    try:
        pid = int(PID_FILE.read_text())
        if b"/tmp/walk-etcd" in Path(f"/proc/{pid}/cmdline").read_bytes():  # only our etcd
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    for name in NAMESPACES:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["sh", "-c", "rm -rf /tmp/walk-etcd*"])


def test_the_manual_walkthrough_works_as_shown() -> None:
    for name in NAMESPACES:
        assert not Path(f"/var/run/netns/{name}").exists(), f"{name} exists already: not starting"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "ETCD_", "CALICO_"))}
    try:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        _clean_up()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Successfully created 1 'IPPool' resource(s)" in out
    added = re.search(r'"ips": \[\{"address": "(10\.100\.\d+\.\d+)/32"', out)
    assert added, out
    address = added.group(1)
    assert f"inet {address}/32 scope global eth0" in out  # the pod's side
    assert "default via 169.254.1.1 dev eth0" in out
    assert re.search(rf"^{re.escape(address)} dev cali[0-9a-f]{{11}} scope link", out, re.M)  # the host's
    assert re.search(r"-cni-walk1-eth0 +walk1 ", out)  # the endpoint in etcd
    assert re.search(r"\| Block +\| 10\.100\.\d+\.\d+/26 \| +64 \| 1 \(2%\)", out)
    assert "Traceback" not in proc.stderr
    for name in NAMESPACES:
        assert not Path(f"/var/run/netns/{name}").exists()
    assert not PID_FILE.exists()
