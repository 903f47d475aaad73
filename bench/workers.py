"""Talking to one chosen gunicorn worker, and reading its memory, from /proc.

The kernel hands each new connection to whichever worker accepts it first, so a request cannot
name its worker. A keep-alive connection, though, stays with the worker that accepted it: we
open connections until each worker owns one (found by matching the server side of the socket in
``/proc/net/tcp`` to the socket descriptors in ``/proc/<worker>/fd``) and then send everything
meant for that worker over its connection.
"""

from __future__ import annotations

import json
import os
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.servers import Gunicorn


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class WorkerConnection:
    """A keep-alive connection known to be served by worker ``pid``."""

    def __init__(self, pid: int, connection: HTTPConnection) -> None:
        self.pid = pid
        self._connection = connection
        self._socket = connection.sock

    def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
        """Status and JSON body; fails rather than silently reconnecting to another worker."""
        headers = {"Content-Type": "application/json"} if body else {}
        self._connection.request(method, target, body=body, headers=headers)
        response = self._connection.getresponse()
        payload = response.read()
        if self._connection.sock is not self._socket:
            raise RuntimeError(f"the connection to worker {self.pid} was closed; its answers are unknown")
        return response.status, json.loads(payload) if payload else None

    def close(self) -> None:
        self._connection.close()


def connect_to_every_worker(instance: Gunicorn, *, attempts: int = 200) -> list[WorkerConnection]:
    """One keep-alive connection per worker of ``instance``."""
    workers = set(instance.worker_pids())
    parts = urlsplit(instance.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pinned: dict[int, WorkerConnection] = {}
    for _ in range(attempts):
        if len(pinned) == len(workers):
            return list(pinned.values())
        connection = HTTPConnection(host, port, timeout=60)
        connection.request("GET", "/health")
        connection.getresponse().read()
        owner = _socket_owner(connection, port, workers)
        if owner is None or owner in pinned:
            connection.close()
        else:
            pinned[owner] = WorkerConnection(owner, connection)
    for worker in pinned.values():
        worker.close()
    raise RuntimeError(f"could not reach every worker in {attempts} connections")


def _socket_owner(connection: HTTPConnection, server_port: int, pids: set[int]) -> int | None:
    """The worker holding the server end of this client connection."""
    client_port = connection.sock.getsockname()[1]
    inode = _server_socket_inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the loopback TCP socket from ``server_port`` to ``client_port``."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[9]
    return None
