"""A minimal Kubernetes API client: GET one object as JSON over HTTPS (or HTTP), on one kept
connection. The standard library's http.client frames the requests; the socket and its TLS are
made here, so `tls-server-name` and client certificates held as data work. http.client and ssl
are imported only when a client is made (Kubernetes mode).

Errors: the API unreachable (refused, reset, timed out, the connection lost) or answering 429 or
5xx is CNI error 11 (try again); an answer that is not the object (404, credentials refused, a
server certificate the settings do not trust) is 110; settings that make no TLS context are 7.

`one_shot` lends a client for one call (a standalone plugin); `ClientPool`, kept by calico-node
for its fast path, lends the same client, hence the same connection, to every call with the same
settings (one lock per client: two calls take turns on the connection).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator

from ...errors import INVALID_NETWORK_CONFIG, KUBERNETES_API_ERROR, TRY_AGAIN_LATER, CniError
from .settings import ApiSettings

if TYPE_CHECKING:
    import http.client
    import ssl

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # seconds, for connecting and for each answer
USER_AGENT = "cni-calico/calico-plugin"


class _Lost(Exception):
    """The connection failed or was lost before an answer came."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ApiClient:
    def __init__(self, settings: ApiSettings, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.settings = settings
        self.timeout = timeout
        self.connections = 0  # how many were opened, over the client's life
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._tls: ssl.SSLContext | None = None
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if settings.authorization:
            self._headers["Authorization"] = settings.authorization

    def get(self, path: str, what: str) -> dict[str, Any]:
        """The object at `path` (e.g. /api/v1/namespaces/default); `what` names it in errors."""
        with self._lock:
            kept = self._conn is not None
            try:
                status, body = self._request(path)
            except _Lost as lost:
                if not kept:
                    raise self._unreachable(lost.cause) from None
                # The server closed the kept connection meanwhile (idle too long, restarted): a new one.
                log.debug("the kept connection to %s was lost (%s); connecting again", self.settings.url, lost.cause)
                try:
                    status, body = self._request(path)
                except _Lost as again:
                    raise self._unreachable(again.cause) from None
            return _answer(status, body, what, self.settings)

    def _request(self, path: str) -> tuple[int, bytes]:
        import http.client
        import ssl

        try:
            conn = self._conn or self._connect()
            self._conn = conn
            conn.request("GET", self.settings.base_path + path, headers=self._headers)
            reply = conn.getresponse()
            body = reply.read()
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise CniError(KUBERNETES_API_ERROR, f"the Kubernetes API at {self.settings.url} is not trusted: "
                           f"{exc.verify_message}", f"settings from {self.settings.source}") from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            self._drop()
            raise _Lost(exc) from None
        except ssl.SSLError as exc:  # a handshake the server refused (e.g. our certificate)
            self._drop()
            raise CniError(KUBERNETES_API_ERROR, f"TLS with the Kubernetes API at {self.settings.url} failed: "
                           f"{exc.reason or exc}", f"settings from {self.settings.source}") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise _Lost(exc) from None
        if reply.will_close:
            self._drop()
        return reply.status, body

    def _unreachable(self, cause: BaseException) -> CniError:
        return CniError(TRY_AGAIN_LATER, f"cannot reach the Kubernetes API at {self.settings.url}: {_reason(cause)}",
                        f"settings from {self.settings.source}")

    def _connect(self) -> http.client.HTTPConnection:
        import http.client
        import socket

        s = self.settings
        host: Any = _ascii(s.host)  # getaddrinfo takes bytes too, which typeshed does not say
        sock = socket.create_connection((host, s.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.secure:
                sock = self._context().wrap_socket(sock, server_hostname=_ascii(s.server_name or s.host))
        except BaseException:
            sock.close()
            raise
        conn = http.client.HTTPConnection(s.host, s.port, timeout=self.timeout)
        conn.sock = sock
        conn.auto_open = 0  # never let http.client reconnect by itself (it would not use TLS)
        self.connections += 1
        log.debug("connected to the Kubernetes API at %s (connection %d)", s.url, self.connections)
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context(self.settings)
        return self._tls

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:  # after a request in flight
            self._drop()


def _ascii(name: str) -> str | bytes:
    """A host name as bytes when ASCII: socket and ssl then skip encoding it with the idna codec
    (whose import, with stringprep and unicodedata, costs a standalone call ~2 ms); a non-ASCII
    name goes as text."""
    return name.encode() if name.isascii() else name


def tls_context(s: ApiSettings) -> ssl.SSLContext:
    """Verify the server (by `ca_pem`, else the system's store) unless insecure; present the
    client certificate when there is one. Unusable PEM is error 7."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if s.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif s.ca_pem:
            context.load_verify_locations(cadata=s.ca_pem.decode("ascii", "replace"))
        else:
            context.load_default_certs()
    except (ssl.SSLError, ValueError) as exc:
        raise CniError(INVALID_NETWORK_CONFIG, f"the Kubernetes certificate authority from {s.source} is unusable: "
                       f"{getattr(exc, 'reason', None) or exc}") from None
    if s.cert_pem:
        _load_client_certificate(context, s)
    return context


def _load_client_certificate(context: ssl.SSLContext, s: ApiSettings) -> None:
    """ssl loads a certificate and key only from files: anonymous memory files, never on disk."""
    import ssl

    fds: list[int] = []
    try:
        paths = []
        for data in (s.cert_pem, s.key_pem):
            fd = os.memfd_create("k8s-credential", os.MFD_CLOEXEC)
            fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            paths.append(f"/proc/self/fd/{fd}")
        context.load_cert_chain(paths[0], paths[1])
    except ssl.SSLError as exc:
        raise CniError(INVALID_NETWORK_CONFIG, f"the Kubernetes client certificate or key from {s.source} is "
                       f"unusable: {exc.reason or exc}") from None
    finally:
        for fd in fds:
            os.close(fd)


def _answer(status: int, body: bytes, what: str, s: ApiSettings) -> dict[str, Any]:
    if status == 200:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise CniError(KUBERNETES_API_ERROR, f"the Kubernetes API at {s.url} answered {what} with no JSON object")
        return document
    message = _status_message(body)
    details = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status == 404:
        raise CniError(KUBERNETES_API_ERROR, f"{what} does not exist in the Kubernetes API", details)
    if status in (401, 403):
        raise CniError(KUBERNETES_API_ERROR, f"the Kubernetes API at {s.url} refused to show {what} to the "
                       f"credentials from {s.source}", details)
    if status == 429 or status >= 500:
        raise CniError(TRY_AGAIN_LATER, f"the Kubernetes API at {s.url} could not answer for {what}", details)
    raise CniError(KUBERNETES_API_ERROR, f"the Kubernetes API at {s.url} answered {status} for {what}", details)


def _status_message(body: bytes) -> str:
    """The `message` of a Status object, else the start of the text."""
    try:
        document = json.loads(body)
        if isinstance(document, dict) and document.get("message"):
            return str(document["message"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


ClientFactory = Callable[[ApiSettings], ContextManager[ApiClient]]


@contextlib.contextmanager
def one_shot(settings: ApiSettings) -> Iterator[ApiClient]:
    """A client for one call, closed after it (a standalone plugin process)."""
    client = ApiClient(settings)
    try:
        yield client
    finally:
        client.close()


class ClientPool:
    """calico-node's clients, one per settings (so one kept connection per API server and
    credentials); beyond `size` settings, the least recently used client is closed."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._clients: OrderedDict[ApiSettings, ApiClient] = OrderedDict()

    @contextlib.contextmanager
    def lend(self, settings: ApiSettings) -> Iterator[ApiClient]:
        evicted = []
        with self._lock:
            client = self._clients.get(settings)
            if client is None:
                client = self._clients[settings] = ApiClient(settings)
                while len(self._clients) > self.size:
                    evicted.append(self._clients.popitem(last=False)[1])
            self._clients.move_to_end(settings)
        for old in evicted:
            old.close()
        yield client

    def clients(self) -> list[ApiClient]:
        with self._lock:
            return list(self._clients.values())

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            client.close()
