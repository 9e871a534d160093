"""Kubernetes mode: where the plugin finds the API and its credentials (kubeconfig, the network
config's overrides, the in-cluster service account). Pure: files come from a dict."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from cni_calico.cni.k8s.settings import ApiSettings, resolve
from cni_calico.cni.types import CalicoNetConf
from cni_calico.errors import CniError

CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nkey\n-----END EC PRIVATE KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(cluster: dict[str, Any], user: dict[str, Any] | None = None, *, current: str = "ctx",
               extra_contexts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": "c1"}
    if user is not None:
        context["user"] = "u1"
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c0", "cluster": {"server": "https://wrong:1"}}, {"name": "c1", "cluster": cluster}],
        "users": [{"name": "u0", "user": {"token": "wrong"}}, *([{"name": "u1", "user": user}] if user else [])],
        "contexts": [{"name": "other", "context": {"cluster": "c0", "user": "u0"}}, *(extra_contexts or []),
                     {"name": "ctx", "context": context}],
        "current-context": current,
    }


def settle(config: dict[str, Any], files: dict[str, bytes] | None = None, env: dict[str, str] | None = None,
           sa_dir: str = "/sa") -> ApiSettings:
    conf = CalicoNetConf.model_validate({"name": "net", "policy": {"type": "k8s"}, **config})
    store = dict(files or {})

    def read(path: str) -> bytes:
        if path not in store:
            raise FileNotFoundError(2, "No such file or directory", path)
        return store[path]

    return resolve(conf.kubernetes, conf.policy, env or {}, read, sa_dir)


def error(config: dict[str, Any], files: dict[str, bytes] | None = None, env: dict[str, str] | None = None) -> CniError:
    with pytest.raises(CniError) as exc:
        settle(config, files, env)
    return exc.value


def yaml_file(document: dict[str, Any]) -> bytes:
    return yaml.safe_dump(document).encode()


KC = {"kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}}
KC_PATH = "/etc/cni/net.d/calico-kubeconfig"


# ---- kubeconfig: the current context, each credential form -----------------------------------------
def test_embedded_client_certificate_and_ca_data() -> None:
    doc = kubeconfig({"server": "https://10.96.0.1:443", "certificate-authority-data": b64(CA)},
                     {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)})
    s = settle(KC, {KC_PATH: yaml_file(doc)})
    assert (s.secure, s.host, s.port, s.base_path) == (True, "10.96.0.1", 443, "")
    assert (s.ca_pem, s.cert_pem, s.key_pem, s.authorization) == (CA, CERT, KEY, "")
    assert s.url == "https://10.96.0.1:443" and s.source == f"kubeconfig {KC_PATH}"


def test_files_are_relative_to_the_kubeconfig() -> None:
    doc = kubeconfig({"server": "https://api.example:6443", "certificate-authority": "pki/ca.crt"},
                     {"client-certificate": "pki/client.crt", "client-key": "/abs/client.key"})
    s = settle(KC, {KC_PATH: yaml_file(doc), "/etc/cni/net.d/pki/ca.crt": CA,
                    "/etc/cni/net.d/pki/client.crt": CERT, "/abs/client.key": KEY})
    assert (s.ca_pem, s.cert_pem, s.key_pem) == (CA, CERT, KEY)


def test_token_token_file_and_basic_auth() -> None:
    files = {"/etc/cni/net.d/token": b"from-file\n"}
    token = settle(KC, {KC_PATH: yaml_file(kubeconfig({"server": "https://h"}, {"token": "abc"})), **files})
    assert token.authorization == "Bearer abc" and token.port == 443
    from_file = settle(KC, {KC_PATH: yaml_file(kubeconfig({"server": "https://h"}, {"tokenFile": "token"})), **files})
    assert from_file.authorization == "Bearer from-file"
    both = settle(KC, {KC_PATH: yaml_file(kubeconfig({"server": "https://h"}, {"token": "t", "tokenFile": "token"})),
                       **files})
    assert both.authorization == "Bearer t"  # as client-go: the token wins
    basic = settle(KC, {KC_PATH: yaml_file(kubeconfig({"server": "https://h"}, {"username": "u", "password": "p"}))})
    assert basic.authorization == "Basic " + b64(b"u:p")
    anonymous = settle(KC, {KC_PATH: yaml_file(kubeconfig({"server": "http://h:8080/k8s/"}))})
    assert (anonymous.secure, anonymous.port, anonymous.base_path, anonymous.authorization) == (False, 8080, "/k8s", "")


def test_json_kubeconfig_insecure_and_tls_server_name() -> None:
    doc = kubeconfig({"server": "https://[fd00::1]:6443", "insecure-skip-tls-verify": True,
                      "tls-server-name": "kubernetes.default.svc"}, {"token": "t"})
    s = settle(KC, {KC_PATH: json.dumps(doc).encode()})
    assert (s.host, s.port, s.insecure, s.server_name) == ("fd00::1", 6443, True, "kubernetes.default.svc")
    assert s.url == "https://[fd00::1]:6443"


def test_current_context_picks_cluster_and_user() -> None:
    doc = kubeconfig({"server": "https://right"}, {"token": "right"}, current="other")
    s = settle(KC, {KC_PATH: yaml_file(doc)})
    assert (s.host, s.authorization) == ("wrong", "Bearer wrong")
    s = settle(KC, {KC_PATH: yaml_file({**doc, "current-context": "ctx"})})
    assert (s.host, s.authorization) == ("right", "Bearer right")


def test_the_calico_install_kubeconfig_as_written() -> None:
    text = f"""# Kubeconfig file for Calico CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://10.96.0.1:443
    certificate-authority-data: "{b64(CA)}"
