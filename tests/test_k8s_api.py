"""The Kubernetes API stand-in, driven by the official Python client and by raw HTTPS: the verbs,
resourceVersions and optimistic concurrency, watches (events, bookmarks, 410 Gone, timeouts,
cut streams), authentication, and the strictness a client doing the wrong thing trips over."""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import urllib3
from kubernetes import client, watch

from cni_calico.lab.k8s.certs import make_ca, make_cert
from cni_calico.lab.k8s_api import K8sApiServer

from .k8s_helpers import api_client, pod, raw, watch_lines

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def api() -> Iterator[K8sApiServer]:
    with K8sApiServer(watch_timeout=30, bookmark_interval=0.3) as server:
        yield server


@pytest.fixture
def core(api: K8sApiServer) -> Iterator[client.CoreV1Api]:
    with api_client(api) as c:
        yield client.CoreV1Api(c)


def rv(obj: Any) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    return int(meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version)


def micro_now() -> datetime.datetime:
    """Now, never on a whole second: isoformat() then drops the fraction, which a MicroTime must have."""
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond or 1)


# ---- the verbs ---------------------------------------------------------------------------------
def test_pod_create_get_list_replace_patch_delete(api: K8sApiServer, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("web-1", app="web"))
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.generation == 1
    assert created.status.phase == "Pending" and created.spec.service_account_name == "default"
    assert created.spec.restart_policy == "Always"  # defaulted, as a real server does

    listed = core.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["web-1"]
    assert int(listed.metadata.resource_version) >= rv(created)
    assert core.read_namespaced_pod("web-1", "default").metadata.resource_version == created.metadata.resource_version

    created.spec.containers[0].image = "busybox:1.37"  # an image is one of the few mutable pod fields
    replaced = core.replace_namespaced_pod("web-1", "default", created)
    assert rv(replaced) > rv(created) and replaced.metadata.generation == 2

    patched = core.patch_namespaced_pod("web-1", "default", {"metadata": {"labels": {"tier": "front"}}})
    assert patched.metadata.labels == {"app": "web", "tier": "front"} and patched.metadata.generation == 2
    merged = core.patch_namespaced_pod("web-1", "default", {"metadata": {"labels": {"tier": None}}},
                                       _content_type="application/merge-patch+json")
    assert merged.metadata.labels == {"app": "web"}
    json_patched = core.patch_namespaced_pod("web-1", "default",
                                             [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}])
    assert json_patched.metadata.annotations == {"a": "b"}

    deleted = core.delete_namespaced_pod("web-1", "default")
    assert deleted.metadata.name == "web-1"  # pods answer DELETE with the object
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_pod("web-1", "default")
    assert gone.value.status == 404 and json.loads(gone.value.body)["reason"] == "NotFound"


def test_create_twice_is_409_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p"))
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("default", pod("p"))
    status = json.loads(exc.value.body)
    assert exc.value.status == 409 and status["kind"] == "Status" and status["reason"] == "AlreadyExists"


def test_stale_replace_is_409_conflict(api: K8sApiServer, core: client.CoreV1Api) -> None:
    first = core.create_namespaced_pod("default", pod("p"))
    api.modify("Pod", "p", lambda o: o["metadata"]["labels"].update(changed="yes"), namespace="default")
    first.metadata.labels["mine"] = "1"
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_pod("p", "default", first)
    status = json.loads(exc.value.body)
    assert exc.value.status == 409 and status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    # A patch carrying a stale resourceVersion is refused the same way.
    with pytest.raises(client.ApiException) as exc:
        core.patch_namespaced_pod("p", "default", {"metadata": {"resourceVersion": first.metadata.resource_version,
                                                                "labels": {"x": "y"}}})
    assert exc.value.status == 409


def test_delete_preconditions(api: K8sApiServer, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("p"))
    api.modify("Pod", "p", lambda o: o["metadata"]["labels"].update(x="1"), namespace="default")
    stale = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=created.metadata.resource_version))
    with pytest.raises(client.ApiException) as exc:
        core.delete_namespaced_pod("p", "default", body=stale)
    assert exc.value.status == 409 and "Precondition failed" in json.loads(exc.value.body)["message"]
    current = api.get("Pod", "p", "default")
    assert current is not None
    fresh = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=current["metadata"]["resourceVersion"]))
    core.delete_namespaced_pod("p", "default", body=fresh)
    assert api.get("Pod", "p", "default") is None


