"""calico-kube-controllers' pure parts: settings, the conversions, the reconcile plan, leak
judgement, the work queue. No etcd, no API."""

from __future__ import annotations

import json
import logging
import time

import pytest

from cni_calico.allocation.audit import Allocation
from cni_calico.ctl import k8s_convert
from cni_calico.datastore import KeyValue, MemoryDatastore
from cni_calico.kube import config, desired, leaks, reconcile
from cni_calico.kube.controllers.node import kubernetes_node_name, with_orch_ref
from cni_calico.kube.leaks import BlockSeen, PodSeen
from cni_calico.kube.workqueue import FULL, WorkQueue
from cni_calico.model import v3

# ------------------------------------------------------------------ settings


def test_defaults_are_calicos() -> None:
    settings = config.load({})
    assert settings.controllers == ("policy", "namespace", "serviceaccount", "workloadendpoint", "node")
    assert settings.etcd.endpoints == "http://127.0.0.1:2379" and settings.kubeconfig is None
    assert (settings.reconciler_period, settings.compaction_period, settings.leak_grace_period) == (300, 600, 900)
    assert settings.log_level == logging.INFO and settings.health_enabled
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9094)
    assert settings.leader_election and settings.leader_ttl == 15


def test_settings_from_the_environment() -> None:
    settings = config.load({"ETCD_ENDPOINTS": "https://e1:2379", "ETCD_CA_CERT_FILE": "/ca", "KUBECONFIG": "/kc",
                            "ENABLED_CONTROLLERS": "node, profile,policy,node", "LOG_LEVEL": "Warning",
                            "RECONCILER_PERIOD": "1m30s", "COMPACTION_PERIOD": "0", "HEALTH_ENABLED": "F",
                            "PROMETHEUS_METRICS_PORT": "0", "LEAK_GRACE_PERIOD": "250ms",
                            "LEADER_ELECTION_TTL": "3s", "LEADER_ELECTION_ID": "me"})
    assert settings.controllers == ("node", "namespace", "policy")  # Calico's alias; each once
    assert settings.etcd.endpoints == "https://e1:2379" and settings.etcd.ca_file == "/ca"
    assert settings.kubeconfig == "/kc" and settings.log_level == logging.WARNING
    assert (settings.reconciler_period, settings.compaction_period, settings.leak_grace_period) == (90, 0, 0.25)
    assert not settings.health_enabled and settings.metrics_port == 0
    assert (settings.leader_ttl, settings.identity) == (3, "me")


@pytest.mark.parametrize(("env", "named"), [
    ({"ENABLED_CONTROLLERS": "policy,ipam"}, "ENABLED_CONTROLLERS: unknown controller 'ipam'"),
    ({"ENABLED_CONTROLLERS": " , "}, "ENABLED_CONTROLLERS: no controller enabled"),
    ({"RECONCILER_PERIOD": "5"}, "RECONCILER_PERIOD: invalid duration '5'"),
    ({"RECONCILER_PERIOD": "0"}, "RECONCILER_PERIOD: '0': must be longer than 0"),
    ({"COMPACTION_PERIOD": "-1m"}, "COMPACTION_PERIOD: invalid duration"),
    ({"HEALTH_ENABLED": "yes"}, "HEALTH_ENABLED: invalid boolean 'yes'"),
    ({"PROMETHEUS_METRICS_PORT": "70000"}, "PROMETHEUS_METRICS_PORT: invalid port"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL: unknown log level 'loud'"),
    ({"LEADER_ELECTION_TTL": "1s"}, "LEADER_ELECTION_TTL: '1s' is too short"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.load(env)
    assert str(exc.value).startswith(named)


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("300ms", 0.3), ("1.5h", 5400), ("2h45m", 9900),
                                                ("10s", 10), ("1m0.5s", 60.5), ("+5s", 5)])
def test_go_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == pytest.approx(seconds)


# ------------------------------------------------------------------ conversions

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
    "name": "prod", "uid": "5e1a", "resourceVersion": "7", "creationTimestamp": "2024-05-01T10:00:00Z",
    "labels": {"team": "web", "kubernetes.io/metadata.name": "prod"}}, "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Active"}}


