"""The endpoint and its profile, written together (on the in-memory store and real etcd): a network's
profile isolates the network, the allow-all one older versions wrote is upgraded, any other is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cni_calico.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CniError
from cni_calico.model.keys import profile_key
from cni_calico.model.v3 import allow_all_profile, network_profile, to_json
from cni_calico.plugin import _write_with_profile

ENDPOINT = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/h1-cni-c1-eth0"
NET1 = network_profile("net1")
# What older versions of this project stored for every network, byte for byte.
OLD_SHAPE = ('{"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"annotations": {}, "labels": {}, '
             '"name": "net1"}, "spec": {"egress": [{"action": "Allow"}], "ingress": [{"action": "Allow"}]}}')
CALICOS_SHAPE = {"labelsToApply": {"net1": ""}, "ingress": [{"action": "Allow", "source": {"selector": "has(net1)"}}],
                 "egress": [{"action": "Allow"}]}


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
    _write_with_profile(store, ENDPOINT, '{"e": 1}', "net1", lambda: NET1)
    endpoint, profile = store.get(ENDPOINT), store.get(profile_key("net1"))
    assert endpoint.value == '{"e": 1}' and endpoint.mod_revision == profile.mod_revision  # one transaction
    stored = json.loads(profile.value)
    assert stored["spec"] == CALICOS_SHAPE
    assert (stored["kind"], stored["apiVersion"], stored["metadata"]["name"]) == (
        "Profile", "projectcalico.org/v3", "net1")
    _write_with_profile(store, ENDPOINT, '{"e": 2}', "net1", lambda: NET1)
    assert store.get(profile_key("net1")) == profile  # an existing profile is left alone


def test_the_old_allow_all_profile_is_upgraded_with_the_endpoint(store: Any) -> None:
    assert to_json(allow_all_profile("net1")) == OLD_SHAPE  # what is recognised is what was written
    assert store.create(profile_key("net1"), OLD_SHAPE)
    _write_with_profile(store, ENDPOINT, '{"e": 1}', "net1", lambda: NET1)
    endpoint, profile = store.get(ENDPOINT), store.get(profile_key("net1"))
    assert json.loads(profile.value)["spec"] == CALICOS_SHAPE
    assert endpoint.mod_revision == profile.mod_revision  # in the endpoint's own transaction


@pytest.mark.parametrize("edit", [
    pytest.param(lambda p: p["spec"]["ingress"].insert(0, {"action": "Deny", "protocol": "TCP"}), id="a-rule"),
    pytest.param(lambda p: p["spec"].update(labelsToApply={"team": "a"}), id="labels-to-apply"),
    pytest.param(lambda p: p["metadata"]["labels"].update(owner="ops"), id="a-label"),
    pytest.param(lambda p: p["metadata"].update(uid="5a1c", creationTimestamp="2024-01-01T00:00:00Z"),
                 id="written-by-calicoctl"),
    pytest.param(lambda p: p.update(spec={}), id="no-rules"),
])
def test_a_profile_someone_changed_is_left_alone(store: Any, edit: Any) -> None:
    theirs = json.loads(OLD_SHAPE)
    edit(theirs)
    assert store.create(profile_key("net1"), json.dumps(theirs))
    before = store.get(profile_key("net1"))
    _write_with_profile(store, ENDPOINT, '{"e": 1}', "net1", lambda: NET1)
    assert store.get(profile_key("net1")) == before
    assert store.get(ENDPOINT).value == '{"e": 1}'


def test_a_namespace_profile_stays_allow_all(store: Any) -> None:
    _write_with_profile(store, ENDPOINT, '{"e": 1}', "kns.prod", lambda: allow_all_profile("kns.prod"))
    profile = store.get(profile_key("kns.prod"))
    assert json.loads(profile.value)["spec"] == {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}
    _write_with_profile(store, ENDPOINT, '{"e": 2}', "kns.prod", lambda: allow_all_profile("kns.prod"))
    assert store.get(profile_key("kns.prod")) == profile  # the same shape: nothing to upgrade


@pytest.mark.parametrize("network", ["Net_A", "net a", "a" * 64, "-net", "net..a"])
def test_a_network_name_that_cannot_name_a_profile_is_refused_before_any_write(store: Any, network: str) -> None:
    with pytest.raises(CniError) as info:
        _write_with_profile(store, ENDPOINT, '{"e": 1}', network, lambda: network_profile(network))
    assert info.value.code == INVALID_NETWORK_CONFIG and repr(network) in info.value.msg
    assert store.get(ENDPOINT) is None and store.get(profile_key(network)) is None


def test_an_old_profile_upgraded_meanwhile_by_another_endpoint_is_kept(store: Any) -> None:
    assert store.create(profile_key("net1"), OLD_SHAPE)
    racing = RacingWriter(store, profile_key("net1"), to_json(NET1))
    _write_with_profile(racing, ENDPOINT, '{"e": 1}', "net1", lambda: NET1)
    assert store.get(ENDPOINT).value == '{"e": 1}'
    assert json.loads(store.get(profile_key("net1")).value)["spec"] == CALICOS_SHAPE


def test_a_profile_created_meanwhile_by_another_endpoint_is_kept(store: Any) -> None:
    racing = RacingWriter(store, profile_key("net1"), '{"theirs": true}')
    _write_with_profile(racing, ENDPOINT, '{"e": 1}', "net1", lambda: NET1)
    assert store.get(ENDPOINT).value == '{"e": 1}'
    assert store.get(profile_key("net1")).value == '{"theirs": true}'


def test_an_endpoint_changed_meanwhile_is_error_11_and_is_not_overwritten(store: Any) -> None:
    assert store.create(ENDPOINT, '{"old": 1}')
    racing = RacingWriter(store, ENDPOINT, '{"someone else": 1}')
    with pytest.raises(CniError) as info:
        _write_with_profile(racing, ENDPOINT, '{"e": 1}', "net1", lambda: NET1)
    assert info.value.code == TRY_AGAIN_LATER
    assert store.get(ENDPOINT).value == '{"someone else": 1}' and store.get(profile_key("net1")) is None
