"""The HTTPS front of the stand-in: authentication, content negotiation, routing, chunked watch streams.

HTTP/1.1 with keep-alive on a threaded server (one thread per connection); every answer that is
not an object, a list or a watch stream is a `Status`, with the codes the real server uses.
"""

from __future__ import annotations

import json
import logging
import random
import select
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import discovery
from .auth import Authenticator
from .errors import (
    ApiError,
    bad_request,
    failure_status,
    method_not_allowed,
    not_acceptable,
    path_not_found,
    unsupported_media_type,
)
from .options import ListOptions, parse_delete_options, parse_dry_run, parse_list_options
from .registry import PATCH_TYPES, Registry
from .requestlog import RequestLog, RequestRecord
from .routes import DiscoveryPath, ResourcePath, route
from .selectors import FieldSelector
from .watch import Watcher, error_event

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024  # the real server's request size limit
WRITE_TYPES = ["application/json", "application/yaml"]
PROTOBUF = "application/vnd.kubernetes.protobuf"
HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


@dataclass
class ServerSettings:
    # A watch without timeoutSeconds ends after this, jittered up to twice as long (as the real
    # server's --min-request-timeout); one with timeoutSeconds ends then, and never after 2x this.
    watch_timeout: float = 1800.0
    bookmark_interval: float = 60.0  # how often a watch with allowWatchBookmarks gets one
    poll_interval: float = 0.25  # how often an idle watch checks for cuts and departed clients


def _json_loads(data: bytes) -> Any:
    def reject(constant: str) -> Any:
        raise ValueError(f"invalid character '{constant[0]}' looking for beginning of value")
    return json.loads(data, parse_constant=reject)


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


