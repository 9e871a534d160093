"""The shared, rotated log file (cni_calico.logfile): its pure naming and retention rules, then
real processes writing to it at once, and a file moved away under a running writer."""

from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cni_calico.logfile import (
    SharedLogFile,
    backup_name,
    backup_stamp,
    backups_to_remove,
    stamp,
)

from .conftest import REPO

DAY = 86_400_000_000  # microseconds
T0 = 1_714_558_272_345_678  # 2024-05-01T10:11:12.345678Z


# ---------------------------------------------------------------- names and retention

def test_backups_are_named_like_lumberjacks_to_the_microsecond() -> None:
    assert stamp(T0) == "2024-05-01T10-11-12.345678"
    assert backup_name("/var/log/calico/cni/cni.log", T0) == "/var/log/calico/cni/cni-2024-05-01T10-11-12.345678.log"
    assert backup_name("/tmp/cni", T0) == "/tmp/cni-2024-05-01T10-11-12.345678"


@pytest.mark.parametrize("name, expected", [
    ("cni-2024-05-01T10-11-12.345678.log", "2024-05-01T10-11-12.345678"),
    ("cni.log", None),
    ("cni-2024-05-01T10-11-12.log", None),  # not ours (lumberjack's milliseconds): left alone
    ("cni-2024-05-01T10-11-12.345678.log.gz", None),
    ("other-2024-05-01T10-11-12.345678.log", None),
    ("cni-2024-05-01T10-11-12.34567x.log", None),
])
def test_only_the_logs_own_backups_are_recognised(name: str, expected: str | None) -> None:
    assert backup_stamp("/var/log/calico/cni/cni.log", name) == expected


def test_retention_keeps_the_newest_max_count() -> None:
    path = "/l/cni.log"
    names = [os.path.basename(backup_name(path, T0 + i * 1000)) for i in range(5)] + ["cni.log", "notes.txt"]
    assert backups_to_remove(path, names, T0, max_age_days=0, max_count=3) == names[1::-1]
    assert backups_to_remove(path, names, T0, max_age_days=0, max_count=0) == []


def test_retention_removes_backups_older_than_max_age() -> None:
    path = "/l/cni.log"
    old, recent = (os.path.basename(backup_name(path, T0 - days * DAY)) for days in (31, 29))
    assert backups_to_remove(path, [old, recent, "cni.log"], T0, max_age_days=30, max_count=10) == [old]
    assert backups_to_remove(path, [old, recent], T0, max_age_days=0, max_count=10) == []


# ---------------------------------------------------------------- one process

def writer(path: Path, **limits: int) -> logging.Logger:
    handler = SharedLogFile(str(path), **limits)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"test.logfile.{path}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def close(log: logging.Logger) -> None:
    for handler in log.handlers:
        handler.close()
    log.handlers.clear()


def backups(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if backup_stamp(str(path), p.name))


def test_a_full_file_is_renamed_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cni.log"  # the directory is made, as Calico does
    log = writer(path, max_bytes=100, max_count=2)
    for i in range(10):
        log.info("line %02d %s", i, "x" * 30)  # 39 bytes with the newline: two lines a file
    close(log)

    def text(*numbers: int) -> str:
        return "".join(f"line {i:02d} {'x' * 30}\n" for i in numbers)

    assert [p.read_text() for p in backups(path)] == [text(4, 5), text(6, 7)]  # the oldest two were removed
    assert path.read_text() == text(8, 9)


def test_a_line_longer_than_the_limit_still_goes_into_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    log = writer(path, max_bytes=10, max_count=5)
    log.info("a line far longer than ten bytes")
    log.info("and another")
    close(log)
    assert path.read_text() == "and another\n"
    assert [p.read_text() for p in backups(path)] == ["a line far longer than ten bytes\n"]


def test_old_backups_go_when_the_log_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    now = time.time_ns() // 1000
    old, recent = (Path(backup_name(str(path), now - days * DAY)) for days in (31, 2))
    for p in (old, recent, tmp_path / "unrelated.log"):
        p.write_text("x\n")
    close(writer(path, max_bytes=1 << 20, max_age_days=30, max_count=10))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cni.log", recent.name, "unrelated.log"])


