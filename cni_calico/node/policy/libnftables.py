"""nftables' own library (libnftables.so.1, which the nft command is built on) through ctypes.

One context lives as long as the agent, so applying a change costs what the kernel does with
it: about 0.2 ms of CPU for one endpoint's elements, where starting the nft program costs about
4 ms each time, and the agent applies once per endpoint change. Same script language, same
error text as `nft -f`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from ... import netns

# The system's library, found by its soname at run time (not bundled: it must match the
# kernel-facing libraries the nftables package installs beside it).
SONAME = "libnftables.so.1"


class NftError(RuntimeError):
    """nft (the program or the library) refused a script, or could not be run."""


class LibraryUnavailable(Exception):
    pass


def refusal(error_text: str, fallback: str) -> NftError:
    """nft's error output (the program's stderr or the library's error buffer) as one line."""
    lines = [line for line in error_text.splitlines() if line.strip()]
    return NftError("; ".join(lines[:3]) or fallback)


def _bind(lib: Any) -> None:
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.restype = None
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]


class NftLibrary:
    """Runs nft scripts in-process. `netns_path`: the namespace to act in (None: this process's;
    the calling thread enters the other one for each script, and leaves it after)."""

    def __init__(self, netns_path: str | None = None, soname: str = SONAME) -> None:
        try:
            self._lib = ctypes.CDLL(soname)
            _bind(self._lib)
        except (OSError, AttributeError) as exc:
            raise LibraryUnavailable(f"{soname}: {exc}") from None
        self.netns_path = netns_path
        self._lock = threading.Lock()  # one context: one script at a time
        with netns.entered(netns_path):
            self._ctx = self._lib.nft_ctx_new(0)
        if not self._ctx:
            raise LibraryUnavailable(f"{soname}: nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(self._ctx)  # kept, not printed on the agent's stdout
        self._lib.nft_ctx_buffer_error(self._ctx)

    def run(self, script: str) -> None:
        with self._lock, netns.entered(self.netns_path):
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            self._lib.nft_ctx_get_output_buffer(self._ctx)  # read (and so reset) every time
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if status != 0:
            raise refusal(error, f"libnftables returned {status}")

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None

    def __repr__(self) -> str:
        return f"NftLibrary({self.netns_path or 'own namespace'})"