def test_noop_update_keeps_the_version(api: K8sApiServer, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("p"))
    before = api.resource_version
    again = core.replace_namespaced_pod("p", "default", created)
    assert again.metadata.resource_version == created.metadata.resource_version and api.resource_version == before


def test_pod_status_is_written_through_the_status_subresource(api: K8sApiServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p"))
    current = core.read_namespaced_pod("p", "default")
    current.status.pod_ip = "10.0.0.5"
    current.status.pod_ips = [client.V1PodIP(ip="10.0.0.5")]
    ignored = core.replace_namespaced_pod("p", "default", current)
    assert ignored.status.pod_ip is None  # the main resource keeps the old status
    current.metadata.resource_version = ignored.metadata.resource_version
    written = core.replace_namespaced_pod_status("p", "default", current)
    assert written.status.pod_ip == "10.0.0.5"
    moved = core.read_namespaced_pod("p", "default")
    moved.spec.node_name = "elsewhere"
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_pod("p", "default", moved)
    assert exc.value.status == 422 and "pod updates may not change" in json.loads(exc.value.body)["message"]


def test_finalizers_hold_an_object_until_removed(api: K8sApiServer, core: client.CoreV1Api) -> None:
    body = pod("p")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_pod("default", body)
    marked = core.delete_namespaced_pod("p", "default")
    assert marked.metadata.deletion_timestamp is not None
    assert api.get("Pod", "p", "default") is not None
    core.patch_namespaced_pod("p", "default", {"metadata": {"finalizers": None}},
                              _content_type="application/merge-patch+json")
    assert api.get("Pod", "p", "default") is None


def test_namespaces_lifecycle_and_service_accounts(api: K8sApiServer, core: client.CoreV1Api) -> None:
    ns = core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    assert ns.status.phase == "Active" and ns.spec.finalizers == ["kubernetes"]
    assert ns.metadata.labels == {"kubernetes.io/metadata.name": "team-a"}
    assert [sa.metadata.name for sa in core.list_namespaced_service_account("team-a").items] == ["default"]
    core.create_namespaced_service_account("team-a", {"metadata": {"name": "robot"}})
    body = pod("p", "team-a")
    body["spec"]["serviceAccountName"] = "robot"
    core.create_namespaced_pod("team-a", body)

    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("nowhere", pod("p", "nowhere"))
    assert exc.value.status == 404 and json.loads(exc.value.body)["message"] == 'namespaces "nowhere" not found'
    body["metadata"]["name"], body["spec"]["serviceAccountName"] = "q", "missing"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("team-a", body)
    assert exc.value.status == 403 and "serviceaccount" in exc.value.body

    terminating = core.delete_namespace("team-a")
    assert terminating["status"]["phase"] == "Terminating" and terminating["metadata"]["deletionTimestamp"]
    assert api.get("Namespace", "team-a") is None  # emptied, then gone
    assert api.list("Pod", "team-a") == [] and api.list("ServiceAccount", "team-a") == []


def test_network_policies(api: K8sApiServer) -> None:
    with api_client(api) as c:
        net = client.NetworkingV1Api(c)
        policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "allow-web", "namespace": "default"},
                  "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                           "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                                        "ports": [{"port": 80}]}]}}
        created = net.create_namespaced_network_policy("default", policy)
        assert created.spec.policy_types == ["Ingress"] and created.spec.ingress[0].ports[0].protocol == "TCP"
        assert created.metadata.generation == 1
        labelled = net.patch_namespaced_network_policy("allow-web", "default", {"metadata": {"labels": {"a": "b"}}})
        assert labelled.metadata.generation == 1  # metadata is not spec
        created.spec.egress = [client.V1NetworkPolicyEgressRule()]
        created.spec.policy_types = ["Ingress", "Egress"]
        created.metadata.resource_version = labelled.metadata.resource_version
        replaced = net.replace_namespaced_network_policy("allow-web", "default", created)
        assert replaced.metadata.generation == 2
        assert [p.metadata.name for p in net.list_network_policy_for_all_namespaces().items] == ["allow-web"]
        policy["metadata"]["name"] = "broken"
        policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] = "10.0.0.1/8"
        with pytest.raises(client.ApiException) as exc:
            net.create_namespaced_network_policy("default", policy)
        assert exc.value.status == 422 and json.loads(exc.value.body)["reason"] == "Invalid"
        status = net.delete_namespaced_network_policy("allow-web", "default")
        assert status["kind"] == "Status" and status["status"] == "Success"  # not a pod: a Status, not the object


