"""netns.host(): a fresh socket per use, or (kept, as calico-node keeps them) the same socket
lent again after a body that succeeded, and never one a failed body held. Runs in a process
inside a private namespace: the machine's own namespace is not touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.root

SCRIPT = r"""
import json
from cni_calico import netns

def lend():
    with netns.host() as ns:
        ns.link("lo")  # a real request on the socket
        return ns

out = {}
a, b = lend(), lend()
out["fresh_each_time"] = a is not b
netns.keep_host_sockets()
c, d = lend(), lend()
out["kept_reused"] = c is d
try:
    with netns.host() as e:
        raise RuntimeError("a failed body")
except RuntimeError:
    pass
out["failed_one_not_kept"] = e is d
f = lend()
out["next_is_new"] = f is not d and f is not e
out["still_works"] = f.link("lo").index
print(json.dumps(out))
"""


def test_host_sockets_are_kept_only_when_asked_and_only_after_success() -> None:
    name = f"ccsock{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        proc = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", SCRIPT],
                              capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["fresh_each_time"]
    assert out["kept_reused"]
    assert out["failed_one_not_kept"]  # the failing body got the kept socket ...
    assert out["next_is_new"]  # ... which was closed, not lent again
    assert out["still_works"] == 1
