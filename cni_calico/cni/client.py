"""What `calico` and `calico-ipam` do first: answer VERSION, else hand the call to calico-node's
warm fast path, else run it standalone. Imports only `os`, `sys` and the fast-path client, so a
served call costs the interpreter's start and one round trip on the socket.

The frozen build has two executables: this small client (`cni-calico/client/calico-cni`, what the
`calico` and `calico-ipam` names point at, in a bundle of its own) and the full
`cni-calico/cni-calico`. A call nobody serves is
handed to the full one by exec, with stdin replayed from memory: the client never loads the
plugin stack itself, which is what keeps it small.
"""

from __future__ import annotations

import os
import sys

from . import fastpath

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the CNI path
if TYPE_CHECKING:
    from typing import Callable

PLUGINS = ("calico", "calico-ipam")
FULL_EXECUTABLE = os.path.join("..", "cni-calico")  # the client's bundle sits inside the full one
COMMAND_ENV = "CNI_CALICO_COMMAND"  # tells the full executable which command it was handed


def serve(name: str, standalone: Callable[[bytes], None]) -> None:
    """Answer one CNI call for plugin `name`; `standalone(stdin)` does it in full when nobody serves."""
    if os.environ.get("CNI_COMMAND") == "VERSION":
        from .versions import VERSION_REPLY

        _finish(0, VERSION_REPLY)
    stdin = sys.stdin.buffer.read()
    served = fastpath.try_fast_path(name, os.environ, stdin)
    if served is not None:
        _finish(*served)
    standalone(stdin)


def _finish(status: int, out: str) -> None:
    sys.stdout.write(out)
    sys.stdout.flush()
    os._exit(status)  # nothing to clean up: skipping the interpreter's teardown saves ~2 ms


def exec_full_executable(name: str, stdin: bytes) -> None:
    """Become the full executable (same pid, same environment), with `stdin` replayed on fd 0.
    A broken install (the full executable missing) is a CNI error, like any other failure."""
    full = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(sys.executable)), FULL_EXECUTABLE))
    try:
        fd = os.memfd_create("cni-stdin")
        view = memoryview(stdin)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(fd, 0)
        os.close(fd)
        os.environ[COMMAND_ENV] = name
        os.execv(full, [full, *sys.argv[1:]])
    except OSError as exc:
        from ..errors import INTERNAL

        _finish(1, fastpath.error_reply(stdin, f"cannot run {full} (nobody serves the fast path): {exc.strerror}",
                                        INTERNAL))


def main() -> None:
    """Entry of the frozen client executable."""
    name = os.path.basename(sys.argv[0])
    if name not in PLUGINS:
        sys.stderr.write(f"calico-cni: run me as calico or calico-ipam (not {name!r})\n")
        sys.exit(2)
    serve(name, lambda stdin: exec_full_executable(name, stdin))
