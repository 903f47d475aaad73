"""A TCP proxy on loopback that can reset every open connection at once: a failover, as the
clients see it (their pooled connections die; new ones are accepted and work)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Self

from tests.servers import free_port


class ResettingProxy:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed.set()
        self._listener.close()
        self.reset_all()

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def reset_all(self) -> int:
        """Close every open connection with a TCP reset; returns how many sockets were reset."""
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0 makes close() send a reset; shutting down the reading side first wakes
                # the pump thread blocked in recv(), which would otherwise keep the socket alive.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)
                sock.close()
        return len(sockets)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update((source, sink))
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
