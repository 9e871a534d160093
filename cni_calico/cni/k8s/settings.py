"""Where the Kubernetes API is and how to authenticate, resolved as Calico's plugin does:

1. `kubernetes.kubeconfig`, its current context (see `kubeconfig`);
2. overridden by the network config's own keys: `kubernetes.k8s_api_root` (else the legacy
   `policy.k8s_api_root`; a trailing `/api/...` is dropped), `policy.k8s_certificate_authority`,
   `policy.k8s_client_certificate`, `policy.k8s_client_key` (files) and `policy.k8s_auth_token`;
3. when none of these is set: the pod's own service account, as client-go's in-cluster config
   (`KUBERNETES_SERVICE_HOST`/`_PORT` from the call's environment, and the token and CA files).

Files are read through the given reader, every time: a rotated token or certificate is used by
the next call. The result holds contents, not paths, so equal settings are equal credentials
(the agent keeps one connection per settings). Anything missing or wrong is CNI error 7.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping
from urllib.parse import urlsplit

from ...errors import INVALID_NETWORK_CONFIG, CniError
from ..types import KubernetesConf, PolicyConf
from . import kubeconfig
from .kubeconfig import KubeconfigEntry

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

Reader = Callable[[str], bytes]


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class ApiSettings:
    """Everything that opens a connection to the API and authenticates on it."""

    secure: bool
    host: str
    port: int
    base_path: str = ""  # a server URL's path (an API behind a proxy), without the trailing /
    ca_pem: bytes = b""  # empty: the system's trust store
    insecure: bool = False  # insecure-skip-tls-verify
    server_name: str = ""  # tls-server-name: the name the certificate must have instead of host
    cert_pem: bytes = field(default=b"", repr=False)
    key_pem: bytes = field(default=b"", repr=False)
    authorization: str = field(default="", repr=False)  # the Authorization header, if any
    source: str = field(default="", compare=False)  # where these came from, for messages

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}{self.base_path}"


def resolve(kubernetes: KubernetesConf, policy: PolicyConf, env: Mapping[str, str], read: Reader = read_file,
            service_account_dir: str = SERVICE_ACCOUNT_DIR) -> ApiSettings:
    entry, source = KubeconfigEntry(), "the network configuration"
    if kubernetes.kubeconfig:
        path = kubernetes.kubeconfig
        entry = kubeconfig.select(kubeconfig.parse(_read_text(read, path, "kubeconfig"), path), path)
        source = f"kubeconfig {path}"
    configured = bool(kubernetes.kubeconfig or kubernetes.k8s_api_root or policy.k8s_api_root or policy.k8s_auth_token
                      or policy.k8s_client_certificate or policy.k8s_client_key or policy.k8s_certificate_authority)
    if not configured:
        return in_cluster(env, read, service_account_dir)
    entry = _overridden(entry, kubernetes, policy)
    if not entry.server:
        raise CniError(INVALID_NETWORK_CONFIG, f"no Kubernetes API server in {source}",
                       "set kubernetes.kubeconfig (a context whose cluster has a server) or kubernetes.k8s_api_root")
    return _settings(entry, read, source)


def _overridden(entry: KubeconfigEntry, kubernetes: KubernetesConf, policy: PolicyConf) -> KubeconfigEntry:
    """The network config's keys over the kubeconfig's (client-go's ConfigOverrides): each
    replaces the file and the data of what it names."""
    root = kubernetes.k8s_api_root or policy.k8s_api_root
    if root:
        entry = replace(entry, server=root.split("/api/")[0])
    if policy.k8s_certificate_authority:
        entry = replace(entry, certificate_authority=policy.k8s_certificate_authority, certificate_authority_data=b"")
    if policy.k8s_client_certificate:
        entry = replace(entry, client_certificate=policy.k8s_client_certificate, client_certificate_data=b"")
    if policy.k8s_client_key:
        entry = replace(entry, client_key=policy.k8s_client_key, client_key_data=b"")
    if policy.k8s_auth_token:
        entry = replace(entry, token=policy.k8s_auth_token)
    return entry


def _settings(entry: KubeconfigEntry, read: Reader, source: str) -> ApiSettings:
    server = entry.server if "://" in entry.server else f"https://{entry.server}"
    parts = urlsplit(server)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid Kubernetes API server {entry.server!r} in {source}",
                       "expected https://host[:port]")
    secure = parts.scheme == "https"
    ca = entry.certificate_authority_data or _read(read, entry.certificate_authority, "certificate authority")
    if entry.insecure_skip_tls_verify and ca:
        raise CniError(INVALID_NETWORK_CONFIG, f"{source}: a certificate authority together with "
                       "insecure-skip-tls-verify is not allowed", "choose one (as client-go demands)")
    cert = entry.client_certificate_data or _read(read, entry.client_certificate, "client certificate")
    key = entry.client_key_data or _read(read, entry.client_key, "client key")
    if bool(cert) != bool(key):
        raise CniError(INVALID_NETWORK_CONFIG,
                       f"{source}: a client certificate needs its key, and a key its certificate")
    return ApiSettings(secure=secure, host=parts.hostname, port=port or (443 if secure else 80),
                       base_path=parts.path.rstrip("/"), ca_pem=ca, insecure=entry.insecure_skip_tls_verify,
                       server_name=entry.tls_server_name, cert_pem=cert, key_pem=key,
                       authorization=_authorization(entry, read), source=source)


def _authorization(entry: KubeconfigEntry, read: Reader) -> str:
    if entry.token:
        return f"Bearer {entry.token}"
    if entry.token_file:
        return f"Bearer {_read_text(read, entry.token_file, 'token file').strip()}"
    if entry.username:
        return "Basic " + base64.b64encode(f"{entry.username}:{entry.password}".encode()).decode()
    return ""


def in_cluster(env: Mapping[str, str], read: Reader, service_account_dir: str = SERVICE_ACCOUNT_DIR) -> ApiSettings:
    """The service account of the pod this runs in (client-go's InClusterConfig)."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    token_file = os.path.join(service_account_dir, "token")
    if not host or not port:
        raise CniError(INVALID_NETWORK_CONFIG, "policy type k8s: no Kubernetes API configured",
                       "set kubernetes.kubeconfig or kubernetes.k8s_api_root (KUBERNETES_SERVICE_HOST and "
                       "KUBERNETES_SERVICE_PORT are not set either, so there is no in-cluster service account)")
    if not port.isdigit():
        raise CniError(INVALID_NETWORK_CONFIG, f"KUBERNETES_SERVICE_PORT={port!r} is not a port number")
    token = _read_text(read, token_file, "service account token").strip()
    try:
        ca = read(os.path.join(service_account_dir, "ca.crt"))
    except OSError:
        ca = b""  # as client-go: the system's trust store then
    return ApiSettings(secure=True, host=host.strip("[]"), port=int(port), ca_pem=ca, authorization=f"Bearer {token}",
                       source=f"the in-cluster service account ({service_account_dir})")


def _read(read: Reader, path: str, what: str) -> bytes:
    if not path:
        return b""
    try:
        return read(path)
    except OSError as exc:
        raise CniError(INVALID_NETWORK_CONFIG, f"cannot read the Kubernetes {what} {path}: "
                       f"{exc.strerror or exc}") from None


def _read_text(read: Reader, path: str, what: str) -> str:
    try:
        return _read(read, path, what).decode()
    except UnicodeDecodeError:
        raise CniError(INVALID_NETWORK_CONFIG, f"the Kubernetes {what} {path} is not text") from None
