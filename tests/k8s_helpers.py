"""Helpers for tests against the Kubernetes API stand-in: raw HTTPS requests and official clients."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from kubernetes import client, config

from cni_calico.lab.k8s_api import K8sApiServer


def api_client(api: K8sApiServer, token: bool = False) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(api.kubeconfig_token if token else api.kubeconfig))


def raw(api: K8sApiServer, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None, token: str | None = None, cert: bool = True,
        content_type: str | None = "application/json") -> tuple[int, Any, dict[str, str]]:
    """One request on a new connection: (status, decoded JSON body or text, headers)."""
    connection = http.client.HTTPSConnection(api.host, api.port, timeout=30,
                                             context=context or api.client_ssl_context(with_certificate=cert))
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data: bytes | None = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if content_type:
            sent["Content-Type"] = content_type
    try:
        connection.request(method, path, body=data, headers=sent)
        reply = connection.getresponse()
        text = reply.read().decode()
        answer: Any = json.loads(text) if reply.getheader("Content-Type", "").startswith("application/json") else text
        return reply.status, answer, dict(reply.getheaders())
    finally:
        connection.close()


def watch_lines(api: K8sApiServer, path: str, *, stop_after: int | None = None, timeout: float = 30
                ) -> list[dict[str, Any]]:
    """A raw watch: the events until the server ends the stream (or `stop_after` events)."""
    connection = http.client.HTTPSConnection(api.host, api.port, timeout=timeout, context=api.client_ssl_context())
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        assert reply.status == 200, reply.read()
        events = []
        while stop_after is None or len(events) < stop_after:
            line = reply.readline()
            if not line:
                break
            events.append(json.loads(line))
        return events
    finally:
        connection.close()


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}
