"""kubeconfig files as kubectl and the client libraries read them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(server: str, ca_pem: bytes, *, token: str | None = None, client_cert_pem: bytes | None = None,
               client_key_pem: bytes | None = None, cluster: str = "cni-calico-lab", user: str = "lab-user",
               namespace: str | None = None) -> dict[str, Any]:
    """One cluster, one user (a bearer token or a client certificate, embedded), one current context."""
    if (token is None) == (client_cert_pem is None):
        raise ValueError("give either a token or a client certificate")
    credentials: dict[str, str] = {}
    if token is not None:
        credentials["token"] = token
    else:
        assert client_cert_pem is not None and client_key_pem is not None
        credentials["client-certificate-data"] = _b64(client_cert_pem)
        credentials["client-key-data"] = _b64(client_key_pem)
    context: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": f"{user}@{cluster}", "context": context}],
        "current-context": f"{user}@{cluster}",
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