def test_namespace_profile_is_calicos() -> None:
    profile = desired.namespace_profile(NAMESPACE)
    assert profile == {
        "apiVersion": "projectcalico.org/v3", "kind": "Profile",
        "metadata": {"name": "kns.prod", "uid": "5e1a", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                 "labelsToApply": {"pcns.team": "web", "pcns.kubernetes.io/metadata.name": "prod",
                                   "pcns.projectcalico.org/name": "prod"}}}
    v3.validate(profile)  # what calico-node validates before it uses a profile


def test_namespace_label_too_long_with_its_prefix_is_left_out() -> None:
    long_key = "k" * 62  # valid in Kubernetes; 67 characters with `pcns.`
    profile = desired.namespace_profile({"metadata": {"name": "n", "labels": {long_key: "v", "ok": "1"}}})
    assert profile["spec"]["labelsToApply"] == {"pcns.ok": "1", "pcns.projectcalico.org/name": "n"}


def test_service_account_profile_is_calicos() -> None:
    profile = desired.service_account_profile({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
        "name": "builder", "namespace": "ci", "labels": {"tier": "backend"}}})
    assert profile == {"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                       "metadata": {"name": "ksa.ci.builder"},
                       "spec": {"labelsToApply": {"pcsa.tier": "backend", "pcsa.projectcalico.org/name": "builder"}}}


POLICY = {"metadata": {"name": "web-ingress", "namespace": "prod", "uid": "77", "generation": 1,
                       "resourceVersion": "9", "creationTimestamp": "2024-05-01T10:00:00Z"},
          "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                "ports": [{"protocol": "TCP", "port": 8080}]}]}}


def test_network_policy_is_calicoctl_converts() -> None:
    """One implementation for both: the controller's document is `calicoctl convert`'s, plus the
    source's creationTimestamp and uid."""
    stored = desired.network_policy(POLICY)
    converted = k8s_convert.to_v3({**POLICY, "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"})
    assert stored["spec"] == v3.to_stored(v3.validate(converted))["spec"]
    assert stored["metadata"] == {"name": "knp.default.web-ingress", "namespace": "prod", "uid": "77",
                                  "creationTimestamp": "2024-05-01T10:00:00Z"}
    assert stored["spec"]["selector"] == "projectcalico.org/orchestrator == 'k8s' && app == 'web'"
    assert stored["spec"]["ingress"][0]["destination"] == {"ports": [8080]}


def test_a_policy_calico_cannot_take_is_not_convertible() -> None:
    bad = {**POLICY, "spec": {**POLICY["spec"], "podSelector": {"matchLabels": {"app": "a b"}}}}
    with pytest.raises(desired.NotConvertible, match=r"spec\.podSelector\.matchLabels\.app"):
        desired.network_policy(bad)


POD = {"metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web"}},
       "spec": {"nodeName": "node1", "serviceAccountName": "builder"}}
ENDPOINT = {"kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "node1-k8s-web--1-eth0", "namespace": "prod",
                         "labels": {"projectcalico.org/namespace": "prod", "projectcalico.org/orchestrator": "k8s"}},
            "spec": {"orchestrator": "k8s", "pod": "web-1", "node": "node1", "containerID": "c1", "endpoint": "eth0",
                     "interfaceName": "cali1", "ipNetworks": ["10.0.0.5/32"], "profiles": ["kns.prod"]}}


def test_endpoint_labels_are_the_pods_plus_calicos() -> None:
    assert desired.endpoint_labels(POD) == {"app": "web", "projectcalico.org/namespace": "prod",
                                            "projectcalico.org/orchestrator": "k8s",
                                            "projectcalico.org/serviceaccount": "builder"}


def test_endpoint_update_changes_labels_and_account_only() -> None:
    stored = json.dumps(ENDPOINT, sort_keys=True)
    updated = json.loads(desired.endpoint_update(stored, POD) or "{}")
    assert updated["metadata"]["labels"] == desired.endpoint_labels(POD)
    assert updated["spec"].pop("serviceAccountName") == "builder"
    assert updated["spec"] == ENDPOINT["spec"] and updated["metadata"]["name"] == ENDPOINT["metadata"]["name"]
    assert desired.endpoint_update(json.dumps(updated | {"spec": {**updated["spec"], "serviceAccountName": "builder"}}),
                                   POD) is None  # already so: no write


