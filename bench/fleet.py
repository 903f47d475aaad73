"""Shared benchmark plumbing: the fake upstream, Redis, gunicorn fleets, storms and percentiles.

The servers are the ones the e2e tests start (``tests/servers.py``, ``tests/fakes``); this module
only composes them and adds a client precise enough to time a storm: every request gets its own
connection, opened beforehand, and all are sent from one event loop, so the client's own
overhead (no thread per request, no GIL contention) stays out of the latencies.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer, wait_until

TD_KEY = "td-test-key"
FH_KEY = "fh-test-key"
UPSTREAM_LATENCY = 0.3  # seconds the fake takes to answer, like a real API
PROVIDER_TIMEOUT = 3
LOCK_TTL = 2
INSTANCES = 2
WORKERS = 4


# --- servers -------------------------------------------------------------------------------


@contextmanager
def upstream(latency: float = UPSTREAM_LATENCY) -> Iterator[FakeProviderServer]:
    """The fake Twelve Data + Finnhub, in this process, counting what it receives."""
    with FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY, latency=latency) as server:
        yield server


def fleet_env(fake: FakeProviderServer, redis_server: RedisServer, **overrides: str) -> dict[str, str]:
    """The e2e fleet's settings (tests/e2e/test_fleet_cache.py), plus ``overrides``."""
    return {
        **fake.service_env(),
        "REDIS_URL": redis_server.url,
        "PROVIDER_TIMEOUT": str(PROVIDER_TIMEOUT),
        "LOCK_TTL": str(LOCK_TTL),
        **overrides,
    }


@contextmanager
def fleet(
    env: Mapping[str, str], *, instances: int = INSTANCES, workers: int = WORKERS, app: str = "wsgi:app"
) -> Iterator[list[Gunicorn]]:
    """``instances`` gunicorn instances of ``workers`` workers, booted and idle before use."""
    with ExitStack() as stack:
        started = [stack.enter_context(Gunicorn(env, workers=workers, app=app)) for _ in range(instances)]
        for instance in started:
            wait_until(lambda i=instance: len(i.worker_pids()) == workers, timeout=30, what="workers")
        wait_quiet([pid for instance in started for pid in instance.worker_pids()])
        yield started


def wait_quiet(pids: Sequence[int], *, timeout: float = 30.0) -> None:
    """Wait until these processes stop using CPU (workers import the app after the fork)."""
    deadline = time.monotonic() + timeout
    previous = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = cpu_seconds(pids)
        if current - previous <= 0.02:
            return
        previous = current


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time used so far by these processes (gone ones count 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def flush_redis(redis_server: RedisServer) -> None:
    """A clean slate between measurements; wait out the workers' 1 s near caches too."""
    redis_server.cli("FLUSHALL")
    time.sleep(1.1)


# --- a precise concurrent client -----------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request to make."""

    url: str
    method: str = "GET"
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What came back, how long it took from send to last byte, or why nothing came back."""

    status: int  # 0 when the transport failed
    body: Any
    seconds: float
    error: str | None = None

    @property
    def service_info(self) -> dict[str, Any]:
        info = self.body.get("service_info") if isinstance(self.body, dict) else None
        return info if isinstance(info, dict) else {}

    @property
    def source(self) -> str | None:
        return self.service_info.get("source")

    @property
    def cache(self) -> str | None:
        return self.service_info.get("cache")


def storm(calls: Sequence[Call], *, timeout: float = 30.0) -> list[Answer]:
    """Every call on its own connection, all opened first, then all sent at once."""
    return asyncio.run(_storm(calls, timeout))


def one(call: Call, *, timeout: float = 30.0) -> Answer:
    """A single request, timed the same way as a storm's."""
    return storm([call], timeout=timeout)[0]


async def _storm(calls: Sequence[Call], timeout: float) -> list[Answer]:
    streams = await asyncio.gather(*(connect(call.url) for call in calls), return_exceptions=True)
    return list(
        await asyncio.gather(
            *(_exchange(stream, call, timeout) for stream, call in zip(streams, calls, strict=True))
        )
    )


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the host and port of ``url``."""
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _exchange(stream: Any, call: Call, timeout: float) -> Answer:
    if isinstance(stream, BaseException):
        return Answer(0, None, 0.0, f"connect: {type(stream).__name__}")
    reader, writer = stream
    began = time.perf_counter()
    try:
        writer.write(request_bytes(call, keep_alive=False))
        status, body = await asyncio.wait_for(read_response(reader), timeout)
        return Answer(status, body, time.perf_counter() - began)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
        return Answer(0, None, time.perf_counter() - began, type(error).__name__)
    finally:
        writer.close()


def request_bytes(call: Call, *, keep_alive: bool) -> bytes:
    """The request exactly as sent: the target is not normalised, so hostile paths stay hostile."""
    parts = urlsplit(call.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Host": parts.netloc,
        "Connection": "keep-alive" if keep_alive else "close",
        **({"Content-Length": str(len(call.body))} if call.body or call.method == "POST" else {}),
        **call.headers,
    }
    head = f"{call.method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + call.body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, Any]:
    """Status and body (JSON when it parses) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines if line)
    }
    length = int(headers.get("content-length", "0"))
    raw = await reader.readexactly(length) if length else b""
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return int(status_line.split()[1]), body


# --- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def upstream_round_trip(fake: FakeProviderServer, *, samples: int = 5) -> float:
    """Median seconds of one quote request sent straight to the fake (the latency floor)."""
    call = Call(
        f"{fake.twelvedata_url}/quote?symbol=ITC&exchange=NSE", headers={"Authorization": f"apikey {TD_KEY}"}
    )
    return median([one(call).seconds for _ in range(samples)])
