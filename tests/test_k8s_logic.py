"""The pure parts of the Kubernetes API stand-in: selectors, patches, routes, the versioned store."""

from __future__ import annotations

import pytest

from cni_calico.lab.k8s import resources as r
from cni_calico.lab.k8s.errors import ApiError
from cni_calico.lab.k8s.options import parse_list_options
from cni_calico.lab.k8s.patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from cni_calico.lab.k8s.routes import DiscoveryPath, ResourcePath, route
from cni_calico.lab.k8s.selectors import SelectorError, parse_field_selector, parse_label_selector
from cni_calico.lab.k8s.store import ObjectStore, TooOld
from cni_calico.lab.k8s.strategies import strategy
from cni_calico.lab.k8s.watch import Watcher


@pytest.mark.parametrize("selector,labels,expected", [
    ("", {}, True),
    ("a=b", {"a": "b"}, True), ("a==b", {"a": "c"}, False), ("a!=b", {}, True), ("a!=b", {"a": "b"}, False),
    ("a in (x, y)", {"a": "y"}, True), ("a notin (x)", {"a": "x"}, False), ("a notin (x)", {}, True),
    ("a", {"a": ""}, True), ("!a", {"a": "1"}, False), ("a=", {"a": ""}, True),
    ("n>3", {"n": "4"}, True), ("n<3", {"n": "4"}, False), ("n>3", {"n": "x"}, False),
    ("example.com/role=db,tier in (1,2)", {"example.com/role": "db", "tier": "2"}, True),
])
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("selector", ["a in x", "a in ()", "=b", "a=b,", "a b", "a=b c", "-a=b", "a>x", "a=(b)"])
def test_bad_label_selectors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "p,1", "namespace": "ns"}, "spec": {"nodeName": "n1", "hostNetwork": False}}
    fields = r.PODS.selectable_fields
    assert parse_field_selector(r"metadata.name=p\,1,spec.nodeName==n1", fields).matches(pod)
    assert parse_field_selector("spec.hostNetwork=false,status.phase!=Running", fields).matches(pod)
    assert not parse_field_selector("spec.nodeName=n2", fields).matches(pod)
    with pytest.raises(SelectorError, match="field label not supported"):
        parse_field_selector("spec.nodeName=x", r.NAMESPACES.selectable_fields)
    with pytest.raises(SelectorError):
        parse_field_selector("metadata.name", fields)


def test_merge_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == \
        {"a": {"c": 2, "d": 3}, "l": [2]}


def test_json_patch() -> None:
    doc = {"metadata": {"labels": {"a/b": "1"}}, "list": [1, 2]}
    assert json_patch(doc, [{"op": "remove", "path": "/metadata/labels/a~1b"},
                            {"op": "add", "path": "/list/-", "value": 3},
                            {"op": "replace", "path": "/list/0", "value": 0},
                            {"op": "test", "path": "/list", "value": [0, 2, 3]}]) == \
        {"metadata": {"labels": {}}, "list": [0, 2, 3]}
    assert doc["list"] == [1, 2]  # the original is untouched
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/list", "value": []}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "replace", "path": "/missing", "value": 1}])
    with pytest.raises(PatchError):
        json_patch(doc, {"op": "add"})


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    pod = {"metadata": {"finalizers": ["a"]},
           "spec": {"containers": [{"name": "c1", "image": "x"}, {"name": "c2", "image": "y"}],
                    "tolerations": [{"key": "t"}]}}
    patched = strategic_merge_patch(pod, {"metadata": {"finalizers": ["b"]},
                                          "spec": {"containers": [{"name": "c2", "image": "z"},
                                                                  {"name": "c1", "$patch": "delete"}],
                                                   "tolerations": [{"key": "u"}]}})
    assert patched["spec"]["containers"] == [{"name": "c2", "image": "z"}]
    assert patched["spec"]["tolerations"] == [{"key": "u"}]  # no merge key: replaced
    assert patched["metadata"]["finalizers"] == ["a", "b"]
    removed = strategic_merge_patch(patched, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]


@pytest.mark.parametrize("path,expected", [
    ("/api/v1/pods", ResourcePath(r.PODS, None, None)),
    ("/api/v1/namespaces/ns/pods", ResourcePath(r.PODS, "ns", None)),
    ("/api/v1/namespaces/ns/pods/p/status", ResourcePath(r.PODS, "ns", "p", "status")),
    ("/api/v1/namespaces", ResourcePath(r.NAMESPACES, None, None)),
    ("/api/v1/namespaces/ns", ResourcePath(r.NAMESPACES, None, "ns")),
    ("/api/v1/namespaces/ns/status", ResourcePath(r.NAMESPACES, None, "ns", "status")),
    ("/api/v1/nodes/n1", ResourcePath(r.NODES, None, "n1")),
    ("/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/np",
     ResourcePath(r.NETWORK_POLICIES, "ns", "np")),
    ("/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", ResourcePath(r.LEASES, "ns", "l")),
    ("/api/v1/watch/namespaces/ns/pods", ResourcePath(r.PODS, "ns", None, watch_path=True)),
    ("/api", DiscoveryPath(None, None, True)),
    ("/apis/networking.k8s.io", DiscoveryPath("networking.k8s.io", None, False)),
    ("/api/v1/pods/p", None), ("/api/v1/namespaces/ns/leases", None), ("/api/v2/pods", None),
    ("/api/v1/namespaces/ns/pods/p/exec", None), ("/apis/networking.k8s.io/v1/namespaces/ns/serviceaccounts", None),
    ("/api/v1/serviceaccounts/x/status", None), ("/api//v1/pods", None),
])
def test_routes(path: str, expected: object) -> None:
    assert route(path) == expected