def test_which_pods_have_endpoints() -> None:
    assert desired.has_endpoints(POD)
    assert not desired.has_endpoints({**POD, "spec": {"nodeName": "node1", "hostNetwork": True}})
    assert not desired.has_endpoints({**POD, "spec": {}})  # not scheduled yet
    assert desired.is_pods_endpoint(ENDPOINT, "prod", "web-1")
    assert not desired.is_pods_endpoint(ENDPOINT, "dev", "web-1")
    assert not desired.is_pods_endpoint({**ENDPOINT, "spec": {**ENDPOINT["spec"], "orchestrator": "cni"}},
                                        "prod", "web-1")


def test_orch_refs_link_a_calico_node_to_kubernetes() -> None:
    node = {"metadata": {"name": "n1"}, "spec": {"bgp": {"ipv4Address": "192.0.2.11/24"}}}
    assert kubernetes_node_name(node) is None
    linked = json.loads(with_orch_ref(json.dumps(node), "n1"))
    assert linked["spec"]["orchRefs"] == [{"nodeName": "n1", "orchestrator": "k8s"}]
    assert linked["spec"]["bgp"] == node["spec"]["bgp"]
    assert kubernetes_node_name(linked) == "n1"
    v3.validate({"apiVersion": "projectcalico.org/v3", "kind": "Node", **linked})


# ------------------------------------------------------------------ reconcile plan

def kv(value: object, revision: int = 5) -> KeyValue:
    return KeyValue("/k", json.dumps(value), revision, 1)


def test_plan() -> None:
    doc = {"a": 1}
    assert reconcile.plan(doc, None) == ("created", json.dumps(doc, sort_keys=True))
    assert reconcile.plan(doc, kv({"a": 1})) == ("unchanged", None)
    assert reconcile.plan(doc, kv({"a": 2})) == ("updated", json.dumps(doc, sort_keys=True))
    assert reconcile.plan(None, kv({"a": 2})) == ("deleted", None)
    assert reconcile.plan(None, None) == ("unchanged", None)
    assert reconcile.plan(doc, KeyValue("/k", "not json", 5, 1))[0] == "updated"


def test_converge_all_writes_deletes_and_keeps_only_what_it_owns() -> None:
    ds = MemoryDatastore()
    owned = reconcile.Owned("networkpolicies", "knp.default.")
    wanted_key, stale_key, kept_key = (owned.key(f"knp.default.{n}", "prod") for n in ("a", "stale", "kept"))
    foreign = owned.key("users-own", "prod")
    for key in (stale_key, kept_key, foreign):
        assert ds.create(key, "{}")
    changes = reconcile.converge_all(ds, owned, {wanted_key: {"x": 1}}, keep=[kept_key])
    assert changes == {wanted_key: "created", stale_key: "deleted"}
    assert sorted(kv.key for kv in ds.list(owned.prefix)) == sorted([wanted_key, kept_key, foreign])
    assert reconcile.converge_all(ds, owned, {wanted_key: {"x": 1}}, keep=[kept_key]) == {}  # nothing to do
    with pytest.raises(ValueError, match="not a key this controller owns"):
        reconcile.converge_all(ds, owned, {foreign: {}})


def test_ownership_is_by_plural_and_name_prefix() -> None:
    owned = reconcile.Owned("networkpolicies", "knp.default.")
    assert owned.owns("/calico/resources/v3/projectcalico.org/networkpolicies/prod/knp.default.web")
    assert not owned.owns("/calico/resources/v3/projectcalico.org/networkpolicies/prod/web")
    assert not owned.owns("/calico/resources/v3/projectcalico.org/globalnetworkpolicies/knp.default.web")


# ------------------------------------------------------------------ leaks

def allocation(ip: str, node: str, handle: str, *, pod: str | None = None, namespace: str = "prod",
               sequence: int = 0) -> Allocation:
    attrs = {"node": node, **({"pod": pod, "namespace": namespace} if pod else {})}
    return Allocation(ip=ip, block="10.0.0.0/26", handle=handle, node=node, block_node=node,
                      sequence_number=sequence, attributes=attrs)


