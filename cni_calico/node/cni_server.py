"""The CNI fast path, served by calico-node: the same handlers as the executables, kept warm.

A root-only unix socket (mode 0600, and the peer's uid is checked); a thread per connection
reads the request and hands it to one of `workers` long-lived threads (more wait their turn),
each keeping its netlink socket in the host namespace between calls; the etcd connection is
opened once per set of endpoints and kept, and so is the connection to the Kubernetes API (one
per API server and credentials) for calls in Kubernetes mode. Each call goes through `skel.run` exactly as in a
standalone process, so both paths give the same answers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .. import logs, netns
from ..cni import fastpath, netns_path, skel, versions
from ..cni.k8s.client import ClientPool
from ..datastore import Datastore, EtcdSettings, Lent
from ..errors import INTERNAL, CniError

log = logging.getLogger(__name__)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED: pid, uid, gid)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class DatastorePool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[EtcdSettings, Datastore] = {}

    def factory(self, conf: Any, env: Any) -> Any:
        from ..datastore import open_datastore
        from ..ipam import etcd_settings

        settings = etcd_settings(conf, env)  # everything that opens it, the ETCD_* variables too
        with self._lock:
            if settings not in self._stores:
                self._stores[settings] = open_datastore(settings)
            return Lent(self._stores[settings])

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


class CniServer:
    def __init__(self, path: str | Path, workers: int = 8) -> None:
        self.path = Path(path)
        self.workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cni-worker",
                                          initializer=netns.keep_host_socket)
        self.pool = DatastorePool()
        self.kubernetes_clients = ClientPool()
        self.served = 0
        self._sock: socket.socket | None = None
        self._handlers: dict[str, Callable[[], Any]] = {}

    def start(self) -> CniServer:
        import importlib

        from ..cni.k8s.lookup import Kubernetes
        from ..ipam import IpamPlugin
        from ..plugin import CalicoPlugin

        importlib.import_module("pyroute2")  # warm: the first call must not pay for this import

        logs.keep_process_logging()  # a served call must not re-point the agent's logs
        ipam = IpamPlugin(self.pool.factory)
        calico = CalicoPlugin(self.pool.factory, kubernetes=Kubernetes(self.kubernetes_clients.lend))
        self._handlers = {"calico-ipam": lambda: ipam, "calico": lambda: calico}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # born 0600: no window where others could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(64)
        self._sock = sock
        threading.Thread(target=self._accept, name="cni-server", daemon=True).start()
        log.info("serving the CNI fast path on %s", self.path)
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(conn,), name="cni-call", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if peer_uid(conn) != fastpath.own_uid():
                    log.warning("fast path: refused a caller with another uid")
                    return
                fds: list[int] = []
                try:
                    plugin, env, stdin = fastpath.read_request(conn, fds)
                    netns_fd = fds[0] if fds else None
                    status, out = self.workers.submit(self.handle, plugin, env, stdin, netns_fd).result()
                finally:
                    for fd in fds:
                        os.close(fd)
                conn.sendall(fastpath.encode_reply(status, out))
                self.served += 1
            except (OSError, ValueError, KeyError, ConnectionError) as exc:
                log.warning("fast path: dropped a call: %s", exc)
            except RuntimeError as exc:  # the workers were shut down: calico-node is stopping
                log.warning("fast path: dropped a call while stopping: %s", exc)

    def handle(self, plugin: str, env: dict[str, str], stdin: bytes, netns_fd: int | None = None
               ) -> tuple[int, str]:
        """One call, on a worker; `netns_fd`: CNI_NETNS as the caller opened it, used instead of
        the path (which this process's mount namespace may not show as the runtime does)."""
        load = self._handlers.get(plugin)
        if load is None:
            return 1, json.dumps(CniError(INTERNAL, f"unknown plugin {plugin!r} for the fast path")
                                 .to_dict(versions.LATEST_VERSION))
        out = io.StringIO()
        token = netns_path.caller_opened(env.get("CNI_NETNS", ""), netns_fd) if netns_fd is not None else None
        try:
            status = skel.run(load, env, io.BytesIO(stdin), out, plugin)  # logs the call's summary line
        finally:
            if token is not None:
                netns_path.CALLER_OPENED.reset(token)
        return status, out.getvalue()

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)
        self.workers.shutdown(wait=False)
        self.pool.close()
        self.kubernetes_clients.close()
