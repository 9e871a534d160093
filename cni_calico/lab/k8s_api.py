"""A Kubernetes API server stand-in: real HTTPS with token and client-certificate auth, the core/v1,
networking.k8s.io/v1 and coordination.k8s.io/v1 resources Calico reads, list + watch with
resourceVersions, bookmarks, 410 Gone after compaction, server-side watch timeouts.

In process (tests, the demo):

    with K8sApiServer() as api:
        api.kubeconfig                       # a kubeconfig file (client certificate); api.kubeconfig_token
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}})
        api.modify("Pod", "p1", lambda pod: pod["metadata"]["labels"].update(app="x"), namespace="web")
        api.cut_watches(); api.compact(); api.log.count(path="/api/v1/pods", watch=True)

As a process (e.g. inside a network namespace), serving until SIGTERM:

    python -m cni_calico.lab.k8s_api --listen 127.0.0.1:0 --state-dir DIR

DIR then holds ca.crt, server.{crt,key}, client.{crt,key}, token, kubeconfig (client
certificate), kubeconfig-token (bearer token), and `url` (written last: the server is up).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from .k8s import resources
from .k8s.auth import Authenticator
from .k8s.certs import LabPki, make_pki
from .k8s.kubeconfig import kubeconfig, write_kubeconfig
from .k8s.registry import Registry
from .k8s.requestlog import RequestLog
from .k8s.server import ApiHTTPServer, ServerSettings
from .k8s.store import ObjectStore

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
TOKEN_USER = "lab-token-user"

Obj = dict[str, Any]


class K8sApiServer:
    def __init__(self, state_dir: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, history_limit: int = 10_000, watch_timeout: float = 1800.0,
                 bookmark_interval: float = 60.0, bootstrap: bool = True) -> None:
        ipaddress.IPv4Address(host)  # an IPv4 address to listen on (loopback, or one in a lab namespace)
        self.host = host
        self.port = port
        self.token = token or secrets.token_hex(24)
        self.settings = ServerSettings(watch_timeout=watch_timeout, bookmark_interval=bookmark_interval)
        self.store = ObjectStore(history_limit=history_limit)
        self.registry = Registry(self.store)
        self.bootstrap = bootstrap
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path()
        self.pki: LabPki | None = None
        self._httpd: ApiHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> K8sApiServer:
        if self._own_dir:
            self.state_dir = Path(tempfile.mkdtemp(prefix="cni-calico-k8s-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        ips = tuple(dict.fromkeys((self.host, "127.0.0.1")))
        self.pki = make_pki(self.state_dir, server_ips=ips)
        token_file = self.state_dir / "token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(self.pki.server.cert, self.pki.server.key)
        tls.load_verify_locations(cafile=str(self.pki.ca.cert))
        tls.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, when given, must chain to the CA
        tls.set_alpn_protocols(["http/1.1"])
        if self.bootstrap:
            for name in BOOTSTRAP_NAMESPACES:
                if self.store.get(resources.NAMESPACES.id, ("", name)) is None:
                    self.registry.create(resources.NAMESPACES, "", {"metadata": {"name": name}})
        self._httpd = ApiHTTPServer((self.host, self.port), self.registry, Authenticator({self.token: TOKEN_USER}),
                                    tls, self.settings)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"k8s-api-{self.port}", daemon=True)
        self._thread.start()
        ca_pem = self.pki.ca.cert_pem()
        write_kubeconfig(self.kubeconfig, kubeconfig(self.url, ca_pem, client_cert_pem=self.pki.client.cert_pem(),
                                                     client_key_pem=self.pki.client.key_pem()))
        write_kubeconfig(self.kubeconfig_token, kubeconfig(self.url, ca_pem, token=self.token))
        (self.state_dir / "url").write_text(self.url + "\n")

    def stop(self) -> None:
        self.store.close()
        if self._httpd is not None:
            self._httpd.cut_watches(abrupt=True)
            self._httpd.shutdown()
            self._httpd.close_all_connections()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._own_dir and self.state_dir != Path():
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> K8sApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- where and how to connect --------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def kubeconfig_token(self) -> Path:
        return self.state_dir / "kubeconfig-token"

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None
        return self.pki.ca.cert

    def client_ssl_context(self, with_certificate: bool = True) -> ssl.SSLContext:
        """A client context trusting the CA (and presenting the client certificate), for raw HTTP."""
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        if with_certificate:
            context.load_cert_chain(self.pki.client.cert, self.pki.client.key)
        return context

    @property
    def http(self) -> ApiHTTPServer:
        assert self._httpd is not None, "not started"
        return self._httpd

    @property
    def log(self) -> RequestLog:
        return self.http.log

    # ---- test hooks: changes as a user would make them, through the same semantics ------------
    @staticmethod
    def _type(kind: str) -> resources.ResourceType:
        return resources.by_kind(kind)

    def create(self, obj: Obj) -> Obj:
        rt = self._type(obj["kind"])
        return self.registry.create(rt, obj.get("metadata", {}).get("namespace", "") if rt.namespaced else "", obj)

    def apply(self, obj: Obj) -> Obj:
        """Create, or replace the whole object (spec and status) whatever its current version."""
        rt = self._type(obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace", "") if rt.namespaced else ""
        with self.store.lock:
            current = self.store.get(rt.id, (namespace, obj["metadata"]["name"]))
            if current is None:
                created = self.registry.create(rt, namespace, obj)
                if "status" in obj and rt.has_status:
                    return self.modify(rt.kind, obj["metadata"]["name"],
                                       lambda o: o.update(status=copy.deepcopy(obj["status"])), namespace, status=True)
                return created
            replacement = copy.deepcopy(obj)
            replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            replacement["metadata"].pop("uid", None)
            updated, _ = self.registry.update(rt, namespace, obj["metadata"]["name"], replacement)
            if "status" in obj and rt.has_status:
                return self.modify(rt.kind, obj["metadata"]["name"],
                                   lambda o: o.update(status=copy.deepcopy(obj["status"])), namespace, status=True)
            return updated

    def modify(self, kind: str, name: str, mutate: Callable[[Obj], None], namespace: str = "",
               status: bool = False) -> Obj:
        """Read, change with `mutate`, write back (to /status when `status`): one atomic update."""
        rt = self._type(kind)
        with self.store.lock:
            obj = self.registry.get(rt, namespace, name)
            mutate(obj)
            updated, _ = self.registry.update(rt, namespace, name, obj, subresource="status" if status else "")
            return updated

    def delete(self, kind: str, name: str, namespace: str = "") -> Obj:
        return self.registry.delete(self._type(kind), namespace, name)

    def get(self, kind: str, name: str, namespace: str = "") -> Obj | None:
        return self.store.get(self._type(kind).id, (namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.items(self._type(kind).id, namespace)

    @property
    def resource_version(self) -> int:
        return self.store.rv

    def compact(self, rv: int | None = None) -> int:
        """Forget the history up to `rv` (default: all of it): watches and reads from before get 410."""
        return self.store.compact(rv)

    def cut_watches(self, abrupt: bool = True) -> int:
        return self.http.cut_watches(abrupt)

    @property
    def open_watches(self) -> int:
        return self.http.open_watches


def _parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cni_calico.lab.k8s_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0), metavar="HOST:PORT",
                        help="address to serve on (port 0: a free one); default 127.0.0.1:0")
    parser.add_argument("--state-dir", required=True, help="where certificates, token, kubeconfigs and url go")
    parser.add_argument("--token", help="the bearer token to accept (default: a random one, in STATE_DIR/token)")
    parser.add_argument("--watch-timeout", type=float, default=1800.0, help="server-side watch timeout, seconds")
    parser.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between bookmarks")
    parser.add_argument("--history-limit", type=int, default=10_000, help="changes kept before the oldest go")
    parser.add_argument("--no-bootstrap", action="store_true", help="start without the default namespaces")
    args = parser.parse_args(argv)
    host, port = args.listen
    server = K8sApiServer(args.state_dir, host=host, port=port, token=args.token, history_limit=args.history_limit,
                          watch_timeout=args.watch_timeout, bookmark_interval=args.bookmark_interval,
                          bootstrap=not args.no_bootstrap)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(server.url, flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
