"""A kubeconfig document as client-go reads one: the current context names a cluster (server, CA,
TLS options) and a user (client certificate, bearer token, basic auth). Relative file paths are
relative to the kubeconfig's own directory. Anything wrong with it is CNI error 7.

JSON is parsed with the json module, the plain block YAML kubeconfigs are written in by
`blockyaml`, anything else by PyYAML (imported only then).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ...errors import INVALID_NETWORK_CONFIG, CniError
from . import blockyaml

# What client-go can do and this client cannot: refused by name rather than silently ignored.
_UNSUPPORTED_USER = ("exec", "auth-provider", "as", "as-uid", "as-groups", "as-user-extra")
_UNSUPPORTED_CLUSTER = ("proxy-url",)


@dataclass(frozen=True)
class KubeconfigEntry:
    """The current context's cluster and user; file paths made absolute."""

    server: str = ""
    certificate_authority: str = ""
    certificate_authority_data: bytes = b""
    insecure_skip_tls_verify: bool = False
    tls_server_name: str = ""
    client_certificate: str = ""
    client_certificate_data: bytes = b""
    client_key: str = ""
    client_key_data: bytes = b""
    token: str = ""
    token_file: str = ""
    username: str = ""
    password: str = ""


def bad(path: str, problem: str, details: str = "") -> CniError:
    return CniError(INVALID_NETWORK_CONFIG, f"kubeconfig {path}: {problem}", details)


def parse(text: str, path: str) -> dict[str, Any]:
    """The document as a mapping (JSON, else YAML)."""
    document: Any
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise bad(path, f"invalid JSON: {exc}") from None
    else:
        try:
            document = blockyaml.load(text)
        except blockyaml.Unsupported:
            document = _pyyaml(text, path)
    if not isinstance(document, dict):
        raise bad(path, "not a kubeconfig (expected a mapping at the top)")
    return document


def _pyyaml(text: str, path: str) -> Any:
    import yaml  # only for YAML beyond blockyaml's: its import costs ~10 ms

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        raise bad(path, "invalid YAML", str(exc).replace("\n", " ")) from None


def select(document: Mapping[str, Any], path: str) -> KubeconfigEntry:
    """The current context's cluster and user, as client-go resolves them."""
    current = _text(document.get("current-context"), path, "current-context")
    if not current:
        raise bad(path, "no current-context")
    context = _named(document, "contexts", "context", current, path)
    cluster_name = _text(context.get("cluster"), path, f"context {current!r}: cluster")
    if not cluster_name:
        raise bad(path, f"context {current!r} names no cluster")
    cluster = _named(document, "clusters", "cluster", cluster_name, path)
    user_name = _text(context.get("user"), path, f"context {current!r}: user")
    user = _named(document, "users", "user", user_name, path) if user_name else {}
    for key in _UNSUPPORTED_USER:
        if user.get(key):
            raise bad(path, f"user {user_name!r}: {key!r} is not supported",
                      "use a client certificate, a token or a token file")
    for key in _UNSUPPORTED_CLUSTER:
        if cluster.get(key):
            raise bad(path, f"cluster {cluster_name!r}: {key!r} is not supported")
    directory = os.path.dirname(os.path.abspath(path))

    def text(section: Mapping[str, Any], key: str) -> str:
        return _text(section.get(key), path, key)

    def file(section: Mapping[str, Any], key: str) -> str:
        value = text(section, key)
        return os.path.join(directory, value) if value else ""

    def data(section: Mapping[str, Any], key: str) -> bytes:
        value = text(section, key)
        try:
            return base64.b64decode(value, validate=True) if value else b""
        except (binascii.Error, ValueError):
            raise bad(path, f"{key} is not base64") from None

    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise bad(path, f"cluster {cluster_name!r}: insecure-skip-tls-verify must be true or false")
    return KubeconfigEntry(
        server=text(cluster, "server"),
        certificate_authority=file(cluster, "certificate-authority"),
        certificate_authority_data=data(cluster, "certificate-authority-data"),
        insecure_skip_tls_verify=insecure,
        tls_server_name=text(cluster, "tls-server-name"),
        client_certificate=file(user, "client-certificate"),
        client_certificate_data=data(user, "client-certificate-data"),
        client_key=file(user, "client-key"),
        client_key_data=data(user, "client-key-data"),
        token=text(user, "token"),
        token_file=file(user, "tokenFile"),
        username=text(user, "username"),
        password=text(user, "password"),
    )


def _named(document: Mapping[str, Any], plural: str, singular: str, name: str, path: str) -> Mapping[str, Any]:
    entries = document.get(plural) or []
    if not isinstance(entries, list):
        raise bad(path, f"{plural} must be a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(singular) or {}
            if not isinstance(body, dict):
                raise bad(path, f"{singular} {name!r} must be a mapping")
            return body
    raise bad(path, f"{singular} {name!r} not found")


def _text(value: Any, path: str, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise bad(path, f"{what} must be a string")
    return str(value)