def test_leases(api: K8sApiServer) -> None:
    with api_client(api, token=True) as c:
        coord = client.CoordinationV1Api(c)
        lease = client.V1Lease(metadata=client.V1ObjectMeta(name="calico-kube-controllers"),
                               spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15,
                                                       acquire_time=micro_now(), renew_time=micro_now()))
        created = coord.create_namespaced_lease("kube-system", lease)
        assert created.spec.holder_identity == "a"
        created.spec.renew_time = micro_now()
        renewed = coord.replace_namespaced_lease("calico-kube-controllers", "kube-system", created)
        with pytest.raises(client.ApiException) as exc:  # the loser of a race
            coord.replace_namespaced_lease("calico-kube-controllers", "kube-system", created)
        assert exc.value.status == 409
        renewed.metadata.resource_version = None  # leases refuse an unconditional update
        with pytest.raises(client.ApiException) as exc:
            coord.replace_namespaced_lease("calico-kube-controllers", "kube-system", renewed)
        assert exc.value.status == 422 and "metadata.resourceVersion" in exc.value.body
        other = client.V1Lease(metadata=client.V1ObjectMeta(name="made-by-put"), spec=client.V1LeaseSpec())
        made = coord.replace_namespaced_lease("made-by-put", "kube-system", other)  # PUT creates a lease
        assert made.metadata.uid
        coord.delete_namespaced_lease("made-by-put", "kube-system")
    no_micro = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x"},
                "spec": {"renewTime": "2025-01-01T00:00:00Z"}}
    status, answer, _ = raw(api, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", no_micro)
    assert status == 400 and "2006-01-02T15:04:05.000000Z07:00" in answer["message"]


def test_selectors(api: K8sApiServer, core: client.CoreV1Api) -> None:
    for name, labels, node in (("a", {"app": "web", "tier": "1"}, "n1"), ("b", {"app": "db"}, "n2"), ("c", {}, "n1")):
        body = pod(name, **labels)
        body["spec"]["nodeName"] = node
        core.create_namespaced_pod("default", body)

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in core.list_pod_for_all_namespaces(**kw).items]

    assert names(label_selector="app=web") == ["a"]
    assert names(label_selector="app in (web,db),!tier") == ["b"]
    assert names(label_selector="app notin (web)") == ["b", "c"]
    assert names(label_selector="app") == ["a", "b"]
    assert names(field_selector="spec.nodeName=n1") == ["a", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.namespace!=default") == []
    with pytest.raises(client.ApiException) as exc:
        names(field_selector="spec.containers=x")
    assert exc.value.status == 400 and "field label not supported" in exc.value.body
    with pytest.raises(client.ApiException) as exc:
        names(label_selector="app in web")
    assert exc.value.status == 400


def test_list_pages_and_exact_versions(api: K8sApiServer, core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_pod("default", pod(f"p{i}"))
    first = core.list_namespaced_pod("default", limit=2)
    assert len(first.items) == 2 and first.metadata._continue and first.metadata.remaining_item_count == 3
    core.delete_namespaced_pod("p4", "default")  # pages after the first still show the first page's snapshot
    names = [p.metadata.name for p in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_pod("default", limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert names == ["p0", "p1", "p2", "p3", "p4"]
    exact = core.list_namespaced_pod("default", resource_version=first.metadata.resource_version,
                                     resource_version_match="Exact")
    assert len(exact.items) == 5
    api.compact()
    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
    assert exc.value.status == 410 and json.loads(exc.value.body)["reason"] == "Expired"


def test_list_items_carry_no_kind(api: K8sApiServer) -> None:
    status, answer, _ = raw(api, "GET", "/api/v1/namespaces")
    assert status == 200 and answer["kind"] == "NamespaceList" and answer["apiVersion"] == "v1"
    assert answer["metadata"]["resourceVersion"].isdigit()
    assert all("kind" not in item and "apiVersion" not in item for item in answer["items"])


# ---- watch -------------------------------------------------------------------------------------
def changes_later(api: K8sApiServer, *steps: Any, delay: float = 0.4) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        for step in steps:
            step()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_watch_streams_added_modified_deleted(api: K8sApiServer, core: client.CoreV1Api) -> None:
    start = core.list_namespaced_pod("default").metadata.resource_version
    changes_later(api, lambda: api.create(pod("w")),
                  lambda: api.modify("Pod", "w", lambda o: o["metadata"]["labels"].update(v="2"), "default"),
                  lambda: api.delete("Pod", "w", "default"))
    seen: list[tuple[str, int]] = []
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, "default", resource_version=start, timeout_seconds=10):
        seen.append((event["type"], rv(event["raw_object"])))
        if event["type"] == "DELETED":
            stream.stop()
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [v for _, v in seen]
    assert versions == sorted(versions) and versions[0] > int(start)


def test_watch_without_version_starts_with_the_current_objects(api: K8sApiServer) -> None:
    api.create(pod("old-1"))
    api.create(pod("old-2"))
    events = watch_lines(api, "/api/v1/namespaces/default/pods?watch=true", stop_after=2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "old-1"), ("ADDED", "old-2")]
    assert events[0]["object"]["kind"] == "Pod"  # watch events carry the kind; list items do not
    events = watch_lines(api, "/api/v1/namespaces/default/pods?watch=1&resourceVersion=0", stop_after=2)
    assert len(events) == 2


def test_watch_with_selector_sees_objects_leave_it(api: K8sApiServer) -> None:
    api.create(pod("s", app="web"))
    start = api.resource_version
    changes_later(api, lambda: api.modify("Pod", "s", lambda o: o["metadata"]["labels"].update(app="db"), "default"))
    events = watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={start}&labelSelector=app%3Dweb&timeoutSeconds=5",
                         stop_after=1)
    assert events[0]["type"] == "DELETED" and events[0]["object"]["metadata"]["labels"] == {"app": "web"}


def test_bookmarks_only_when_asked(api: K8sApiServer, core: client.CoreV1Api) -> None:
    start = api.resource_version
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unrelated"}})
    events = watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=1")
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and all(e["object"]["kind"] == "Pod" for e in bookmarks)
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) == api.resource_version  # past the namespace
    plain = watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={start}&timeoutSeconds=1")
    assert plain == []
    types = [e["type"] for e in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=str(start),
                                                     allow_watch_bookmarks=True, timeout_seconds=1)]
    assert set(types) == {"BOOKMARK"}