class ApiHTTPServer(ThreadingHTTPServer):
    server_address: tuple[str, int]  # bound to an IP address (the base class allows bytes hosts too)
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], registry: Registry, authenticator: Authenticator,
                 tls: ssl.SSLContext, settings: ServerSettings) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.tls = tls
        self.settings = settings
        self.log = RequestLog()
        self._watches: set[ApiHandler] = set()
        self._watches_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, ApiHandler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._watches_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_all_connections(self) -> None:
        """Shut every open connection (keep-alive ones too), so no handler thread outlives a stop."""
        with self._watches_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
            except OSError:
                pass

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # The handshake happens in the connection's own thread, so a slow client blocks no one.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver calls this from its except block: exc_info is the connection's exception
        log.debug("connection from %s ended with an error", client_address, exc_info=True)  # noqa: LOG014

    def add_watch(self, handler: ApiHandler) -> None:
        with self._watches_lock:
            self._watches.add(handler)

    def remove_watch(self, handler: ApiHandler) -> None:
        with self._watches_lock:
            self._watches.discard(handler)

    @property
    def open_watches(self) -> int:
        with self._watches_lock:
            return len(self._watches)

    def cut_watches(self, abrupt: bool = True) -> int:
        """End every open watch stream: abruptly (the TCP connection is shut, as when a server dies) or
        cleanly (the chunked stream is ended, as at a server-side timeout). Returns how many."""
        with self._watches_lock:
            handlers = list(self._watches)
        for handler in handlers:
            handler.cut = "abrupt" if abrupt else "clean"
            if abrupt:
                try:
                    socket.socket.shutdown(handler.connection, socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(handlers)


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive connection is closed after this
    server: ApiHTTPServer
    connection: ssl.SSLSocket

    def setup(self) -> None:
        self.cut = ""
        self.tls_ok = False
        self.connection_id = 0
        sock: ssl.SSLSocket = self.request
        self.server.track(sock, True)
        try:
            # As Go's net/http (so the real API server) does: without it, an answer's headers and
            # body, written apart, meet Nagle's algorithm and the client's delayed ACK (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(10)
            sock.do_handshake()
            self.tls_ok = True
            self.connection_id = self.server.log.new_connection()
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake from %s failed: %s", self.client_address, exc)
        super().setup()

    def handle(self) -> None:
        if self.tls_ok:
            super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.request, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # Every method goes through one dispatcher; the real server answers 405 for a verb a path lacks.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    # ---- plumbing ------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        record = RequestRecord(method, url.path, url.query, "", self.connection_id)
        self._record = record
        self._yaml = False
        logged = False
        try:
            body = self._read_body()
            user = self.server.authenticator.authenticate(self.headers.get("Authorization"),
                                                          self.connection.getpeercert() or None, url.path)
            record.user = user.name
            self.server.log.add(record)
            logged = True
            self._serve(method, url.path, parse_qs(url.query, keep_blank_values=True), body)
        except ApiError as exc:
            if not logged:
                self.server.log.add(record)
            self._send_json(exc.code, exc.status())
        except (ssl.SSLError, ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer, as the real server's panic handler does
            log.exception("internal error serving %s %s", method, self.path)
            self._send_json(500, failure_status(500, "InternalError", f"Internal error occurred: {exc}"))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY_BYTES}")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY_BYTES}")
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, data: bytes, content_type: str) -> None:
        self._record.status = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, code: int, obj: Any) -> None:
        if self._yaml:
            self._send(code, yaml.safe_dump(obj, sort_keys=False).encode(), "application/yaml")
        else:
            self._send(code, json.dumps(obj, separators=(",", ":")).encode() + b"\n", "application/json")

    def _negotiate(self, watch: bool) -> None:
        """Pick JSON (or YAML) from the Accept header; 406 when the client accepts neither."""
        accept = self.headers.get("Accept")
        if not accept:
            return
        for entry in accept.split(","):
            media, *params = [p.strip() for p in entry.split(";")]
            media = media.lower()
            if any(p.replace(" ", "").startswith("as=") for p in params):
                continue  # Table and discovery variants: the client lists a plain fallback too
            if media in ("*/*", "application/*", "application/json"):
                return
            if media == "application/yaml" and not watch:
                self._yaml = True
                return
        raise not_acceptable(["application/json", "application/yaml"])

    def _decode_body(self, body: bytes, accepted: list[str]) -> Any:
        # No Content-Type means the first type the server supports (JSON), as the real negotiation does.
        media = _media_type(self.headers.get("Content-Type")) or accepted[0]
        if media not in accepted:
            raise unsupported_media_type(media, accepted + ([PROTOBUF] if accepted == WRITE_TYPES else []))
        try:
            if media == "application/yaml":
                return yaml.safe_load(body.decode())
            return _json_loads(body)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None

    # ---- routing -------------------------------------------------------------------------------
    def _serve(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if path.rstrip("/") in (*HEALTH_PATHS, "/version"):
            path = path.rstrip("/")  # the official clients ask for /version/
        if path in HEALTH_PATHS:
            if method != "GET":
                raise method_not_allowed(method)
            self._record.status = 200
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if path == "/version":
            if method != "GET":
                raise method_not_allowed(method)
            self._send_json(200, discovery.VERSION)
            return
        target = route(path)
        if target is None:
            raise path_not_found()
        if isinstance(target, DiscoveryPath):
            if method != "GET":
                raise method_not_allowed(method)
            self._send_json(200, self._discovery(target))
            return
        self._resource(method, target, query, body)

    def _discovery(self, target: DiscoveryPath) -> Any:
        if target.group is None:
            host, port = self.server.server_address[:2]
            return discovery.api_versions(f"{host}:{port}") if target.legacy else discovery.api_group_list()
        document = (discovery.api_group(target.group) if target.version is None
                    else discovery.api_resource_list(target.group, target.version))
        if document is None:
            raise path_not_found()
        return document

    def _resource(self, method: str, target: ResourcePath, query: dict[str, list[str]], body: bytes) -> None:
        registry, rt = self.server.registry, target.rt
        namespace = target.namespace or ""
        every_namespace = rt.namespaced and target.namespace is None
        watching = method == "GET" and (target.watch_path or (query.get("watch") or [""])[0] in ("true", "1"))
        self._negotiate(watching)
        if target.watch_path and method != "GET":
            raise method_not_allowed(method)
        if method == "GET":
            if target.is_collection:
                opts = parse_list_options(rt, query, watch_path=target.watch_path)
                if opts.watch:
                    self._watch(target, opts)
                else:
                    self._send_json(200, registry.list(rt, target.namespace, opts))
            elif target.watch_path:
                opts = parse_list_options(rt, query, watch_path=True)
                opts.fields = FieldSelector((*opts.fields.terms, ("metadata.name", True, target.name or "")))
                self._watch(target, opts)
            else:
                self._send_json(200, registry.get(rt, namespace, target.name or ""))
            return
        dry_run = parse_dry_run(query.get("dryRun"))
        if method == "POST":
            if not target.is_collection or every_namespace:
                raise method_not_allowed(method)
            self._send_json(201, registry.create(rt, namespace, self._decode_body(body, WRITE_TYPES), dry_run=dry_run))
        elif method == "PUT" and not target.is_collection:
            obj, created = registry.update(rt, namespace, target.name or "", self._decode_body(body, WRITE_TYPES),
                                           subresource=target.subresource, dry_run=dry_run)
            self._send_json(201 if created else 200, obj)
        elif method == "PATCH" and not target.is_collection:
            media = _media_type(self.headers.get("Content-Type"))
            if media not in PATCH_TYPES:
                raise unsupported_media_type(media, list(PATCH_TYPES))
            patch = self._decode_body(body, [media])
            self._send_json(200, registry.patch(rt, namespace, target.name or "", media, patch,
                                                subresource=target.subresource, dry_run=dry_run))
        elif method == "DELETE" and not target.subresource:
            options = parse_delete_options(query, self._decode_body(body, ["application/json"]) if body else None)
            if target.is_collection:
                if "deletecollection" not in rt.verbs or every_namespace:
                    raise method_not_allowed(method)
                opts = parse_list_options(rt, query)
                self._send_json(200, registry.delete_collection(rt, namespace, opts, options))
            else:
                self._send_json(200, registry.delete(rt, namespace, target.name or "", options))
        else:
            raise method_not_allowed(method)

    # ---- watch ---------------------------------------------------------------------------------
    def _watch_seconds(self, opts: ListOptions) -> float:
        limit = self.server.settings.watch_timeout
        if opts.timeout_seconds:
            return min(float(opts.timeout_seconds), 2 * limit)
        return limit * (1 + random.random())

    def _client_gone(self) -> bool:
        """True once the client closed its side (a watch otherwise notices only when a write fails)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        previous = self.connection.gettimeout()
        try:
            self.connection.settimeout(0)
            return self.connection.recv(1) is not None  # b"": closed; data: not allowed mid-stream
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            try:
                self.connection.settimeout(previous)
            except OSError:
                pass

    def _write_event(self, event: dict[str, Any]) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _watch(self, target: ResourcePath, opts: ListOptions) -> None:
        server = self.server
        self._record.watch = True
        self.cut = ""  # a keep-alive connection carries one watch after another
        watcher = Watcher(server.registry.store, target.rt, target.namespace, opts)
        started = time.monotonic()
        try:
            if opts.resource_version and opts.resource_version > server.registry.store.rv:
                server.registry.wait_for_version(opts.resource_version)
            events, failed = watcher.start(), False
        except ApiError as exc:  # as the watch cache does: the error is the stream's one event
            events, failed = [error_event(exc)], True
        self._record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        server.add_watch(self)
        try:
            for event in events:
                self._write_event(event)
            if not failed:
                self._stream(watcher, opts, started + self._watch_seconds(opts))
            if self.cut != "abrupt":
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, ValueError):
            pass
        finally:
            server.remove_watch(self)
            self.close_connection = self.close_connection or self.cut == "abrupt"

    def _stream(self, watcher: Watcher, opts: ListOptions, deadline: float) -> None:
        settings = self.server.settings
        next_bookmark = time.monotonic() + settings.bookmark_interval
        while not self.cut:
            now = time.monotonic()
            if now >= deadline:
                if opts.allow_bookmarks:  # a last bookmark, so the client resumes from the newest version
                    self._write_event(watcher.bookmark())
                return
            if self._client_gone():
                self.close_connection = True
                return
            wait = min(settings.poll_interval, deadline - now)
            if opts.allow_bookmarks:
                wait = max(0.0, min(wait, next_bookmark - now))
            try:
                events = watcher.poll(wait)
            except ApiError as exc:
                self._write_event(error_event(exc))
                return
            for event in events:
                self._write_event(event)
            if opts.allow_bookmarks and time.monotonic() >= next_bookmark:
                self._write_event(watcher.bookmark())
                next_bookmark = time.monotonic() + settings.bookmark_interval
