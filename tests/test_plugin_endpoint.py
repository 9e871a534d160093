"""The endpoint and its network's profile, written together (on the in-memory store and real etcd)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cni_calico.errors import TRY_AGAIN_LATER, CniError
from cni_calico.plugin import _write_with_profile
from cni_calico.resources import profile_key

ENDPOINT = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/h1-cni-c1-eth0"


class RacingWriter:
    """The real store, with another writer acting right after the plugin has read."""

    def __init__(self, store: Any, key: str, value: str) -> None:
        self.store, self.key, self.value = store, key, value

    def get_many(self, wanted: Any) -> Any:
        found = self.store.get_many(wanted)
        kv = self.store.get(self.key)
        if kv is None:
            assert self.store.create(self.key, self.value)
        else:
            assert self.store.update(self.key, self.value, kv.mod_revision)
        return found

    def txn(self, *args: Any, **kwargs: Any) -> bool:
        return self.store.txn(*args, **kwargs)


def test_first_endpoint_of_a_network_creates_its_profile_in_the_same_write(store: Any) -> None:
    _write_with_profile(store, ENDPOINT, '{"e": 1}', "net1")
    endpoint, profile = store.get(ENDPOINT), store.get(profile_key("net1"))
    assert endpoint.value == '{"e": 1}' and endpoint.mod_revision == profile.mod_revision  # one transaction
    assert json.loads(profile.value)["spec"]["ingress"] == [{"action": "Allow"}]
    _write_with_profile(store, ENDPOINT, '{"e": 2}', "net1")
    assert store.get(profile_key("net1")) == profile  # an existing profile is left alone


def test_a_profile_created_meanwhile_by_another_endpoint_is_kept(store: Any) -> None:
    racing = RacingWriter(store, profile_key("net1"), '{"theirs": true}')
    _write_with_profile(racing, ENDPOINT, '{"e": 1}', "net1")
    assert store.get(ENDPOINT).value == '{"e": 1}'
    assert store.get(profile_key("net1")).value == '{"theirs": true}'


def test_an_endpoint_changed_meanwhile_is_error_11_and_is_not_overwritten(store: Any) -> None:
    assert store.create(ENDPOINT, '{"old": 1}')
    racing = RacingWriter(store, ENDPOINT, '{"someone else": 1}')
    with pytest.raises(CniError) as info:
        _write_with_profile(racing, ENDPOINT, '{"e": 1}', "net1")
    assert info.value.code == TRY_AGAIN_LATER
    assert store.get(ENDPOINT).value == '{"someone else": 1}' and store.get(profile_key("net1")) is None
