"""netns.host(): a fresh socket per use, except in a thread that keeps its own (calico-node's
CNI workers): the same socket again after a body that succeeded, never one a failed body held,
and never a kept socket shared with another thread (pyroute2 keeps sockets per thread). Runs in
a process inside a private namespace: the machine's own namespace is not touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.root

SCRIPT = r"""
import json, threading
from cni_calico import netns

def lend():
    with netns.host() as ns:
        ns.link("lo")  # a real request on the socket
        return ns

out = {}
a, b = lend(), lend()
out["fresh_each_time"] = a is not b
netns.keep_host_socket()
c, d = lend(), lend()
out["kept_reused"] = c is d
other = []
t = threading.Thread(target=lambda: other.append(lend()))
t.start(); t.join()
out["other_thread_not_given_it"] = other[0] is not d
try:
    with netns.host() as e:
        raise RuntimeError("a failed body")
except RuntimeError:
    pass
out["failed_one_was_the_kept_one"] = e is d
f = lend()
out["next_is_new"] = f is not d
out["still_works"] = f.link("lo").index
print(json.dumps(out))
"""


def test_host_sockets_are_kept_per_thread_and_only_after_success() -> None:
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
    assert out["other_thread_not_given_it"]
    assert out["failed_one_was_the_kept_one"]  # the failing body got the kept socket ...
    assert out["next_is_new"]  # ... which was closed, not lent again
    assert out["still_works"] == 1
