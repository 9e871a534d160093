"""Kubernetes mode: the plugin's minimal API client against the API stand-in over real HTTPS, and
the lookup an ADD makes (two GETs, nothing else). No root: everything is on this loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_calico.cni.k8s.client import ApiClient, ClientPool, one_shot
from cni_calico.cni.k8s.lookup import Kubernetes
from cni_calico.cni.k8s.settings import ApiSettings
from cni_calico.cni.types import CalicoNetConf
from cni_calico.errors import CniError
from cni_calico.lab.k8s.certs import make_ca
from cni_calico.lab.k8s_api import K8sApiServer


@pytest.fixture(scope="module")
def api() -> Iterator[K8sApiServer]:
    with K8sApiServer() as server:
        server.create({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "shop", "labels": {"team": "a"},
                                    "annotations": {"cni.projectcalico.org/ipv4pools": '["ns-pool"]'}}})
        server.create({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "front", "namespace": "shop"}})
        server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "web", "namespace": "shop", "labels": {"app": "web"},
            "annotations": {"cni.projectcalico.org/ipAddrs": '["10.100.9.9"]'}},
            "spec": {"serviceAccountName": "front", "containers": [
                {"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}]}]}})
        yield server


def conf(kubeconfig: Path | str, **extra: Any) -> CalicoNetConf:
    return CalicoNetConf.model_validate({"name": "net", "policy": {"type": "k8s"},
                                         "kubernetes": {"kubeconfig": str(kubeconfig)}, **extra})


def settings_for(api: K8sApiServer, **over: Any) -> ApiSettings:
    fields: dict[str, Any] = {"secure": True, "host": api.host, "port": api.port,
                              "ca_pem": api.ca_file.read_bytes(), "authorization": f"Bearer {api.token}"}
    fields.update(over)
    return ApiSettings(**fields)


def test_the_lookup_with_client_certificate_and_with_token(api: K8sApiServer) -> None:
    for kubeconfig in (api.kubeconfig, api.kubeconfig_token):
        api.log.clear()
        info = Kubernetes().read_pod(conf(kubeconfig), "shop", "web", {})
        assert info.endpoint.labels["app"] == "web" and info.endpoint.service_account == "front"
        assert info.endpoint.profiles == ["kns.shop", "ksa.shop.front"]
        assert info.endpoint.ports == [{"name": "http", "protocol": "TCP", "port": 80}]
        assert info.endpoint.namespace_labels["team"] == "a"
        assert info.ipam.ipv4_pools == ["ns-pool"] and info.ipam.ip_addrs == ("10.100.9.9",)
        # Only the namespace and the pod, read with GET: never a list, a watch or a write.
        assert [(r.method, r.path, r.query) for r in api.log.records()] == [
            ("GET", "/api/v1/namespaces/shop", ""), ("GET", "/api/v1/namespaces/shop/pods/web", "")]
        assert api.log.records()[0].user == ("cni-calico-admin" if kubeconfig == api.kubeconfig else "lab-token-user")


def test_certificate_and_key_files_and_legacy_keys(api: K8sApiServer) -> None:
    state = api.state_dir
    by_files = CalicoNetConf.model_validate({"name": "net", "policy": {
        "type": "k8s", "k8s_api_root": f"{api.url}/api/v1/", "k8s_client_certificate": str(state / "client.crt"),
        "k8s_client_key": str(state / "client.key"), "k8s_certificate_authority": str(api.ca_file)}})
    assert Kubernetes().read_pod(by_files, "shop", "web", {}).endpoint.service_account == "front"


def test_a_pod_or_namespace_that_does_not_exist_is_error_110(api: K8sApiServer) -> None:
    for namespace, pod, what in (("shop", "nope", "pod shop/nope"), ("gone", "web", "namespace gone")):
        with pytest.raises(CniError) as exc:
            Kubernetes().read_pod(conf(api.kubeconfig), namespace, pod, {})
        assert exc.value.code == 110 and exc.value.msg == f"{what} does not exist in the Kubernetes API"


def test_refused_credentials_and_an_untrusted_server_are_error_110(api: K8sApiServer, tmp_path: Path) -> None:
    with one_shot(settings_for(api, authorization="Bearer wrong")) as client, pytest.raises(CniError) as exc:
        client.get("/api/v1/namespaces/shop", "namespace shop")
    assert exc.value.code == 110 and "refused to show namespace shop" in exc.value.msg
    assert "Unauthorized" in exc.value.details
    other_ca = make_ca(tmp_path, "other-ca")
    with one_shot(settings_for(api, ca_pem=other_ca.cert.read_bytes())) as client, pytest.raises(CniError) as exc:
        client.get("/api/v1/namespaces/shop", "namespace shop")
    assert exc.value.code == 110 and "is not trusted: self-signed certificate" in exc.value.msg


def test_unusable_pem_is_error_7(api: K8sApiServer) -> None:
    for over in ({"ca_pem": b"not a certificate"}, {"cert_pem": b"junk", "key_pem": b"junk"}):
        with one_shot(settings_for(api, **over)) as client, pytest.raises(CniError) as exc:
            client.get("/api/v1/namespaces/shop", "namespace shop")
        assert exc.value.code == 7 and "unusable" in exc.value.msg


def test_an_api_nobody_serves_is_error_11() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    started = time.monotonic()
    with one_shot(ApiSettings(secure=True, host="127.0.0.1", port=port, source="test")) as client, \
            pytest.raises(CniError) as exc:
        client.get("/api/v1/namespaces/shop", "namespace shop")
    assert exc.value.code == 11 and f"cannot reach the Kubernetes API at https://127.0.0.1:{port}" in exc.value.msg
    assert "Connection refused" in exc.value.msg and time.monotonic() - started < 2


def test_an_api_that_never_answers_is_error_11_after_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (the kernel does) and never says anything: the TLS handshake hangs
    try:
        client = ApiClient(ApiSettings(secure=True, host="127.0.0.1", port=listener.getsockname()[1]), timeout=0.5)
        started = time.monotonic()
        with pytest.raises(CniError) as exc:
            client.get("/api/v1/namespaces/shop", "namespace shop")
        assert exc.value.code == 11 and "timed out" in exc.value.msg
        assert 0.4 < time.monotonic() - started < 3
    finally:
        listener.close()


def test_the_pool_keeps_one_connection_per_settings(api: K8sApiServer) -> None:
    pool = ClientPool(size=2)
    kubernetes = Kubernetes(pool.lend)
    before = api.log.connections
    calls = [threading.Thread(target=kubernetes.read_pod, args=(conf(api.kubeconfig), "shop", "web", {}))
             for _ in range(6)]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    kubernetes.read_pod(conf(api.kubeconfig), "shop", "web", {})
    assert api.log.connections - before == 1  # seven lookups, fourteen GETs, one connection
    kubernetes.read_pod(conf(api.kubeconfig_token), "shop", "web", {})  # other credentials: their own
    assert api.log.connections - before == 2 and len(pool.clients()) == 2
    # A third set of settings pushes out the least recently used client, which is closed.
    oldest = pool.clients()[0]
    with pool.lend(settings_for(api, server_name="localhost")) as client:  # the certificate has that name too
        client.get("/api/v1/namespaces/shop", "namespace shop")
    assert oldest not in pool.clients() and oldest._conn is None
    pool.close()
    assert pool.clients() == []


def test_a_kept_connection_the_server_closed_is_replaced_without_an_error(api: K8sApiServer) -> None:
    client = ApiClient(settings_for(api))
    try:
        client.get("/api/v1/namespaces/shop", "namespace shop")
        api.http.close_all_connections()  # as the server does to an idle keep-alive connection
        time.sleep(0.1)
        before = api.log.connections
        assert client.get("/api/v1/namespaces/shop", "namespace shop")["metadata"]["name"] == "shop"
        assert api.log.connections - before == 1 and client.connections == 2
    finally:
        client.close()


def test_kubeconfig_in_json_needs_no_yaml(api: K8sApiServer, tmp_path: Path) -> None:
    as_json = tmp_path / "kubeconfig.json"
    as_json.write_text(__import__("json").dumps(yaml.safe_load(api.kubeconfig_token.read_text())))
    assert Kubernetes().read_pod(conf(as_json), "shop", "web", {}).endpoint.service_account == "front"
