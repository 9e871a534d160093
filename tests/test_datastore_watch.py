"""Snapshot-then-watch, on the in-memory store and on real etcd: what the node agent builds on."""

from __future__ import annotations

from typing import Any

import pytest

from cni_calico.datastore import EtcdDatastore, WatchEvent, WatchLost
from cni_calico.lab.etcd import PrivateEtcd


def drain(watch: Any, want: int, timeout: float = 5.0) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    while len(events) < want:
        batch = watch.next_batch(timeout=timeout)
        if not batch:
            break
        events.extend(batch)
    return events


def test_snapshot_revision_is_the_store_revision(store: Any) -> None:
    store.create("/a/1", "x")
    store.create("/b/1", "y")
    rows, revision = store.snapshot("/a/")
    assert [kv.key for kv in rows] == ["/a/1"]
    assert revision == store.get("/b/1").mod_revision  # the newest write anywhere, not under the prefix


def test_watch_from_the_snapshot_sees_every_later_change_in_order(store: Any) -> None:
    store.create("/w/old", "0")
    _, revision = store.snapshot("/w/")
    watch = store.watch("/w/", revision + 1)
    try:
        store.create("/w/a", "1")
        store.create("/elsewhere", "ignored")
        kv = store.get("/w/a")
        store.update("/w/a", "2", kv.mod_revision)
        store.txn({}, {"/w/b": "3"}, delete=["/w/old"])
        events = drain(watch, 4)
    finally:
        watch.cancel()
    assert [(e.key, e.value) for e in events] == [("/w/a", "1"), ("/w/a", "2"), ("/w/b", "3"), ("/w/old", None)]
    revisions = [e.mod_revision for e in events]
    assert revisions == sorted(revisions) and revisions[0] > revision
    assert revisions[2] == revisions[3]  # one transaction, one revision


def test_watch_replays_changes_made_between_snapshot_and_watch(store: Any) -> None:
    _, revision = store.snapshot("/r/")
    store.create("/r/missed", "1")  # lands before the watch is opened
    watch = store.watch("/r/", revision + 1)
    try:
        events = drain(watch, 1)
    finally:
        watch.cancel()
    assert [(e.key, e.value) for e in events] == [("/r/missed", "1")]


def test_watch_times_out_with_an_empty_batch(store: Any) -> None:
    _, revision = store.snapshot("/quiet/")
    watch = store.watch("/quiet/", revision + 1)
    try:
        assert watch.next_batch(timeout=0.2) == []
    finally:
        watch.cancel()


def test_watch_from_a_compacted_revision_is_lost(store: Any) -> None:
    store.create("/c/1", "a")
    first = store.get("/c/1").mod_revision
    store.update("/c/1", "b", first)
    store.update("/c/1", "c", store.get("/c/1").mod_revision)
    store.compact(store.get("/c/1").mod_revision)
    with pytest.raises(WatchLost):  # etcd may accept the watch and cancel it straight after
        store.watch("/c/", first).next_batch(timeout=5)


def test_cancelled_watch_ends_with_watch_lost(store: Any) -> None:
    _, revision = store.snapshot("/x/")
    watch = store.watch("/x/", revision + 1)
    watch.cancel()
    with pytest.raises(WatchLost):
        watch.next_batch(timeout=1)


@pytest.mark.etcd
def test_etcd_going_away_ends_the_watch(etcd_server: PrivateEtcd, etcd: str) -> None:
    with EtcdDatastore(etcd, timeout=2) as ds:
        _, revision = ds.snapshot("/gone/")
        watch = ds.watch("/gone/", revision + 1)
        etcd_server.kill()
        try:
            with pytest.raises(WatchLost):
                for _ in range(20):  # the stream error arrives within a few seconds
                    watch.next_batch(timeout=1)
        finally:
            watch.cancel()
            etcd_server.start()
