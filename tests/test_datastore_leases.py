"""Leases, run on MemoryDatastore and on a real etcd (the `store` fixture): a key created with a
lease lives while the lease is kept alive, and goes (with a delete event) when it expires or is
revoked. The leader election of calico-kube-controllers stands on exactly this."""

from __future__ import annotations

import time
from typing import Any

K = "/lease-contract/"
TTL = 2  # etcd's smallest: it rounds a shorter one up to 2 s


def wait_gone(store: Any, key: str, within: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < within:
        if store.get(key) is None:
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def test_a_leased_key_goes_when_the_lease_expires(store: Any) -> None:
    lease = store.grant_lease(TTL)
    assert store.create_leased(K + "leader", "me", lease) is True
    assert store.get(K + "leader").value == "me"
    took = wait_gone(store, K + "leader", within=TTL + 2)
    assert took is not None and took >= TTL - 0.5, took
    assert store.keep_lease_alive(lease) is False  # gone for good
    assert store.create_leased(K + "leader", "me again", lease) is False  # and cannot hold keys


def test_keeping_the_lease_alive_keeps_the_key(store: Any) -> None:
    lease = store.grant_lease(TTL)
    assert store.create_leased(K + "leader", "me", lease)
    for _ in range(6):  # 3 s: past the TTL, refreshed every half second
        time.sleep(0.5)
        assert store.keep_lease_alive(lease) is True
    assert store.get(K + "leader") is not None
    store.revoke_lease(lease)


def test_create_leased_only_creates(store: Any) -> None:
    lease = store.grant_lease(10)
    assert store.create(K + "taken", "someone")
    assert store.create_leased(K + "taken", "me", lease) is False
    assert store.get(K + "taken").value == "someone"
    assert store.create_leased(K + "free", "me", lease) is True
    assert store.create_leased(K + "free", "me", lease) is False
    store.revoke_lease(lease)


def test_revoke_deletes_the_keys_at_once_and_watchers_see_it(store: Any) -> None:
    lease = store.grant_lease(30)
    assert store.create_leased(K + "a", "1", lease)
    assert store.create_leased(K + "b", "2", lease)
    _, revision = store.snapshot(K)
    watch = store.watch(K, revision + 1)
    try:
        store.revoke_lease(lease)
        assert store.list(K) == []
        deleted: list[str] = []
        deadline = time.monotonic() + 5
        while len(deleted) < 2 and time.monotonic() < deadline:
            deleted += [e.key for e in watch.next_batch(timeout=0.5) if e.value is None]
        assert sorted(deleted) == [K + "a", K + "b"]
    finally:
        watch.cancel()
    store.revoke_lease(lease)  # again: not an error


def test_a_plain_write_unbinds_the_key_from_its_lease(store: Any) -> None:
    lease = store.grant_lease(30)
    assert store.create_leased(K + "k", "leased", lease)
    kv = store.get(K + "k")
    assert store.update(K + "k", "plain", kv.mod_revision)
    store.revoke_lease(lease)
    assert store.get(K + "k").value == "plain"  # etcd's put without a lease detaches the key
