"""Closed-loop load for throughput: wrk when installed, else a small asyncio generator.

Both keep ``connections`` keep-alive connections busy for a fixed time and report requests per
second and the 99th percentile latency. wrk (C, one thread) leaves far more of a 2-core machine
to the server than any Python client could; the fallback exists so the benchmark still runs
where wrk cannot be installed, and the report says which one measured.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bench.fleet import Call, connect, percentile, read_response, request_bytes

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class Throughput:
    """One closed-loop run: rate, tail latency and what failed."""

    requests_per_second: float
    p99_ms: float
    requests: int
    failures: int  # non-2xx answers and socket errors
    tool: str
    non_2xx: int = 0  # of ``failures``: answers outside 2xx (wrk counts 3xx too)
    socket_errors: int = 0  # of ``failures``: connect, read, write errors and timeouts


def load_tool() -> str:
    """Which generator ``measure`` uses, as the report shows it."""
    return "wrk" if shutil.which("wrk") else "python-asyncio (wrk not installed)"


def measure(
    url: str, *, seconds: float, connections: int, headers: Mapping[str, str] | None = None
) -> Throughput:
    """Requests per second and p99 of ``GET url`` (with ``headers``) over ``seconds``."""
    headers = dict(headers or {})
    if shutil.which("wrk"):
        return _wrk(url, seconds, connections, headers)
    return asyncio.run(_python_load(url, seconds, connections, headers))


def _wrk(url: str, seconds: float, connections: int, headers: Mapping[str, str]) -> Throughput:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    command.append(url)
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed on {url}: {finished.stderr.strip() or finished.stdout.strip()}")
    output = finished.stdout
    non_2xx, socket_errors = _wrk_failures(output)
    return Throughput(
        requests_per_second=float(_field(r"Requests/sec:\s+([\d.]+)", output)),
        p99_ms=_milliseconds(_field(r"\s99%\s+([\d.]+\w+)", output)),
        requests=int(_field(r"(\d+) requests in", output)),
        failures=non_2xx + socket_errors,
        tool="wrk",
        non_2xx=non_2xx,
        socket_errors=socket_errors,
    )


def _field(pattern: str, output: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{output}")
    return match.group(1)


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _wrk_failures(output: str) -> tuple[int, int]:
    """Non-2xx (or 3xx) answers, and socket errors of every kind."""
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return (int(non_2xx.group(1)) if non_2xx else 0), (sum(map(int, sockets.groups())) if sockets else 0)


async def _python_load(url: str, seconds: float, connections: int, headers: Mapping[str, str]) -> Throughput:
    deadline = time.perf_counter() + seconds
    outcomes = await asyncio.gather(*(_client(url, deadline, headers) for _ in range(connections)))
    latencies = [latency for client in outcomes for latency in client[0]]
    non_2xx = sum(client[1] for client in outcomes)
    socket_errors = sum(client[2] for client in outcomes)
    return Throughput(
        requests_per_second=len(latencies) / seconds,
        p99_ms=percentile(latencies, 99) * 1e3,
        requests=len(latencies),
        failures=non_2xx + socket_errors,
        tool="python-asyncio",
        non_2xx=non_2xx,
        socket_errors=socket_errors,
    )


async def _client(url: str, deadline: float, headers: Mapping[str, str]) -> tuple[list[float], int, int]:
    """One keep-alive connection sending requests back to back until ``deadline``: latencies,
    non-2xx answers and socket errors."""
    request = request_bytes(Call(url, headers=headers), keep_alive=True)
    reader, writer = await connect(url)
    latencies: list[float] = []
    non_2xx = socket_errors = 0
    try:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            writer.write(request)
            status, _ = await read_response(reader)
            latencies.append(time.perf_counter() - began)
            non_2xx += not 200 <= status < 300
    except (OSError, asyncio.IncompleteReadError):
        socket_errors += 1
    finally:
        writer.close()
    return latencies, non_2xx, socket_errors
