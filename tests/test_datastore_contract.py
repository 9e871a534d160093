"""The datastore contract, run on MemoryDatastore and on a real etcd through the `store` fixture.

Every test that takes `store` runs twice: once in memory, once on the private etcd (marked `etcd`).
Tests below the contract section are about EtcdDatastore alone: reachability, failover, endpoints, TLS.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from cni_calico.datastore import EtcdDatastore, EtcdEndpoint, parse_endpoints
from cni_calico.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CniError
from cni_calico.lab.etcd import PrivateEtcd, free_port

K = "/contract/"


# ---------------------------------------------------------------- single keys

def test_get_missing_is_none(store: Any) -> None:
    assert store.get(K + "missing") is None
    assert store.list(K) == []


def test_create_succeeds_once(store: Any) -> None:
    assert store.create(K + "k", "one") is True
    assert store.create(K + "k", "two") is False
    kv = store.get(K + "k")
    assert kv is not None
    assert (kv.key, kv.value) == (K + "k", "one")
    assert kv.mod_revision == kv.create_revision > 0


def test_update_needs_the_current_revision(store: Any) -> None:
    assert store.create(K + "k", "v1")
    first = store.get(K + "k")
    assert store.update(K + "k", "v2", first.mod_revision) is True
    second = store.get(K + "k")
    assert second.value == "v2"
    assert second.mod_revision > first.mod_revision

    # The revision read before the last write is stale now: refused, value kept.
    assert store.update(K + "k", "v3", first.mod_revision) is False
    assert store.get(K + "k") == second
    # A revision from the future is refused as well.
    assert store.update(K + "k", "v3", second.mod_revision + 1000) is False
    assert store.get(K + "k") == second


def test_update_of_an_absent_key_fails(store: Any) -> None:
    assert store.update(K + "absent", "v", 5) is False
    assert store.get(K + "absent") is None


def test_delete_needs_the_current_revision(store: Any) -> None:
    assert store.create(K + "k", "v1")
    first = store.get(K + "k")
    assert store.update(K + "k", "v2", first.mod_revision)
    current = store.get(K + "k")

    assert store.delete(K + "k", first.mod_revision) is False
    assert store.get(K + "k") == current
    assert store.delete(K + "k", current.mod_revision) is True
    assert store.get(K + "k") is None
    # Gone means absent: expecting its old revision now fails, expecting 0 would succeed.
    assert store.delete(K + "k", current.mod_revision) is False


# ---------------------------------------------------------------- transactions

def test_txn_is_atomic(store: Any) -> None:
    assert store.create(K + "a", "a1")
    assert store.create(K + "b", "b1")
    a, b = store.get(K + "a"), store.get(K + "b")
    before = store.list(K)

    # One compare out of three fails: none of the puts or deletes happen.
    applied = store.txn({K + "a": a.mod_revision, K + "b": b.mod_revision + 1, K + "c": 0},
                        put={K + "a": "a2", K + "c": "c1", K + "d": "d1"}, delete=[K + "b"])
    assert applied is False
    assert store.list(K) == before

    # Every compare holds: all of them happen, at once.
    applied = store.txn({K + "a": a.mod_revision, K + "b": b.mod_revision, K + "c": 0},
                        put={K + "a": "a2", K + "c": "c1", K + "d": "d1"}, delete=[K + "b"])
    assert applied is True
    after = {kv.key: kv for kv in store.list(K)}
    assert sorted(after) == [K + "a", K + "c", K + "d"]
    assert [after[k].value for k in sorted(after)] == ["a2", "c1", "d1"]
    assert len({kv.mod_revision for kv in after.values()}) == 1


def test_txn_expecting_zero_means_absent(store: Any) -> None:
    # The compared key is not written itself: absence is a guard for other writes.
    assert store.txn({K + "guard": 0}, put={K + "x": "1"}) is True
    assert store.get(K + "x").value == "1"
    assert store.create(K + "guard", "present")
    assert store.txn({K + "guard": 0}, put={K + "x": "2"}) is False
    assert store.get(K + "x").value == "1"
    # Deleted again: absent again, so 0 matches again.
    guard = store.get(K + "guard")
    assert store.delete(K + "guard", guard.mod_revision)
    assert store.txn({K + "guard": 0}, put={K + "x": "3"}) is True
    assert store.get(K + "x").value == "3"


def test_mod_revision_strictly_increases_and_is_shared_by_one_txn(store: Any) -> None:
    assert store.create(K + "first", "1")
    r1 = store.get(K + "first").mod_revision
    assert store.txn({}, put={K + "p": "1", K + "q": "1", K + "r": "1"})
    p, q, r = (store.get(K + k) for k in "pqr")
    assert p.mod_revision == q.mod_revision == r.mod_revision > r1
    assert store.update(K + "p", "2", p.mod_revision)
    r3 = store.get(K + "p").mod_revision
    assert r3 > p.mod_revision
    assert store.get(K + "q").mod_revision == p.mod_revision  # an untouched key keeps its revision


def test_create_revision_survives_updates(store: Any) -> None:
    assert store.create(K + "k", "v0")
    created = store.get(K + "k")
    revision = created.mod_revision
    for i in range(1, 4):
        assert store.update(K + "k", f"v{i}", revision)
        kv = store.get(K + "k")
        assert kv.create_revision == created.create_revision
        assert kv.mod_revision > revision
        revision = kv.mod_revision
    # Deleted and created again: a new life, a new create revision.
    assert store.delete(K + "k", revision)
    assert store.create(K + "k", "again")
    assert store.get(K + "k").create_revision > revision


def test_list_is_sorted_and_respects_the_prefix(store: Any) -> None:
    for key in ("/a/z", "/ab", "/a/b", "/a", "/a/m/x", "/b/1", "/a/", "/a0"):
        assert store.create(key, f"value of {key}")
    listed = store.list("/a/")
    assert [kv.key for kv in listed] == ["/a/", "/a/b", "/a/m/x", "/a/z"]
    for kv in listed:
        assert kv == store.get(kv.key)
        assert kv.value == f"value of {kv.key}"
    assert [kv.key for kv in store.list("/a/m/")] == ["/a/m/x"]
    assert [kv.key for kv in store.list("/a")] == ["/a", "/a/", "/a/b", "/a/m/x", "/a/z", "/a0", "/ab"]
    assert store.list("/c/") == []


def test_get_many_reads_present_and_absent_keys_at_once(store: Any) -> None:
    assert store.create("/m/a", "1") and store.create("/m/b", "2")
    assert store.update("/m/b", "3", store.get("/m/b").mod_revision)
    got = store.get_many(["/m/b", "/m/missing", "/m/a"])
    assert list(got) == ["/m/b", "/m/missing", "/m/a"]
    assert got["/m/a"] == store.get("/m/a") and got["/m/b"] == store.get("/m/b")
    assert got["/m/b"].value == "3" and got["/m/missing"] is None
    assert store.get_many([]) == {}


def test_read_many_reads_keys_and_prefixes_at_once(store: Any) -> None:
    for key in ("/r/a/1", "/r/a/2", "/r/ab", "/r/b/1", "/r/c"):
        assert store.create(key, key)
    found, under = store.read_many(["/r/c", "/r/none"], ["/r/a/", "/r/b/", "/r/zz/"])
    assert found == {"/r/c": store.get("/r/c"), "/r/none": None}
    assert under == {"/r/a/": store.list("/r/a/"), "/r/b/": store.list("/r/b/"), "/r/zz/": []}
    assert [kv.key for kv in under["/r/a/"]] == ["/r/a/1", "/r/a/2"]  # not /r/ab
    assert store.read_many([], []) == ({}, {})


def test_prefetched_serves_each_first_read_once_and_forgets_what_it_writes(store: Any) -> None:
    from cni_calico.datastore import Prefetched

    assert store.create("/p/k", "old") and store.create("/p/dir/a", "1") and store.create("/p/other", "x")
    reads = Prefetched(store, ["/p/k", "/p/missing"], ["/p/dir/"])
    assert store.update("/p/k", "newer", store.get("/p/k").mod_revision)  # before the first use...
    assert reads.get("/p/missing") is None  # ...which reads the batch (under the caller's lock, say)
    assert store.update("/p/k", "new", store.get("/p/k").mod_revision)  # another writer, after the batch
    assert reads.get("/p/k").value == "newer"  # the batched read, once
    assert reads.get("/p/k").value == "new"  # then the store
    assert reads.txn({"/p/dir/b": 0}, {"/p/dir/b": "2"})  # a write under the prefix drops the batch
    assert [kv.key for kv in reads.list("/p/dir/")] == ["/p/dir/a", "/p/dir/b"]
    assert reads.get("/p/other").value == "x"  # never prefetched: straight to the store
    written_first = Prefetched(store, ["/p/k"], [])
    assert written_first.txn({}, {"/p/k": "last"})  # a write first: the batch is never read
    assert written_first.get("/p/k").value == "last"


def test_a_noop_delete_changes_nothing(store: Any) -> None:
    assert store.create(K + "a", "1")
    r1 = store.get(K + "a").mod_revision
    # Deleting a key that is not there succeeds (its guard held) and writes nothing...
    assert store.txn({K + "absent": 0}, delete=[K + "absent"]) is True
    assert store.txn({}, delete=[K + "absent", K + "also-absent"]) is True
    # ...nor does a refused transaction or a read...
    assert store.txn({K + "a": r1 + 100}, put={K + "a": "x"}) is False
    store.get(K + "a")
    store.list(K)
    # ...so the next write gets the very next revision.
    assert store.create(K + "b", "2")
    assert store.get(K + "b").mod_revision == r1 + 1
    assert store.get(K + "a").mod_revision == r1
    assert [kv.key for kv in store.list(K)] == [K + "a", K + "b"]


def test_delete_in_txn_of_present_and_absent_keys(store: Any) -> None:
    assert store.create(K + "a", "1")
    r1 = store.get(K + "a").mod_revision
    assert store.txn({}, delete=[K + "a", K + "absent"]) is True
    assert store.get(K + "a") is None
    assert store.create(K + "b", "2")
    assert store.get(K + "b").mod_revision == r1 + 2  # the delete was one write


# ---------------------------------------------------------------- concurrency

def test_concurrent_cas_increments_lose_nothing(store: Any) -> None:
    threads_n, per_thread = 8, 50
    key = K + "counter"
    assert store.create(key, "0")
    start = threading.Barrier(threads_n)
    successes = [0] * threads_n
    conflicts = [0] * threads_n
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                while True:
                    kv = store.get(key)
                    time.sleep(0)  # yield between read and write: widen the race window
                    if store.update(key, str(int(kv.value) + 1), kv.mod_revision):
                        successes[i] += 1
                        break
                    conflicts[i] += 1
        except BaseException as exc:  # noqa: BLE001 (surfaced below, not lost in the thread)
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker did not finish"
    assert failures == []
    assert successes == [per_thread] * threads_n
    final = store.get(key)
    assert final.value == str(threads_n * per_thread)
    # One revision per successful write: no write was applied without being counted, nor twice.
    assert final.mod_revision - final.create_revision == threads_n * per_thread


# ---------------------------------------------------------------- etcd only: reachability

def _unused_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.etcd
def test_nothing_listening_is_code_11_quickly() -> None:
    endpoint = _unused_endpoint()
    with EtcdDatastore(endpoint, timeout=5.0) as ds:
        t0 = time.monotonic()
        with pytest.raises(CniError) as info:
            ds.get("/x")
        elapsed = time.monotonic() - t0
    assert info.value.code == TRY_AGAIN_LATER
    assert endpoint in info.value.msg
    assert elapsed < 2.0, f"a refused connection took {elapsed:.2f}s to report"


@pytest.mark.etcd
@pytest.mark.parametrize("operation", ["get", "list", "txn", "get_many", "read_many"])
def test_unreachable_is_code_11_for_every_operation(operation: str) -> None:
    with EtcdDatastore(_unused_endpoint(), timeout=2.0) as ds, pytest.raises(CniError) as info:
        if operation == "get":
            ds.get("/x")
        elif operation == "list":
            ds.list("/x/")
        elif operation == "get_many":
            ds.get_many(["/x", "/y"])
        elif operation == "read_many":
            ds.read_many(["/x"], ["/y/"])
        else:
            ds.create("/x", "1")
    assert info.value.code == TRY_AGAIN_LATER


@pytest.mark.etcd
def test_paused_etcd_is_code_11_within_the_timeout(etcd: str, etcd_server: PrivateEtcd) -> None:
    with EtcdDatastore(etcd, timeout=1.0) as ds:
        assert ds.create("/paused/k", "v")  # connected and working before the pause
        etcd_server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(CniError) as info:
                ds.get("/paused/k")
            elapsed = time.monotonic() - t0
        finally:
            etcd_server.resume()
        assert info.value.code == TRY_AGAIN_LATER
        assert elapsed < 4.0, f"a 1 s timeout took {elapsed:.2f}s to report"
        # Once etcd answers again, the same datastore object works again.
        deadline = time.monotonic() + 10
        while True:
            try:
                kv = ds.get("/paused/k")
                break
            except CniError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert kv is not None and kv.value == "v"


@pytest.mark.etcd
@pytest.mark.parametrize("dead_first", [True, False])
def test_fails_over_to_a_live_endpoint(etcd: str, dead_first: bool) -> None:
    dead = _unused_endpoint()
    endpoints = f"{dead},{etcd}" if dead_first else f"{etcd},{dead}"
    with EtcdDatastore(endpoints, timeout=2.0) as ds:
        assert ds.create("/failover/k", "v")
        assert ds.get("/failover/k").value == "v"
        assert [kv.key for kv in ds.list("/failover/")] == ["/failover/k"]
    with EtcdDatastore(etcd) as direct:
        assert direct.get("/failover/k").value == "v"  # the write went to the real etcd


@pytest.mark.etcd
def test_all_endpoints_dead_is_code_11_naming_each() -> None:
    first, second = _unused_endpoint(), _unused_endpoint()
    with EtcdDatastore(f"{first},{second}", timeout=2.0) as ds, pytest.raises(CniError) as info:
        ds.get("/x")
    assert info.value.code == TRY_AGAIN_LATER
    assert first in info.value.msg and second in info.value.msg


class _Ipv6Etcd(PrivateEtcd):
    """The lab etcd, listening for clients on the IPv6 loopback instead."""

    @property
    def endpoint(self) -> str:
        return f"http://[::1]:{self.port}"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.etcd
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_endpoint_works() -> None:
    with _Ipv6Etcd() as server:
        assert server.endpoint.startswith("http://[::1]:")
        with EtcdDatastore(server.endpoint, timeout=2.0) as ds:
            assert ds.create("/v6/k", "v")
            assert ds.get("/v6/k").value == "v"


# ---------------------------------------------------------------- endpoints and TLS (no server needed)

@pytest.mark.parametrize("endpoints", [
    "ftp://127.0.0.1:2379",
    "unix:///var/run/etcd.sock",
    "http://127.0.0.1:notaport",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:0",
    "http://:2379",
    "",
    " , ",
    "http://127.0.0.1:1234,ftp://x",
])
def test_parse_endpoints_rejects_bad_entries(endpoints: str) -> None:
    with pytest.raises(CniError) as info:
        parse_endpoints(endpoints)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert info.value.msg


def test_parse_endpoints_accepts_good_entries() -> None:
    assert parse_endpoints("http://127.0.0.1:1234, https://etcd.example:4001,10.0.0.1,h2:5,http://[fd00::1]:7") == [
        EtcdEndpoint("127.0.0.1", 1234, False),
        EtcdEndpoint("etcd.example", 4001, True),
        EtcdEndpoint("10.0.0.1", 2379, False),
        EtcdEndpoint("h2", 5, False),
        EtcdEndpoint("fd00::1", 7, False),
    ]
    assert parse_endpoints("http://[fd00::1]:7")[0].netloc_host == "[fd00::1]"
    assert parse_endpoints("http://10.0.0.1:7")[0].netloc_host == "10.0.0.1"


@pytest.mark.parametrize("which", ["key_file", "cert_file", "ca_file"])
def test_missing_tls_file_is_code_7(which: str, tmp_path: Any) -> None:
    present = tmp_path / "present.pem"
    present.write_text("not checked here")
    files = {"key_file": str(present), "cert_file": str(present), "ca_file": str(present)}
    files[which] = str(tmp_path / "missing.pem")
    with pytest.raises(CniError) as info:
        EtcdDatastore(_unused_endpoint(), **files)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert "missing.pem" in info.value.msg


def test_read_modify_write_retries_a_lost_race_on_the_newer_value(store: Any) -> None:
    from cni_calico.datastore import read_modify_write

    assert read_modify_write(store, "/rmw/k", lambda v: "1" if v is None else v, "create") == "1"
    raced = []

    def add_one(current: str | None) -> str:
        if not raced:  # another writer gets in between this read and its write
            raced.append(current)
            kv = store.get("/rmw/k")
            assert store.update("/rmw/k", "10", kv.mod_revision)
        return str(int(current or "0") + 1)

    assert read_modify_write(store, "/rmw/k", add_one, "increment") == "11"  # built on the racer's 10
    assert store.get("/rmw/k").value == "11"
    revision = store.get("/rmw/k").mod_revision
    assert read_modify_write(store, "/rmw/k", lambda v: v, "unchanged") == "11"
    assert store.get("/rmw/k").mod_revision == revision  # no change, no write
    assert read_modify_write(store, "/rmw/k", lambda v: None, "delete") is None
    assert store.get("/rmw/k") is None


def test_retry_on_conflict_gives_up_with_code_11(store: Any) -> None:
    from cni_calico.datastore import CONFLICT, retry_on_conflict
    from cni_calico.errors import CniError

    calls = []
    with pytest.raises(CniError) as failure:
        retry_on_conflict(lambda: calls.append(1) or CONFLICT, "always losing", attempts=5)
    assert failure.value.code == 11 and "always losing: gave up after 5" in failure.value.msg
    assert len(calls) == 5
    assert retry_on_conflict(lambda: "done", "winning") == "done"