def test_watch_from_a_compacted_version_is_410(api: K8sApiServer, core: client.CoreV1Api) -> None:
    start = core.list_namespaced_pod("default").metadata.resource_version
    api.create(pod("a"))
    api.compact()
    with pytest.raises(client.ApiException) as exc:
        for _ in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=start, timeout_seconds=5):
            pass
    assert exc.value.status == 410
    events = watch_lines(api, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={start}")
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    assert "too old resource version" in events[0]["object"]["message"]


def test_history_window_expires_old_versions() -> None:
    with K8sApiServer(history_limit=3) as api:
        start = api.resource_version
        for i in range(5):
            api.create(pod(f"p{i}"))
        events = watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={start}")
        assert events[0]["object"]["code"] == 410
        recent = api.resource_version - 2
        events = watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={recent}&timeoutSeconds=1")
        assert [e["type"] for e in events] == ["ADDED", "ADDED"]


def test_future_version_is_a_timeout_error(api: K8sApiServer) -> None:
    api.registry.wait_for_version_seconds = 0.3
    events = watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={api.resource_version + 100}")
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 504
    status, answer, _ = raw(api, "GET", f"/api/v1/pods?resourceVersion={api.resource_version + 100}")
    assert status == 504 and answer["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_timeout_seconds_ends_a_stream(api: K8sApiServer) -> None:
    began = time.monotonic()
    assert watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={api.resource_version}&timeoutSeconds=1") == []
    assert 0.9 <= time.monotonic() - began < 3


def test_server_side_watch_timeout() -> None:
    with K8sApiServer(watch_timeout=1) as api:
        began = time.monotonic()
        watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={api.resource_version}")
        assert 0.9 <= time.monotonic() - began < 3.5  # jittered between 1x and 2x, as the real server
        began = time.monotonic()  # a client asking for longer still gets cut at the server's bound
        watch_lines(api, f"/api/v1/pods?watch=1&resourceVersion={api.resource_version}&timeoutSeconds=600")
        assert time.monotonic() - began < 3.5


def test_cut_watches_abruptly_breaks_the_stream(api: K8sApiServer, core: client.CoreV1Api) -> None:
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            for _ in watch.Watch().stream(core.list_namespaced_pod, "default",
                                          resource_version=str(api.resource_version), timeout_seconds=30):
                pass
        except BaseException as exc:  # noqa: BLE001 (kept for the assertions below, not lost in the thread)
            failure.append(exc)
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    wait_until(lambda: api.open_watches == 1)
    assert api.cut_watches(abrupt=True) == 1
    thread.join(10)
    assert not thread.is_alive() and failure and isinstance(failure[0], (urllib3.exceptions.HTTPError, OSError))


def test_clean_cut_makes_the_client_resume_from_its_last_version(api: K8sApiServer, core: client.CoreV1Api) -> None:
    seen: list[str] = []
    stream = watch.Watch()

    def consume() -> None:
        for event in stream.stream(core.list_namespaced_pod, "default", resource_version=str(api.resource_version)):
            seen.append(event["object"].metadata.name)
            if len(seen) == 2:
                stream.stop()
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    wait_until(lambda: api.open_watches == 1)
    api.create(pod("before-cut"))
    wait_until(lambda: seen == ["before-cut"])
    cut_at = api.resource_version
    api.cut_watches(abrupt=False)
    wait_until(lambda: api.open_watches == 1 and api.log.count(path="/api/v1/namespaces/default/pods", watch=True) == 2)
    api.create(pod("after-cut"))
    thread.join(10)
    assert seen == ["before-cut", "after-cut"]
    resumed = api.log.records(path="/api/v1/namespaces/default/pods", watch=True)[-1]
    assert f"resourceVersion={cut_at}" in resumed.query


def wait_until(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# ---- authentication ----------------------------------------------------------------------------
def test_token_and_certificate_authentication(api: K8sApiServer) -> None:
    status, answer, _ = raw(api, "GET", "/api/v1/namespaces", cert=False)
    assert status == 401 and answer == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert raw(api, "GET", "/api/v1/namespaces", cert=False, token="wrong")[0] == 401
    assert raw(api, "GET", "/api/v1/namespaces", cert=False, headers={"Authorization": f"Basic {api.token}"})[0] == 401
    assert raw(api, "GET", "/api/v1/namespaces", cert=False, token=api.token)[0] == 200
    assert raw(api, "GET", "/api/v1/namespaces")[0] == 200
    users = {rec.user for rec in api.log.records(path="/api/v1/namespaces") if rec.status == 200}
    assert users == {"lab-token-user", "cni-calico-admin"}  # the token's user, and the certificate's CN
    assert raw(api, "GET", "/healthz", cert=False)[:2] == (200, "ok")  # public, as with anonymous auth
    assert raw(api, "GET", "/healthz", cert=False, token="wrong")[0] == 401


def test_certificate_from_another_ca_is_refused(api: K8sApiServer, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path, "other-ca")
    impostor = make_cert(tmp_path, "impostor", other_ca, "cni-calico-admin", organizations=("system:masters",))
    context = ssl.create_default_context(cafile=str(api.ca_file))
    context.load_cert_chain(impostor.cert, impostor.key)
    # Refused in the TLS handshake (kube-apiserver answers 401 after it): no request gets through.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        raw(api, "GET", "/api/v1/namespaces", context=context)
    assert api.log.count(path="/api/v1/namespaces") == 0


def test_client_must_verify_the_server(api: K8sApiServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        raw(api, "GET", "/healthz", context=ssl.create_default_context())


# ---- strictness --------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,body,content_type,code,reason", [
    ("POST", "/api/v1/namespaces/default/pods", pod("x"), "text/plain", 415, "UnsupportedMediaType"),
    ("PATCH", "/api/v1/namespaces/default/pods/x", {"metadata": {}}, "application/json", 415, "UnsupportedMediaType"),
    ("PATCH", "/api/v1/namespaces/default/pods/x", {"metadata": {}}, None, 415, "UnsupportedMediaType"),
    ("POST", "/api/v1/namespaces/default/pods", b"{not json", "application/json", 400, "BadRequest"),
    ("POST", "/api/v1/namespaces/default/pods", dict(pod("x"), kind="Namespace"), "application/json", 400,
     "BadRequest"),
    ("POST", "/api/v1/namespaces/default/pods", dict(pod("x"), apiVersion="networking.k8s.io/v1"),
     "application/json", 400, "BadRequest"),
    ("POST", "/api/v1/namespaces/kube-system/pods", pod("x", "default"), "application/json", 400, "BadRequest"),
    ("PUT", "/api/v1/namespaces/default/pods/other", pod("x"), "application/json", 400, "BadRequest"),
    ("POST", "/api/v1/namespaces/default/pods", {"kind": "Pod", "metadata": {"name": "x"}, "spec": {}},
     "application/json", 422, "Invalid"),
    ("POST", "/api/v1/namespaces/default/pods", pod("Bad_Name"), "application/json", 422, "Invalid"),
    ("POST", "/api/v1/namespaces/default/pods", dict(pod("x"), metadata={"name": "x", "labels": {"a": "b c"}}),
     "application/json", 422, "Invalid"),
    ("POST", "/api/v1/namespaces/default/pods", dict(pod("x"), metadata={"name": "x", "resourceVersion": "5"}),
     "application/json", 500, "InternalError"),
    ("POST", "/api/v1/pods", pod("x"), "application/json", 405, "MethodNotAllowed"),
    ("GET", "/api/v1/pods?resourceVersion=abc", None, None, 400, "BadRequest"),
    ("GET", "/api/v1/pods?watch=1&resourceVersion=1x", None, None, 400, "BadRequest"),
    ("GET", "/api/v1/pods?timeoutSeconds=soon&watch=1", None, None, 400, "BadRequest"),
    ("GET", "/api/v1/pods?resourceVersionMatch=Exact", None, None, 422, "Invalid"),
    ("GET", "/api/v1/widgets", None, None, 404, "NotFound"),
    ("GET", "/apis/networking.k8s.io/v1/networkpolicies/x", None, None, 404, "NotFound"),
    ("GET", "/api/v1/namespaces/default/pods/x/logs", None, None, 404, "NotFound"),
    ("DELETE", "/api/v1/namespaces", None, None, 405, "MethodNotAllowed"),
])
def test_strictness(api: K8sApiServer, method: str, path: str, body: Any, content_type: str | None, code: int,
                    reason: str) -> None:
    status, answer, _ = raw(api, method, path, body, content_type=content_type)
    assert (status, answer["kind"], answer["reason"], answer["code"]) == (code, "Status", reason, code), answer


def test_missing_content_type_is_json_as_on_the_real_server(api: K8sApiServer) -> None:
    status, answer, _ = raw(api, "POST", "/api/v1/namespaces/default/pods", pod("x"), content_type=None)
    assert status == 201 and answer["metadata"]["name"] == "x"


def test_yaml_body_and_answer(api: K8sApiServer) -> None:
    body = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-yaml\n"
    status, answer, headers = raw(api, "POST", "/api/v1/namespaces", body, content_type="application/yaml",
                                  headers={"Accept": "application/yaml"})
    assert status == 201 and headers["Content-Type"] == "application/yaml" and "name: from-yaml" in answer


def test_accept_header_is_negotiated(api: K8sApiServer) -> None:
    status, answer, _ = raw(api, "GET", "/api/v1/namespaces", headers={"Accept": PROTOBUF_ONLY})
    assert status == 406 and answer["reason"] == "NotAcceptable"
    assert raw(api, "GET", "/api/v1/namespaces", headers={"Accept": TABLE_THEN_JSON})[0] == 200


PROTOBUF_ONLY = "application/vnd.kubernetes.protobuf"
TABLE_THEN_JSON = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_discovery(api: K8sApiServer) -> None:
    with api_client(api) as c:
        assert client.VersionApi(c).get_code().git_version.startswith("v1.")
        assert client.CoreApi(c).get_api_versions().versions == ["v1"]
        groups = {g.name for g in client.ApisApi(c).get_api_versions().groups}
        assert {"networking.k8s.io", "coordination.k8s.io"} <= groups
        resources = {r.name: r for r in client.CoreV1Api(c).get_api_resources().resources}
        assert resources["pods"].namespaced and not resources["nodes"].namespaced and "pods/status" in resources
        assert "watch" in resources["namespaces"].verbs


# ---- how a client behaves ----------------------------------------------------------------------
def test_request_log_shows_connection_reuse(api: K8sApiServer, core: client.CoreV1Api) -> None:
    for _ in range(5):
        core.list_namespace()
    assert api.log.count(path="/api/v1/namespaces", method="GET") == 5
    assert api.log.connections == 1  # the client kept one connection alive


def test_nodes(api: K8sApiServer, core: client.CoreV1Api) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "host1", "labels": {"kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}}
    created = core.create_node(node)
    assert created.spec.pod_cidrs == ["10.244.1.0/24"] and created.status.addresses[0].address == "192.0.2.10"
    created.spec.pod_cidr, created.spec.pod_cidrs = "10.244.2.0/24", ["10.244.2.0/24"]
    with pytest.raises(client.ApiException) as exc:
        core.replace_node("host1", created)
    assert exc.value.status == 422
    assert [n.metadata.name for n in core.list_node(field_selector="metadata.name=host1").items] == ["host1"]
    assert core.delete_node("host1")["status"] == "Success"


# ---- as a process, inside a network namespace --------------------------------------------------
CLIENT_SCRIPT = """
import sys
from kubernetes import client, config
with config.new_client_from_config(config_file=sys.argv[1]) as c:
    print(",".join(n.metadata.name for n in client.CoreV1Api(c).list_namespace().items))
"""


@pytest.mark.root
def test_cli_serves_inside_a_network_namespace() -> None:
    netns = f"cck8s-{uuid.uuid4().hex[:6]}"
    state = Path(tempfile.mkdtemp(prefix="cni-calico-k8s-cli-"))
    server: subprocess.Popen[bytes] | None = None
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "cni_calico.lab.k8s_api",
                                   "--listen", "127.0.0.1:0", "--state-dir", str(state)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        assert server.stdout is not None
        url = server.stdout.readline().decode().strip()
        assert url.startswith("https://127.0.0.1:") and (state / "url").read_text().strip() == url
        for name in ("ca.crt", "client.crt", "client.key", "token", "kubeconfig", "kubeconfig-token"):
            assert (state / name).exists(), name
        for kubeconfig in ("kubeconfig", "kubeconfig-token"):
            inside = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT_SCRIPT,
                                     str(state / kubeconfig)], capture_output=True, text=True, timeout=60)
            assert inside.returncode == 0, inside.stderr
            assert inside.stdout.strip() == "default,kube-node-lease,kube-public,kube-system"
        port = int(url.rsplit(":", 1)[1])
        # not on the machine's own loopback: only inside the namespace
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            probe.close()
            raise AssertionError("something listens on the machine's loopback at that port")
        server.terminate()
        assert server.wait(15) == 0
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(state, ignore_errors=True)


def test_streaming_initial_events_end_with_a_marked_bookmark(api: K8sApiServer) -> None:
    api.create(pod("a"))
    events = watch_lines(api, "/api/v1/namespaces/default/pods?watch=1&sendInitialEvents=true"
                              "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan", stop_after=2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_dry_run_persists_nothing(api: K8sApiServer) -> None:
    before = api.resource_version
    status, answer, _ = raw(api, "POST", "/api/v1/namespaces/default/pods?dryRun=All", pod("x"))
    assert status == 201 and answer["metadata"]["uid"]
    assert api.get("Pod", "x", "default") is None and api.resource_version == before
    assert raw(api, "POST", "/api/v1/namespaces/default/pods?dryRun=Some", pod("x"))[0] == 400
