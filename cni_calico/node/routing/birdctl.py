"""A client for BIRD 2's control socket (what `birdc` speaks), one connection per command.

The protocol is line based. BIRD greets with `0001 BIRD 2.0.12 ready.`; every reply line is a
4-digit code followed by `-` (more lines follow) or a space (the last line); a line starting
with a space continues the previous code. Codes >= 8000 are errors (9xxx: the command did not
parse). Replies that are tables end with a bare `0000 `.

Reply codes BIRD 2.0.12 really sends (seen here, not just documented):
  configure        0002- Reading configuration from <file>, then 0003 Reconfigured, or
                   0004 Reconfiguration in progress (a protocol must shut down first, e.g. a
                   removed peer), or 0005 (queued behind one in progress); a bad file: 8002
                   `<file>:<line>:<col> <parse error>`, and BIRD keeps the running config.
  graceful restart 0025 Graceful restart requested, then BIRD exits (pid file and socket gone).
  down             0007 Shutdown requested, then BIRD exits.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ERROR_CODES = 8000  # codes from here on are failures
RECONFIGURED = {3, 4, 5}  # done, in progress, queued behind one in progress
GRACEFUL_RESTART_REQUESTED = 25
SHUTDOWN_REQUESTED = 7
TABLE_HEADER = 2002
PROTOCOL_ROW = 1002
_PROTOCOL_HEADINGS = ["name", "proto", "table", "state", "since", "info"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d+)?$")


class BirdError(Exception):
    """BIRD refused a command or cannot be reached; the message is BIRD's own text when it sent one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Protocol:
    """One row of `show protocols`."""

    name: str
    proto: str  # BGP, Kernel, Device, Static, ...
    table: str
    state: str  # up, start, down, flush, ...
    since: str  # as BIRD prints it: 10:31:36.123, 10:31:36 or 2026-11-25 10:31:36 (its `timeformat`)
    info: str  # e.g. "Established", "Active Socket: Connection refused" (runs of spaces collapsed)


class BirdControl:
    def __init__(self, socket_path: str | Path, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def command(self, text: str) -> list[tuple[int, str]]:
        """Send one command; the reply as (code, text) lines, without the closing bare `0000`."""
        with self._connect() as sock, sock.makefile("rb") as stream:
            try:
                greeting = self._read_reply(stream)
                if any(code >= ERROR_CODES for code, _ in greeting):  # e.g. 8007 Access denied
                    raise BirdError(_text(greeting), greeting[-1][0])
                sock.sendall(text.encode() + b"\n")
                reply = self._read_reply(stream)
            except TimeoutError:
                raise BirdError(f"BIRD did not answer {text!r} within {self.timeout:g} s "
                                f"(control socket {self.socket_path})") from None
            except OSError as exc:
                raise BirdError(f"lost the connection to BIRD at {self.socket_path}: {exc.strerror or exc}") from None
        errors = [(code, line) for code, line in reply if code >= ERROR_CODES]
        if errors:
            raise BirdError("; ".join(line for _, line in errors) or f"BIRD error {errors[0][0]}", errors[0][0])
        return reply

    def configure(self) -> None:
        """Reload the config file BIRD was started with; a bad file raises with BIRD's parse error."""
        reply = self.command("configure")
        if not any(code in RECONFIGURED for code, _ in reply):
            raise BirdError(f"BIRD did not reconfigure: {_text(reply)}", reply[-1][0] if reply else None)

    def protocols(self) -> list[Protocol]:
        reply = self.command("show protocols")
        rows = []
        for code, line in reply:
            if code == TABLE_HEADER:
                if line.lower().split() != _PROTOCOL_HEADINGS:
                    raise BirdError(f"unexpected 'show protocols' table from BIRD: {line.strip()!r}")
            elif code == PROTOCOL_ROW:
                row = parse_protocol(line)
                if row is not None:
                    rows.append(row)
        return rows

    def graceful_restart(self) -> None:
        """Make BIRD exit for a graceful restart: peers and the kernel keep its routes meanwhile."""
        self._expect("graceful restart", GRACEFUL_RESTART_REQUESTED)

    def down(self) -> None:
        """Make BIRD shut down (its peers withdraw its routes)."""
        self._expect("down", SHUTDOWN_REQUESTED)

    # ------------------------------------------------------------ helpers

    def _expect(self, text: str, wanted: int) -> None:
        reply = self.command(text)
        if not any(code == wanted for code, _ in reply):
            raise BirdError(f"unexpected reply from BIRD to {text!r}: {_text(reply)}", reply[-1][0] if reply else None)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except FileNotFoundError:
            sock.close()
            raise BirdError(f"BIRD is not running (no control socket at {self.socket_path})") from None
        except ConnectionRefusedError:
            sock.close()
            raise BirdError(f"BIRD is not running (nothing answers on the control socket {self.socket_path})") from None
        except TimeoutError:
            sock.close()
            raise BirdError(f"BIRD did not accept a connection on {self.socket_path} "
                            f"within {self.timeout:g} s") from None
        except OSError as exc:
            sock.close()
            raise BirdError(f"cannot connect to BIRD at {self.socket_path}: {exc.strerror or exc}") from None
        return sock

    def _read_reply(self, stream: BinaryIO) -> list[tuple[int, str]]:
        """Lines up to and including the one whose code is followed by a space."""
        lines: list[tuple[int, str]] = []
        code = 0
        while True:
            raw = stream.readline()
            if not raw:
                raise BirdError(f"BIRD closed the control connection mid-reply ({self.socket_path})")
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(" "):  # continues the previous code
                lines.append((code, line[1:]))
                continue
            if len(line) < 4 or not line[:4].isdigit():
                raise BirdError(f"unexpected line from BIRD: {line!r}")
            code = int(line[:4])
            last = len(line) == 4 or line[4] == " "
            text = line[5:]
            if not (code == 0 and not text.strip()):  # the bare 0000 that closes tables
                lines.append((code, text))
            if last:
                return lines


def parse_protocol(line: str) -> Protocol | None:
    """One `show protocols` row (the text after the code), or None when it is not one.

    Split on whitespace, as Calico does: a name longer than BIRD's column pushes the rest right.
    """
    fields = line.split()
    if len(fields) < 5:
        return None
    name, proto, table, state, since = fields[:5]
    rest = fields[5:]
    if _DATE.match(since) and rest and _TIME.match(rest[0]):  # `timeformat protocol iso long`
        since = f"{since} {rest[0]}"
        rest = rest[1:]
    return Protocol(name=name, proto=proto, table=table, state=state, since=since, info=" ".join(rest))


def _text(reply: list[tuple[int, str]]) -> str:
    return " / ".join(f"{code:04d} {line}".rstrip() for code, line in reply) or "empty reply"