users:
- name: calico
  user:
    token: "eyJhbGciOi.payload.sig"
contexts:
- name: calico-context
  context:
    cluster: local
    user: calico
current-context: calico-context
"""
    s = settle(KC, {KC_PATH: text.encode()})
    assert (s.host, s.ca_pem, s.authorization) == ("10.96.0.1", CA, "Bearer eyJhbGciOi.payload.sig")


@pytest.mark.parametrize("document,problem", [
    ("{not json", "invalid JSON"),
    ("clusters: [", "invalid YAML"),
    ("- a list", "expected a mapping"),
    (yaml.safe_dump({**kubeconfig({"server": "https://h"}), "current-context": ""}), "no current-context"),
    (yaml.safe_dump(kubeconfig({"server": "https://h"}, current="missing")), "context 'missing' not found"),
    (yaml.safe_dump({**kubeconfig({"server": "https://h"}), "clusters": []}), "cluster 'c1' not found"),
    (yaml.safe_dump({**kubeconfig({"server": "https://h"}, {"token": "t"}), "users": []}), "user 'u1' not found"),
    (yaml.safe_dump(kubeconfig({"server": "https://h"}, {"exec": {"command": "aws"}})), "'exec' is not supported"),
    (yaml.safe_dump(kubeconfig({"server": "https://h"}, {"auth-provider": {"name": "gcp"}})), "not supported"),
    (yaml.safe_dump(kubeconfig({"server": "https://h", "certificate-authority-data": "%%%"})), "not base64"),
    (yaml.safe_dump(kubeconfig({"server": "https://h", "insecure-skip-tls-verify": "yes"})), "true or false"),
    (yaml.safe_dump(kubeconfig({"server": "https://h", "insecure-skip-tls-verify": True,
                                "certificate-authority-data": b64(CA)})), "insecure-skip-tls-verify is not allowed"),
    (yaml.safe_dump(kubeconfig({"server": "https://h"}, {"client-certificate-data": b64(CERT)})), "needs its key"),
    (yaml.safe_dump(kubeconfig({"server": "ftp://h"})), "invalid Kubernetes API server"),
    (yaml.safe_dump(kubeconfig({"server": "https://h:notaport"})), "invalid Kubernetes API server"),
    (yaml.safe_dump(kubeconfig({})), "no Kubernetes API server"),
    (yaml.safe_dump(kubeconfig({"server": "https://h", "certificate-authority": "missing.crt"})),
     "cannot read the Kubernetes certificate authority /etc/cni/net.d/missing.crt"),
    (yaml.safe_dump(kubeconfig({"server": "https://h"}, {"tokenFile": "gone"})), "token file /etc/cni/net.d/gone"),
])
def test_a_bad_kubeconfig_is_error_7(document: str, problem: str) -> None:
    err = error(KC, {KC_PATH: document.encode()})
    assert err.code == 7 and problem in err.msg + err.details, (err.msg, err.details)


def test_a_missing_kubeconfig_is_error_7() -> None:
    err = error(KC)
    assert err.code == 7 and err.msg == f"cannot read the Kubernetes kubeconfig {KC_PATH}: No such file or directory"


# ---- the network config's own keys ----------------------------------------------------------------
def test_legacy_policy_keys_without_kubeconfig() -> None:
    s = settle({"policy": {"type": "k8s", "k8s_api_root": "https://10.0.0.1:6443/api/v1/",
                           "k8s_auth_token": "tok", "k8s_certificate_authority": "/ca.crt"}}, {"/ca.crt": CA})
    assert (s.host, s.port, s.base_path, s.authorization, s.ca_pem) == ("10.0.0.1", 6443, "", "Bearer tok", CA)
    s = settle({"policy": {"type": "k8s", "k8s_api_root": "https://10.0.0.1:6443",
                           "k8s_client_certificate": "/c.crt", "k8s_client_key": "/c.key"}},
               {"/c.crt": CERT, "/c.key": KEY})
    assert (s.cert_pem, s.key_pem, s.authorization) == (CERT, KEY, "")


def test_overrides_win_over_the_kubeconfig() -> None:
    doc = kubeconfig({"server": "https://from-kubeconfig", "certificate-authority-data": b64(b"old ca")},
                     {"token": "old", "client-certificate-data": b64(b"old cert"), "client-key-data": b64(b"old key")})
    s = settle({"kubernetes": {"kubeconfig": KC_PATH, "k8s_api_root": "https://from-kubernetes:6443"},
                "policy": {"type": "k8s", "k8s_api_root": "https://from-policy", "k8s_auth_token": "new",
                           "k8s_certificate_authority": "/ca", "k8s_client_certificate": "/crt",
                           "k8s_client_key": "/key"}},
               {KC_PATH: yaml_file(doc), "/ca": CA, "/crt": CERT, "/key": KEY})
    assert (s.host, s.port, s.authorization) == ("from-kubernetes", 6443, "Bearer new")
    assert (s.ca_pem, s.cert_pem, s.key_pem) == (CA, CERT, KEY)
    s = settle({"kubernetes": {"kubeconfig": KC_PATH}, "policy": {"type": "k8s", "k8s_api_root": "https://p:1"}},
               {KC_PATH: yaml_file(doc)})
    assert (s.host, s.ca_pem, s.authorization) == ("p", b"old ca", "Bearer old")  # only the server replaced


# ---- in-cluster ------------------------------------------------------------------------------------
IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def test_in_cluster_when_nothing_is_configured() -> None:
    s = settle({}, {"/sa/token": b"sa-token\n", "/sa/ca.crt": CA}, IN_CLUSTER)
    assert (s.url, s.authorization, s.ca_pem) == ("https://10.96.0.1:443", "Bearer sa-token", CA)
    assert "in-cluster" in s.source


@pytest.mark.parametrize("env,files,problem", [
    ({}, {"/sa/token": b"t"}, "no Kubernetes API configured"),
    (IN_CLUSTER, {}, "service account token /sa/token"),
    ({**IN_CLUSTER, "KUBERNETES_SERVICE_PORT": "https"}, {"/sa/token": b"t"}, "is not a port number"),
])
def test_in_cluster_impossible_is_error_7(env: dict[str, str], files: dict[str, bytes], problem: str) -> None:
    err = error({}, files, env)
    assert err.code == 7 and problem in err.msg


def test_settings_compare_on_credentials_not_on_where_they_came_from() -> None:
    one = settle({"kubernetes": {"k8s_api_root": "https://h:1"}, "policy": {"type": "k8s", "k8s_auth_token": "a"}})
    same = settle(KC, {KC_PATH: yaml_file(kubeconfig({"server": "https://h:1"}, {"token": "a"}))})
    other = settle({"kubernetes": {"k8s_api_root": "https://h:1"}, "policy": {"type": "k8s", "k8s_auth_token": "b"}})
    assert one == same and hash(one) == hash(same) and one != other
    secret = settle({"kubernetes": {"k8s_api_root": "https://h:1"},
                     "policy": {"type": "k8s", "k8s_auth_token": "secret-token-xyz"}})
    assert "secret-token-xyz" not in repr(secret)  # no credential in a repr that could reach a log


def test_policy_type_must_be_known() -> None:
    with pytest.raises(ValueError, match="only \"k8s\""):
        CalicoNetConf.model_validate({"name": "n", "policy": {"type": "calico"}})
    assert not CalicoNetConf.model_validate({"name": "n"}).kubernetes_policy
