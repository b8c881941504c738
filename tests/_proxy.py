"""A TCP proxy on 127.0.0.1 that a test can cut and restore: a database outage, for real.

Replicas connect to the proxy instead of the server. :meth:`TcpProxy.cut` closes every
connection going through it and refuses new ones (the port stays bound, so nothing else
takes it); :meth:`TcpProxy.restore` lets connections through again. Threads, not an event
loop: the test drives replica processes synchronously.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Self

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; a context manager that stops it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._up = True
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cut(self) -> None:
        """Close every connection; refuse new ones until :meth:`restore`."""
        with self._lock:
            self._up = False
            doomed, self._open = self._open, set()
        for sock in doomed:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        _close(self._listener)
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: stop
            with self._lock:
                up = self._up
            if not up:
                _close(client)  # the server is "down": connection reset
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        """Copy bytes both ways until either side closes (or :meth:`cut` closes both)."""
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            try:
                for sock in peers:  # cut() may have closed them already
                    sock.setblocking(True)
                    selector.register(sock, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select(timeout=1):
                        ready = key.fileobj
                        assert isinstance(ready, socket.socket)
                        data = ready.recv(65536)
                        if not data:
                            return
                        peers[ready].sendall(data)
                    with self._lock:
                        if client not in self._open:
                            return
            except (OSError, ValueError):
                return  # closed under us by cut(), or reset
            finally:
                with self._lock:
                    self._open.difference_update(peers)
                for sock in peers:
                    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
