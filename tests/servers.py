"""Real servers for tests: gunicorn running ``wsgi:app`` and ``redis-server``, on free loopback ports.

Each starts in its own process, is waited for with a bounded poll, and is stopped by the test
that started it; nothing outlives the test session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    seconds: float


def fire(urls: list[str], count: int) -> list[Answer]:
    """``count`` requests released together, spread round-robin over ``urls``."""
    start = threading.Barrier(count)

    def one(index: int) -> Answer:
        url = urls[index % len(urls)]
        start.wait()
        began = time.monotonic()
        response = requests.get(url, timeout=30)
        return Answer(response.status_code, response.json(), time.monotonic() - began)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def mixed_load(
    instances: Sequence[Gunicorn], paths: Sequence[str], total: int, concurrency: int
) -> Counter[int]:
    """``total`` GETs of ``paths`` (in turn) spread over ``instances``; the statuses answered."""

    def one(index: int) -> int:
        url = instances[index % len(instances)].url + paths[index % len(paths)]
        return requests.get(url, timeout=30).status_code

    with ThreadPoolExecutor(concurrency) as pool:
        return Counter(pool.map(one, range(total)))


class PeakClients:
    """Samples a Redis server's ``connected_clients`` in the background; ``peak`` is the highest.

    ``client`` should be a connection opened before the load, so it is never refused itself
    (it counts in the peak).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.peak = 0
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakClients:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self._client.info("clients")["connected_clients"]))
            time.sleep(0.02)


def wait_until(check, *, timeout: float, what: str) -> None:
    """Poll ``check`` until it returns truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


class Gunicorn:
    """``gunicorn wsgi:app`` with the repository's ``gunicorn.conf.py``, configured only by
    environment variables.

    It runs in an empty working directory (the code comes from ``PYTHONPATH``), so a developer's
    own ``.env`` in the repository root, which the entry points read, never leaks into a test.
    ``app`` names another WSGI target run the same way (the benchmarks' baseline app).
    """

    def __init__(self, env: Mapping[str, str], *, workers: int = 2, app: str = "wsgi:app") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        # TTLs as written, at any hour, unless a test asks for the market calendar.
        pinned = {"MARKET_HOURS": "always_open"}
        self._env = {**base, **pinned, "PORT": str(self.port), "PYTHONPATH": str(REPO_ROOT), **env}
        self._cwd = tempfile.TemporaryDirectory()
        self._workers = workers
        self._app = app
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the server's lifetime
        self._final_output: str | None = None

    def __enter__(self) -> Gunicorn:
        config = str(REPO_ROOT / "gunicorn.conf.py")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", config, "-w", str(self._workers), self._app],
            cwd=self._cwd.name,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._healthy, timeout=30, what="gunicorn")
        except TimeoutError:
            self.__exit__()
            raise
        return self

    def _healthy(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{self.output()}")
        return requests.get(f"{self.url}/health", timeout=1).ok

    def output(self) -> str:
        """Everything gunicorn and the app logged so far (all of it once stopped)."""
        if self._final_output is not None:
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def worker_pids(self) -> list[int]:
        """The worker processes of this instance (children of its master)."""
        assert self._process is not None
        children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._final_output is None:
            self._final_output = self.output()
            self._log.close()
            self._cwd.cleanup()


class RedisServer:
    """A throwaway ``redis-server`` without persistence, on a free loopback port.

    ``stop()`` and ``start()`` take it down and bring it back on the same port, for outage tests.
    With ``tls=True`` it only speaks TLS, with a freshly made self-signed certificate, as Heroku
    Redis does (``rediss://``).
    """

    def __init__(self, *, tls: bool = False, options: Mapping[str, str] | None = None) -> None:
        """``options`` are redis-server settings, e.g. a managed plan's ``maxclients``."""
        self.port = free_port()
        self.tls = tls
        self._options = dict(options or {})
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory()

    def __enter__(self) -> RedisServer:
        return self.start()

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it")
        command = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self._dir.name]
        command += self._tls_arguments() if self.tls else ["--port", str(self.port)]
        command += [arg for name, value in self._options.items() for arg in (f"--{name}", value)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=10, what="redis-server")
        return self

    def _tls_arguments(self) -> list[str]:
        cert, key = Path(self._dir.name, "cert.pem"), Path(self._dir.name, "key.pem")
        if not cert.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-subj", "/CN=self-signed-redis", "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True,
            )  # fmt: skip
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
            sock = _unverified_tls().wrap_socket(raw) if self.tls else raw
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it; ``start()`` brings it back."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def cli(self, *args: str) -> str:
        """``redis-cli`` against this server, as an operator would run it."""
        command = ["redis-cli", "-p", str(self.port), *(["--tls", "--insecure"] if self.tls else []), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def info(self, section: str) -> dict[str, str]:
        """One ``INFO`` section as a dict, e.g. ``info("clients")["connected_clients"]``."""
        lines = self.cli("INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._dir.cleanup()


def _unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