def test_judge_follows_calicos_rules() -> None:
    gone_pod = allocation("10.0.0.1", "gone", "net.c1", pod="p1")
    bound = allocation("10.0.0.2", "gone", "net.c2", pod="p2")
    tunnel = allocation("10.0.0.3", "gone", "ipip-tunnel-addr-gone")
    no_pod = allocation("10.0.0.4", "gone", "net.c4")
    live_candidate = allocation("10.0.0.5", "live", "net.c5", pod="p5")
    live_valid = allocation("10.0.0.6", "live", "net.c6", pod="p6")
    moved = allocation("10.0.0.7", "live", "net.c7", pod="p7")
    live_tunnel = allocation("10.0.0.8", "live", "ipip-tunnel-addr-live")
    stranger = allocation("10.0.0.9", "not-kubernetes", "net.c9", pod="p9")
    readdressed = allocation("10.0.0.10", "live", "net.c10", pod="p10")  # recreated with another address
    reported = allocation("10.0.0.11", "live", "net.c11", pod="p11")
    unscheduled = allocation("10.0.0.12", "live", "net.c12", pod="p12")
    pods = {("prod", "p2"): PodSeen("gone"), ("prod", "p6"): PodSeen("live"), ("prod", "p7"): PodSeen("elsewhere"),
            ("prod", "p10"): PodSeen("live", frozenset({"10.0.0.99"})),
            ("prod", "p11"): PodSeen("live", frozenset({"10.0.0.11"})), ("prod", "p12"): PodSeen("")}
    verdict = leaks.judge([gone_pod, bound, tunnel, no_pod, live_candidate, live_valid, moved, live_tunnel, stranger,
                           readdressed, reported, unscheduled],
                          live_nodes={"live"}, gone_nodes={"gone"}, pods=pods)
    assert verdict.leaked == [gone_pod, tunnel]
    assert verdict.holding == {"gone": [bound, no_pod]}
    assert verdict.candidates == [live_candidate, moved, readdressed]


def test_judge_compares_pods_with_the_kubernetes_name_of_the_calico_node() -> None:
    """calico-node may register under another name than its Kubernetes node's (orchRefs)."""
    on_calico_name = allocation("10.0.0.1", "calico-1", "net.c1", pod="p1")
    pods = {("prod", "p1"): PodSeen("k8s-1")}
    assert leaks.judge([on_calico_name], {"calico-1"}, set(), pods, {"calico-1": "k8s-1"}).candidates == []
    assert leaks.judge([on_calico_name], {"calico-1"}, set(), pods, {"calico-1": "k8s-2"}).candidates == [
        on_calico_name]
    # A node no Calico Node stands for: its Kubernetes name is unknown, so only the pod's existence
    # and addresses count.
    verdict = leaks.judge([on_calico_name], set(), {"calico-1"}, pods, {"calico-1": ""})
    assert verdict.holding == {"calico-1": [on_calico_name]} and verdict.leaked == []


def test_a_pods_addresses_come_from_calicos_annotations_else_its_status() -> None:
    bare = {"metadata": {"name": "p"}, "spec": {}}
    assert leaks.pod_seen(bare) == PodSeen("")
    status = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"},
              "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::0001"}]}}
    assert leaks.pod_seen(status) == PodSeen("n1", frozenset({"10.0.0.1", "fd00::1"}))
    assert leaks.pod_seen({**status, "status": {"podIP": "10.0.0.2"}}).ips == {"10.0.0.2"}
    annotated = {**status, "metadata": {"name": "p", "annotations": {
        "cni.projectcalico.org/podIPs": "10.0.0.3/32,fd00::3/128", "cni.projectcalico.org/podIP": "10.0.0.4/32"}}}
    assert leaks.pod_seen(annotated).ips == {"10.0.0.3", "fd00::3"}
    garbled = {**status, "status": {"podIPs": [{"ip": "not-an-ip"}]}}
    assert leaks.pod_seen(garbled).ips == frozenset()  # proves nothing: the pod still owns what it has


def test_a_handle_goes_whole_or_not_at_all() -> None:
    a1, a2 = allocation("10.0.0.1", "n", "net.c1", pod="p"), allocation("10.0.0.2", "n", "net.c1", pod="p")
    b1 = allocation("10.0.0.3", "n", "net.c2", pod="q")
    assert leaks.whole_handles([a1, b1], [a1, a2, b1]) == [b1]
    assert leaks.whole_handles([a1, a2, b1], [a1, a2, b1]) == [a1, a2, b1]