def test_list_options_checks() -> None:
    opts = parse_list_options(r.PODS, {"watch": ["1"], "resourceVersion": ["7"], "allowWatchBookmarks": ["true"],
                                       "timeoutSeconds": ["5"], "unknown": ["x"]})
    assert (opts.watch, opts.resource_version, opts.allow_bookmarks, opts.timeout_seconds) == (True, 7, True, 5)
    for bad in ({"resourceVersion": ["-1"]}, {"limit": ["many"]}, {"watch": ["yes"]},
                {"labelSelector": ["a in"]}, {"continue": ["x"], "resourceVersion": ["3"]}):
        with pytest.raises(ApiError) as exc:
            parse_list_options(r.PODS, bad)
        assert exc.value.code == 400
    for bad in ({"resourceVersionMatch": ["Exact"]}, {"resourceVersionMatch": ["Exact"], "resourceVersion": ["0"]},
                {"resourceVersionMatch": ["Newest"], "resourceVersion": ["3"]},
                {"watch": ["1"], "sendInitialEvents": ["true"], "resourceVersionMatch": ["NotOlderThan"]}):
        with pytest.raises(ApiError) as exc:
            parse_list_options(r.PODS, bad)
        assert exc.value.code == 422


def obj(name: str, **labels: str) -> dict[str, object]:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "ns", "labels": labels}}


def test_store_versions_history_and_compaction() -> None:
    store = ObjectStore(history_limit=100, first_rv=10)
    a = store.commit("pods", obj("a"), "ADDED")
    assert a["metadata"]["resourceVersion"] == "11"
    store.commit("pods", obj("a", v="2"), "MODIFIED")
    store.commit("pods", obj("b"), "ADDED")
    store.commit("pods", store.get("pods", ("ns", "a")) or {}, "DELETED")
    assert [o["metadata"]["name"] for o in store.items("pods")] == ["b"]
    assert store.items_at("pods", 12)[0]["metadata"]["labels"] == {"v": "2"}  # rebuilt from the history
    assert [o["metadata"]["name"] for o in store.items_at("pods", 11)] == ["a"]
    assert [c.type for c in store.changes_after(11)] == ["MODIFIED", "ADDED", "DELETED"]
    store.compact(12)
    with pytest.raises(TooOld):
        store.changes_after(11)
    assert [c.rv for c in store.changes_after(12)] == [13, 14]
    with pytest.raises(RuntimeError):
        store.commit("pods", obj("b"), "ADDED")  # already there


def test_store_history_limit() -> None:
    store = ObjectStore(history_limit=2, first_rv=0)
    for i in range(4):
        store.commit("pods", obj(f"p{i}"), "ADDED")
    assert store.horizon == 2
    with pytest.raises(TooOld):
        store.items_at("pods", 1)


def test_watcher_filters_and_translates_selection_changes() -> None:
    store = ObjectStore(first_rv=0)
    store.commit("pods", obj("a", app="web"), "ADDED")
    watcher = Watcher(store, r.PODS, "ns", parse_list_options(r.PODS, {"labelSelector": ["app=web"],
                                                                          "resourceVersion": ["1"], "watch": ["1"]}))
    assert watcher.start() == []
    store.commit("namespaces", {"metadata": {"name": "x"}}, "ADDED")  # another resource: skipped
    store.commit("pods", obj("a", app="db"), "MODIFIED")  # leaves the selection
    store.commit("pods", obj("a", app="web"), "MODIFIED")  # comes back
    store.commit("pods", obj("b", app="db"), "ADDED")  # never in it
    events = watcher.poll(0)
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [("DELETED", "3"),
                                                                                           ("ADDED", "4")]
    assert watcher.bookmark()["object"]["metadata"]["resourceVersion"] == "5"


@pytest.mark.parametrize("cidr, excluded, valid", [
    ("10.0.0.0/8", "10.1.0.0/16", True),
    ("10.0.0.0/8", "192.168.0.0/16", False),
    ("10.0.0.0/8", "fd00::/64", False),  # the other IP version: refused, not a crash
    ("fd00::/48", "10.1.0.0/16", False),
])
def test_network_policy_except_must_lie_inside_the_cidr(cidr: str, excluded: str, valid: bool) -> None:
    policy = {"spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": cidr, "except": [excluded]}}]}]}}
    causes = strategy(r.NETWORK_POLICIES).validate(policy)
    refused = (f'Invalid value: "{excluded}": must be a strict subset of `cidr`',
               "spec.ingress[0].from[0].ipBlock.except[0]")
    assert [(c.message, c.field) for c in causes] == ([] if valid else [refused])
