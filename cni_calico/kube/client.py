"""The Kubernetes API through the official `kubernetes` client: the only importer of it.

Objects stay the API's JSON (dicts): lists are read with `_preload_content=False` and parsed
once, and watches use `watch.Watch` without its model deserialisation, which would build a
Python object per field of every event only for us to read a few of them. Watch streams are read
here rather than through `watch.Watch`: with its deserialisation off, kubernetes 37's Watch fails
on an ERROR event (KeyError 'raw_object') instead of reporting the 410; and its own resumption,
from the version it started with, would replay events. The informer tracks the resourceVersion
and decides itself when to resume and when to list again.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)

Obj = dict[str, Any]
CONNECT_TIMEOUT = 10.0
LIST_TIMEOUT = 60.0
POOL_SIZE = 16  # a connection per open watch, plus lists and writes


class KubeConfigError(ValueError):
    """No usable kubeconfig or in-cluster configuration; the message says which and why."""


class ApiGone(Exception):
    """410 Gone: the resourceVersion (or a list's continue token) is older than the API keeps."""


class ApiUnavailable(Exception):
    """The API could not be reached, or failed (5xx, a broken stream): try again later."""


@dataclass(frozen=True)
class Resource:
    """A resource the controllers list and watch: the client method that lists it everywhere."""

    plural: str
    kind: str
    api_version: str
    namespaced: bool
    api: str  # "CoreV1Api" or "NetworkingV1Api"
    method: str  # e.g. "list_pod_for_all_namespaces"

    def key(self, obj: Obj) -> str:
        """`namespace/name` (namespaced) or `name`: the cache key."""
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}" if self.namespaced else str(meta.get("name", ""))


PODS = Resource("pods", "Pod", "v1", True, "CoreV1Api", "list_pod_for_all_namespaces")
NAMESPACES = Resource("namespaces", "Namespace", "v1", False, "CoreV1Api", "list_namespace")
SERVICE_ACCOUNTS = Resource("serviceaccounts", "ServiceAccount", "v1", True, "CoreV1Api",
                            "list_service_account_for_all_namespaces")
NODES = Resource("nodes", "Node", "v1", False, "CoreV1Api", "list_node")
NETWORK_POLICIES = Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1", True, "NetworkingV1Api",
                            "list_network_policy_for_all_namespaces")


