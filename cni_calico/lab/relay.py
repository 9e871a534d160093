"""Make the lab's etcd reachable from inside simulated hosts, without touching the machine's network.

A simulated host is a network namespace with its own loopback, so it cannot see the etcd on
the machine's loopback. The relay opens a listening socket *inside* each host namespace (the
socket is created while one thread is switched into it) and forwards each connection to etcd
on the machine's loopback. No link, route or firewall rule is added anywhere: the host sees
etcd at 127.0.0.1:<port> on its own loopback, as a real host would see a local etcd proxy.
"""

from __future__ import annotations

import logging
import socket
import threading

from ..netns import entered

log = logging.getLogger(__name__)


class _Pair:
    """The two directions of one relayed connection; the second to stop closes the sockets."""

    def __init__(self) -> None:
        self._running = 2
        self._lock = threading.Lock()

    def last_out(self) -> bool:
        with self._lock:
            self._running -= 1
            return self._running == 0


class NetnsRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listeners: list[socket.socket] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def expose(self, netns_path: str, port: int | None = None) -> int:
        """Listen on 127.0.0.1:<port> inside the namespace (default: etcd's own port number)."""
        port = port or self.target[1]
        with entered(netns_path):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
        self._listeners.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"relay-{netns_path}").start()
        return port

    def _accept(self, listener: socket.socket) -> None:
        try:
            while not self._closed:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return  # shut down by close()
                if self._closed:
                    client.close()
                    return
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                    upstream.settimeout(None)
                    # gRPC writes small frames and waits for answers: Nagle's algorithm against the
                    # peer's delayed ACK would hold each one back for tens of milliseconds.
                    for s in (client, upstream):
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError as exc:
                    log.warning("relay: cannot reach %s:%d: %s", *self.target, exc)
                    client.close()
                    continue
                with self._lock:
                    self._conns.update((client, upstream))
                    closing = self._closed  # close() ran meanwhile, and may not have seen these
                if closing:
                    for s in (client, upstream):
                        s.shutdown(socket.SHUT_RDWR)
                pair = _Pair()
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()
        finally:
            listener.close()  # only here: see close()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:  # either side closing ends both directions
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's thread
                except OSError:
                    pass
            # Closed only once both directions have stopped: a socket closed while the other
            # thread is about to use it would free its descriptor, which the next connection
            # accepted takes over; that thread would then read or write the new connection's bytes.
            if pair.last_out():
                with self._lock:
                    for s in (src, dst):
                        if s in self._conns:
                            self._conns.discard(s)
                            s.close()

    def close(self) -> None:
        """Shut every socket down; the thread using each closes it. A socket closed under a thread
        that is about to use it would free its descriptor, which the next socket made (another
        relay's listener, say) takes over: that thread would then accept or read for it."""
        self._closed = True
        with self._lock:
            sockets = [*self._listeners, *self._conns]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() or recv()
            except OSError:
                pass

    def __enter__(self) -> NetnsRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
