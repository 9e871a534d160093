"""The agent's local HTTP endpoint: /liveness, /readiness (200 or 503 with the reason) and /metrics."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from .metrics import Registry

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, host: str, port: int, registry: Registry,
                 live: Callable[[], tuple[bool, str]], ready: Callable[[], tuple[bool, str]]) -> None:
        checks = {"/liveness": live, "/readiness": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._reply(200, registry.render(), "text/plain; version=0.0.4")
                elif path in checks:
                    ok, reason = checks[path]()
                    self._reply(200 if ok else 503, (reason or ("ok" if ok else "not ok")) + "\n", "text/plain")
                else:
                    self._reply(404, "not found: try /liveness, /readiness or /metrics\n", "text/plain")

            def _reply(self, status: int, body: str, content_type: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # probes are not worth a log line
                log.debug("health: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