def connect(kubeconfig: str | None) -> KubeClient:
    """A client from the kubeconfig file(s) (`KUBECONFIG`, `:`-separated), else in-cluster (the
    pod's service-account token and CA, KUBERNETES_SERVICE_HOST/PORT)."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration (KUBECONFIG is not set)"
        raise KubeConfigError(f"{where}: {exc}") from None
    except (OSError, ValueError) as exc:  # a missing file, YAML that is no kubeconfig
        raise KubeConfigError(f"kubeconfig {kubeconfig}: {exc}") from None
    configuration.connection_pool_maxsize = POOL_SIZE
    return KubeClient(k8s.ApiClient(configuration))


class KubeClient:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self._apis: dict[str, Any] = {}

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def _method(self, resource: Resource) -> Any:
        if resource.api not in self._apis:
            self._apis[resource.api] = getattr(k8s, resource.api)(self.api_client)
        return getattr(self._apis[resource.api], resource.method)

    def list_page(self, resource: Resource, *, limit: int, continue_token: str | None = None) -> Obj:
        """One page of a consistent list: `items` (with their kind and apiVersion put back: list
        items carry none), `metadata.resourceVersion`, `metadata.continue`."""
        kwargs: dict[str, Any] = {"limit": limit, "_preload_content": False,
                                  "_request_timeout": (CONNECT_TIMEOUT, LIST_TIMEOUT)}
        if continue_token:
            kwargs["_continue"] = continue_token
        with _translated(f"list {resource.plural}"):
            reply = self._method(resource)(**kwargs)
            data: Obj = json.loads(reply.data)
        for item in data.get("items") or ():
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return data

    def watch(self, resource: Resource, resource_version: str, timeout_seconds: int, stop: WatchStop
              ) -> Iterator[Obj]:
        """The events after `resource_version` (ADDED, MODIFIED, DELETED, BOOKMARK) until the
        stream ends (the timeout, the server, `stop`); ApiGone for an expired version (an ERROR
        event or an HTTP 410), ApiUnavailable for a broken stream or a failing server."""
        with _translated(f"watch {resource.plural}"):
            reply = self._method(resource)(
                watch=True, resource_version=resource_version, timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True, _preload_content=False,
                # a connection that goes silent (a dead peer) must not hold the watch forever
                _request_timeout=(CONNECT_TIMEOUT, timeout_seconds + 30))
            stop.attach(reply)
            try:
                for line in k8s_watch.watch.iter_resp_lines(reply):
                    if not line.strip():
                        continue
                    event: Obj = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiException(status=status.get("code"),
                                           reason=f"{status.get('reason')}: {status.get('message')}")
                    yield event
            finally:
                stop.detach(reply)
                reply.close()
                reply.release_conn()

    def node_exists(self, name: str) -> bool | None:
        """Whether Kubernetes has the Node `name`, asked of the API itself (not a cache): False
        only when it answers 404; None when it cannot tell (unreachable, refused, failing)."""
        try:
            request = self.api_client.param_serialize(method="GET", resource_path=f"/api/v1/nodes/{name}",
                                                      header_params={"Accept": "application/json"},
                                                      auth_settings=["BearerToken"])
            reply = self.api_client.call_api(*request, _request_timeout=(CONNECT_TIMEOUT, 10))
            reply.read()
        except Exception as exc:  # noqa: BLE001 (the caller does nothing unless sure): any failure is "cannot tell"
            log.warning("get node %s: %s", name, _one_line(exc))
            return None
        if reply.status == 404:
            return False
        if reply.status == 200:
            return True
        log.warning("get node %s: HTTP %s", name, reply.status)
        return None

    def healthy(self) -> tuple[bool, str]:
        """GET /healthz, as Calico's controllers check the API server."""
        try:
            request = self.api_client.param_serialize(method="GET", resource_path="/healthz",
                                                      header_params={"Accept": "text/plain"},
                                                      auth_settings=["BearerToken"])
            reply = self.api_client.call_api(*request, _request_timeout=(CONNECT_TIMEOUT, 10))
            reply.read()
            return reply.status == 200, f"API server /healthz: {reply.status}"
        except Exception as exc:  # noqa: BLE001 (logged, retried): any failure is the answer
            return False, f"API server unreachable: {_one_line(exc)}"

    def close(self) -> None:
        self.api_client.close()


class WatchStop:
    """Ends the open watches at once, from another thread: shutting a stream's socket down is what
    wakes a read blocked in it (closing it from here would wait for the lock that read holds);
    `watch.Watch.stop` does the same."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: set[Any] = set()
        self.stopped = False

    def attach(self, reply: Any) -> None:
        with self._lock:
            self._replies.add(reply)
            stopped = self.stopped
        if stopped:
            _shut_down(reply)

    def detach(self, reply: Any) -> None:
        with self._lock:
            self._replies.discard(reply)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            replies = list(self._replies)
        for reply in replies:
            _shut_down(reply)


def _shut_down(reply: Any) -> None:
    connection = getattr(reply, "connection", None)
    sock = getattr(connection, "sock", None) if connection is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


class _translated:
    """The client's failures as ours: 410 is ApiGone; an unreachable API, a 5xx, a 429 or a broken
    stream is ApiUnavailable; anything else (403, 404: a configuration problem) goes through."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, ApiException):
            if exc.status == 410:
                raise ApiGone(f"{self.what}: {exc.reason}") from None
            if exc.status in (429, 500, 502, 503, 504) or exc.status is None or exc.status == 0:
                raise ApiUnavailable(f"{self.what}: {exc.status} {exc.reason}") from None
            return False
        if isinstance(exc, (OSError, ValueError)) or type(exc).__module__.startswith("urllib3"):
            # urllib3's errors (connection refused, protocol errors of a cut stream), socket
            # errors, and a half-read JSON line; `ValueError` covers json's decode errors
            raise ApiUnavailable(f"{self.what}: {_one_line(exc)}") from None
        return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