def test_grace_period() -> None:
    tracker = leaks.GraceTracker(grace=10)
    a = allocation("10.0.0.1", "n", "net.c1", pod="p")
    b = allocation("10.0.0.2", "n", "net.c2", pod="q")
    assert tracker.confirmed([a], now=100) == []
    assert tracker.confirmed([a, b], now=105) == []
    assert tracker.confirmed([a, b], now=110) == [a]  # a: 10 s a candidate; b: 5 s
    assert tracker.confirmed([b], now=111) == []  # a valid again: forgotten
    assert tracker.confirmed([a, b], now=115) == [b]  # a starts over
    reused = allocation("10.0.0.2", "n", "net.c2", pod="q", sequence=1)  # released and handed out again
    assert tracker.confirmed([reused], now=116) == []
    assert leaks.GraceTracker(grace=0).confirmed([a], now=1e9) == []  # 0: never


def test_spare_blocks_are_chosen_as_calico_chooses_them() -> None:
    def block(cidr: str, node: str, in_use: int, free: int) -> BlockSeen:
        return BlockSeen(cidr, node, in_use, free)

    only = block("10.0.0.0/29", "alone", 0, 8)  # a node's last block stays
    busy, spare = block("10.0.1.0/29", "n1", 5, 3), block("10.0.1.8/29", "n1", 0, 8)
    full, kept = block("10.0.2.0/29", "n2", 7, 1), block("10.0.2.8/29", "n2", 0, 8)  # 1 free elsewhere: needed
    e1, e2 = block("10.0.3.0/29", "n3", 0, 8), block("10.0.3.8/29", "n3", 0, 8)  # two empty: one goes
    assert leaks.spare_blocks([only, busy, spare, full, kept, e1, e2]) == [spare, e1]


def test_a_spare_block_goes_after_the_grace_period() -> None:
    tracker = leaks.EmptyBlockTracker(grace=10)
    spare = BlockSeen("10.0.1.8/29", "n1", 0, 8)
    assert tracker.confirmed([spare], now=100) == []
    assert tracker.confirmed([spare], now=110) == [spare]
    assert tracker.confirmed([], now=111) == []  # used again: starts over
    assert tracker.confirmed([spare], now=115) == []
    assert leaks.EmptyBlockTracker(grace=0).confirmed([spare], now=1e9) == []


# ------------------------------------------------------------------ work queue

def test_work_queue_dedupes_and_retries_with_backoff() -> None:
    queue = WorkQueue()
    for item in ("a", "b", "a"):
        queue.add(item)
    assert [queue.get(0.1) for _ in range(2)] == ["a", "b"]
    assert queue.get(0.05) is None
    for item in ("a", "b", FULL, "c"):  # a waiting FULL subsumes the rest, before and after it
        queue.add(item)
    assert queue.get(0.1) == FULL
    queue.add("d")  # FULL has started: this one is after what it read
    assert queue.get(0.1) == "d" and queue.get(0.05) is None
    first = queue.retry("a")
    second = queue.retry("a")
    assert second == 2 * first
    began = time.monotonic()
    assert queue.get(1) == "a" and time.monotonic() - began >= first * 0.9
    assert queue.get(1) == "a"
    queue.forget("a")
    assert queue.retry("a") == first
    queue.close()
    assert queue.get(1) is None


# ------------------------------------------------------------------ compaction

def test_compaction_keeps_one_period_of_history() -> None:
    from cni_calico.datastore import WatchLost
    from cni_calico.kube.compaction import Compactor

    ds = MemoryDatastore()
    for i in range(5):
        assert ds.create(f"/k/{i}", "v")
    before = ds.revision
    compactor = Compactor(ds, period=0.3).start()  # type: ignore[arg-type]
    try:
        time.sleep(0.15)
        ds.watch("/k/", 2).cancel()  # first pass only noted the revision: history intact
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                ds.watch("/k/", 2).cancel()
            except WatchLost:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("never compacted")
        ds.watch("/k/", before + 1).cancel()  # what came after the noted revision is still there
    finally:
        compactor.stop()
    assert Compactor(ds, period=0).start()._thread.is_alive() is False  # 0: off