def test_without_a_limit_nothing_is_rotated_or_removed(tmp_path: Path) -> None:
    path = tmp_path / "agent.log"
    old = Path(backup_name(str(path), time.time_ns() // 1000 - 400 * DAY))
    old.write_text("x\n")
    log = writer(path)
    for i in range(200):
        log.info("line %d", i)
    close(log)
    assert path.read_text().count("\n") == 200 and old.exists()


# ---------------------------------------------------------------- many processes at once

WRITER = """
import logging, os, sys, time
sys.path.insert(0, sys.argv[1])
from cni_calico.logfile import SharedLogFile
path, go, number, lines, max_bytes, max_count = sys.argv[2:8]
while not os.path.exists(go):
    time.sleep(0.001)
handler = SharedLogFile(path, max_bytes=int(max_bytes), max_count=int(max_count))
handler.setFormatter(logging.Formatter("%(message)s"))
log = logging.getLogger("w")
log.addHandler(handler)
log.propagate = False
log.setLevel(logging.INFO)
for i in range(int(lines)):
    log.info("writer %s line %05d %s", number, i, "." * (i % 40))
handler.close()
"""


def run_writers(tmp_path: Path, processes: int, lines: int, max_bytes: int, max_count: int) -> Path:
    path = tmp_path / "cni.log"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(REPO), str(path), str(go), str(n), str(lines),
                               str(max_bytes), str(max_count)]) for n in range(processes)]
    try:
        time.sleep(0.5)  # all started and waiting: they write together
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return path


def expected_line(number: int, i: int) -> str:
    return f"writer {number} line {i:05d} {'.' * (i % 40)}"


def test_many_processes_lose_and_repeat_no_line(tmp_path: Path) -> None:
    processes, lines, max_bytes = 12, 400, 4096
    path = run_writers(tmp_path, processes, lines, max_bytes, max_count=10_000)
    files = [path, *backups(path)]
    assert len(files) > 20  # it did rotate, many times, with everyone writing
    seen = collections.Counter(line for f in files for line in f.read_text().split("\n") if line)
    wanted = {expected_line(n, i) for n in range(processes) for i in range(lines)}
    assert set(seen) == wanted  # nothing lost, nothing torn
    assert max(seen.values()) == 1  # nothing written twice
    longest = max(len(line) + 1 for line in wanted)
    # A writer can put the line in flight into a file another one is just rotating: at most one each.
    assert max(f.stat().st_size for f in files) <= max_bytes + processes * longest
    # And each process's lines stay in order across the files.
    order = [line for f in [*sorted(files[1:]), path] for line in f.read_text().split("\n") if line]
    for n in range(processes):
        mine = [int(line.split()[3]) for line in order if line.startswith(f"writer {n} ")]
        assert mine == sorted(mine)


def test_many_processes_keep_at_most_max_count_backups(tmp_path: Path) -> None:
    processes, lines, max_bytes = 12, 300, 2048
    path = run_writers(tmp_path, processes, lines, max_bytes, max_count=3)
    assert len(backups(path)) == 3
    assert {p.name for p in tmp_path.iterdir()} == {"go", "cni.log", *(p.name for p in backups(path))}
    kept = [line for f in [path, *backups(path)] for line in f.read_text().split("\n") if line]
    valid = {expected_line(n, i) for n in range(processes) for i in range(lines)}
    assert set(kept) <= valid and len(kept) == len(set(kept))


# ---------------------------------------------------------------- moved away under a running writer

FOLLOWER = """
import logging, sys
sys.path.insert(0, sys.argv[1])
from cni_calico.logfile import SharedLogFile
handler = SharedLogFile(sys.argv[2])
handler.setFormatter(logging.Formatter("%(message)s"))
log = logging.getLogger("f")
log.addHandler(handler)
log.setLevel(logging.INFO)
for line in sys.stdin:
    log.info(line.strip())
    print("ok", flush=True)
"""


@pytest.mark.parametrize("rotation", ["rename", "rename-and-create", "copytruncate"])
def test_a_writer_follows_logrotate(tmp_path: Path, rotation: str) -> None:
    path = tmp_path / "calico-node.log"
    proc = subprocess.Popen([sys.executable, "-c", FOLLOWER, str(REPO), str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None

    def say(line: str) -> None:
        stdin.write(line + "\n")
        stdin.flush()
        assert stdout.readline() == "ok\n"

    try:
        say("before")
        rotated = tmp_path / "calico-node.log.1"
        if rotation == "copytruncate":
            shutil.copy(path, rotated)
            os.truncate(path, 0)
        else:
            os.rename(path, rotated)
            if rotation == "rename-and-create":
                path.touch(mode=0o640)
        say("after")
        say("and again")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert rotated.read_text() == "before\n"
    assert path.read_text() == "after\nand again\n"
