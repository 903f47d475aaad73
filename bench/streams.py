"""Live quotes: ``python -m bench.streams`` from the repository root (``make bench-streams``).

On ONE instance (gunicorn, 2 gevent workers, a real redis-server, the fake upstream answering
after 50 ms, QUOTE_TTL=2 and prices moved every second so pushes flow), it measures:

1. how many Server-Sent-Event streams the instance holds open and healthy (1,000 opened by one
   asyncio client in this process, raw sockets, no thread per stream);
2. the cached ``GET /stock/RELIANCE`` p99 (wrk) with no stream open, then with the 1,000 open
   and receiving pushes, then with none again (three rounds of streams opened and closed);
3. the workers' memory per open stream (RSS and PSS before and after opening them);
4. upstream quote calls per instrument per freshness window with 1, 10 and 100 clients watching
   the same instruments, on two instances sharing the Redis.

It prints one table and saves it as bench/results/streams.md and .json. It asserts nothing: a
missed target is a MISS in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import json
import os
import re
import resource
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load
from bench.fleet import (
    FH_KEY,
    TD_KEY,
    Call,
    connect,
    fleet,
    flush_redis,
    median,
    one,
    percentile,
    request_bytes,
)
from bench.report import Report, Row, counts, verdict
from bench.workers import rss_kib
from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer

COLUMNS = ("measurement", "result", "baseline", "ratio", "target", "verdict", "note")
WORKERS = 2  # the default WEB_CONCURRENCY
STREAMS_TARGET = 1000
P99_TARGET = 2.0
LATENCY = 0.05  # seconds the fake upstream takes to answer
REST_PATH = "/stock/RELIANCE"
# Streams watch synthetic listings, so the REST key is never one they refresh.
STREAM_TICKERS = tuple(f"SYN{index:02d}" for index in range(1, 21))
# Section 4: each client count watches its own fresh instruments (its first fill is cold).
WINDOW_TICKERS = {
    1: ("SYN21", "SYN22", "SYN23"),
    10: ("SYN24", "SYN25", "SYN26"),
    100: ("SYN27", "SYN28", "SYN29"),
}
SPAN_TOLERANCE = 0.05  # seconds of slack on "one call per window" (call times are polled)
OPEN_PARALLEL = 50  # streams being opened at once (each waits for its first quote)
NOTES = [
    "One instance = gunicorn with the repository's gunicorn.conf.py: 2 gevent workers "
    "(WEB_CONCURRENCY default), GUNICORN_CONNECTIONS default 1000 per worker; a real redis-server; "
    "the fake Twelve Data/Finnhub in this process answering after 50 ms; MARKET_HOURS=always_open, "
    "STREAM_MAX_PER_CLIENT=100000 (every stream comes from 127.0.0.1).",
    "Streams are opened by one asyncio event loop in the benchmark process (raw sockets, the HTTP "
    "request written by hand, chunked SSE parsed), at most 50 being opened at a time; each watches "
    "one of 20 synthetic instruments (SYN01..SYN20). A stream is healthy when it answered 200, sent "
    "`retry:` and at least one `event: quote`, and is still open with no transport error.",
    "Prices of every watched instrument are moved at the fake once a second and QUOTE_TTL is short, "
    "so each stream receives a push every freshness window while the REST latency is measured.",
    "(2) wrk, one thread, keep-alive connections, --latency; the REST key (RELIANCE) is not watched "
    "by any stream. Runs alternate: without streams, then per round (3 by default) the streams are "
    "opened, wrk runs with them open, they are closed and wrk runs without them again; each round's "
    "ratio compares its run with streams to the mean of the runs without just before and after it, "
    "and the table shows the median round. With QUOTE_TTL=2 RELIANCE is refreshed (ahead) about "
    "every 2 s in both kinds of run, so its reads are not all pure hits; the comparison is like for like.",
    "(3) Memory is summed over the 2 workers: VmRSS from /proc/<pid>/status and Pss from "
    "/proc/<pid>/smaps_rollup, in round 1, after the REST run without streams and again 3 s after "
    "the last stream got its first quote. No target was set; shown for capacity planning.",
    "(4) Upstream calls are the fake's Twelve Data and Finnhub /quote requests, timestamped by "
    "polling its request log every 20 ms; a batch naming several instruments counts once for each. "
    "'max in any window' is the most calls for one instrument inside any span of QUOTE_TTL seconds, "
    "cold fill included; per-window averages divide the observed calls by observed seconds / TTL.",
    "The machine may be shared: the load average at the end of the run is in the header.",
]


# --- the streaming client ------------------------------------------------------------------


@dataclass
class Stream:
    """What one SSE client has seen so far."""

    url: str
    status: int = 0
    retry: bool = False
    quotes: int = 0
    error_events: int = 0
    keepalives: int = 0
    first_quote_seconds: float | None = None
    open: bool = False
    failure: str | None = None
    last_error_event: str | None = None

    @property
    def healthy(self) -> bool:
        return self.open and self.status == 200 and self.retry and self.quotes > 0 and self.failure is None


class StreamClient:
    """Many SSE streams held open by one asyncio loop on one background thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sse-client", daemon=True)
        self._streams: list[Stream] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def __enter__(self) -> StreamClient:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def open(self, urls: Sequence[str], *, timeout: float = 60.0) -> float:
        """One stream per url; returns the seconds until every one had its first quote (or gave up)."""
        return self._call(self._open(urls, timeout), timeout + 30)

    def snapshot(self) -> list[Stream]:
        """A consistent copy of every stream's state."""
        return self._call(self._copy(), 30)

    def close_all(self) -> None:
        self._call(self._close_all(), 60)

    def _call(self, coroutine: Any, timeout: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    async def _copy(self) -> list[Stream]:
        return [dataclasses.replace(stream) for stream in self._streams]

    async def _close_all(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._streams.clear()
        self._closing = False

    async def _open(self, urls: Sequence[str], timeout: float) -> float:
        gate = asyncio.Semaphore(OPEN_PARALLEL)
        began = time.perf_counter()

        async def one_stream(url: str) -> None:
            stream = Stream(url)
            self._streams.append(stream)
            async with gate:
                ready: asyncio.Future[None] = self._loop.create_future()
                self._tasks.append(asyncio.create_task(self._follow(stream, ready)))
                try:
                    await asyncio.wait_for(asyncio.shield(ready), timeout)
                except TimeoutError:
                    stream.failure = stream.failure or f"no quote within {timeout:g} s"

        await asyncio.gather(*(one_stream(url) for url in urls))
        return time.perf_counter() - began

    async def _follow(self, stream: Stream, ready: asyncio.Future[None]) -> None:
        began = time.perf_counter()
        writer = None
        try:
            reader, writer = await connect(stream.url)
            call = Call(stream.url, headers={"Accept": "text/event-stream"})
            writer.write(request_bytes(call, keep_alive=True))
            stream.status, chunked = _response_head(await reader.readuntil(b"\r\n\r\n"))
            if stream.status != 200:
                raise ValueError(f"HTTP {stream.status}")
            stream.open = True
            buffer = b""
            async for data in _body(reader, chunked):
                buffer += data
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    _event(stream, block.decode("utf-8", "replace"), began)
                if stream.quotes and not ready.done():
                    ready.set_result(None)
            if not self._closing:
                stream.failure = "closed by the server"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            stream.failure = f"{type(error).__name__}: {error}"
        finally:
            stream.open = False
            if not ready.done():
                ready.set_result(None)
            if writer is not None:
                writer.close()


def _response_head(head: bytes) -> tuple[int, bool]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip().lower() for name, _, value in (h.partition(":") for h in lines)
    }
    return int(status_line.split()[1]), headers.get("transfer-encoding") == "chunked"


async def _body(reader: asyncio.StreamReader, chunked: bool) -> Any:
    """The response body as it arrives (de-chunked)."""
    if not chunked:
        while data := await reader.read(65536):
            yield data
        return
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            return
        yield (await reader.readexactly(size + 2))[:-2]


def _event(stream: Stream, block: str, began: float) -> None:
    """Count one SSE block: ``retry:``, a quote, an error event or a keep-alive comment."""
    lines = block.split("\n")
    if any(line.startswith("retry:") for line in lines):
        stream.retry = True
    if "event: quote" in lines:
        stream.quotes += 1
        if stream.first_quote_seconds is None:
            stream.first_quote_seconds = time.perf_counter() - began
    elif "event: error" in lines:
        stream.error_events += 1
        stream.last_error_event = next((line for line in lines if line.startswith("data:")), None)
    elif any(line.startswith(": keep-alive") for line in lines):
        stream.keepalives += 1


def stream_urls(instance: Gunicorn, tickers: Sequence[str], count: int) -> list[str]:
    """``count`` stream URLs, the tickers dealt round-robin, one instrument each."""
    return [f"{instance.url}/stock/stream?symbols={tickers[index % len(tickers)]}" for index in range(count)]


# --- helpers -------------------------------------------------------------------------------


def raise_open_files(needed: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE (gunicorn inherits it); returns the limits now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@contextmanager
def moving_prices(fake: FakeProviderServer, tickers: Sequence[str], every: float = 1.0) -> Iterator[None]:
    """Move every ticker's price at the fake once per ``every`` seconds, so each refresh is news."""
    stop = threading.Event()

    def run() -> None:
        tick = 0
        while not stop.wait(every):
            tick += 1
            for ticker in tickers:
                fake.move_price(ticker, round(0.05 * (tick % 40), 2))

    thread = threading.Thread(target=run, name="price-mover", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


class CallClock:
    """Stamps each request the fake receives with the (monotonic) time it was first seen."""

    def __init__(self, fake: FakeProviderServer, every: float = 0.02) -> None:
        self._fake = fake
        self._every = every
        self._seen = 0
        self.calls: list[tuple[float, str, str, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="call-clock", daemon=True)

    def __enter__(self) -> CallClock:
        self._seen = len(self._fake.requests_log)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._poll()

    def _poll(self) -> None:
        log = self._fake.requests_log
        now = time.monotonic()
        self.calls += [(now, *entry) for entry in log[self._seen :]]
        self._seen = len(log)

    def quote_times(self, since: float = 0.0) -> dict[str, list[float]]:
        """Per ``TICKER:EXCHANGE``, the times of the /quote calls naming it."""
        times: dict[str, list[float]] = defaultdict(list)
        for at, _provider, path, query in list(self.calls):
            if path != "/quote" or at < since:
                continue
            for symbol in query.get("symbol", "").split(","):
                ticker, _, suffix = symbol.partition(".")  # Finnhub names BSE listings TICKER.BO
                exchange = query.get("exchange") or ("BSE" if suffix == "BO" else "NSE")
                times[f"{ticker}:{exchange}"].append(at)
        return times


def memory_kib(pids: Sequence[int]) -> dict[str, int]:
    """VmRSS and Pss summed over ``pids``, in KiB."""
    pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"rss_kib": sum(rss_kib(pid) for pid in pids), "pss_kib": pss}


def socket_counts(pids: Sequence[int]) -> dict[int, int]:
    """Open sockets per process (streams, keep-alive clients, Redis, the listener)."""
    result = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        total = 0
        for fd in fd_dir.iterdir():
            try:
                total += os.readlink(fd).startswith("socket:")
            except OSError:
                continue
        result[pid] = total
    return result


def fleet_streams(instance: Gunicorn) -> dict[str, Any]:
    """The fleet's own count of open streams (``/stock/service/status``)."""
    answer = one(Call(f"{instance.url}/stock/service/status"))
    status = answer.body.get("status", {}) if isinstance(answer.body, dict) else {}
    return status.get("streams", {}) if isinstance(status, dict) else {}


def server_problems(output: str) -> list[str]:
    """Log lines at WARNING or above, and tracebacks, from a gunicorn's output."""
    problems = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                problems.append(line.strip())
            continue
        if isinstance(record, dict) and record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            problems.append(line.strip())
    return problems


def _section(name: str) -> None:
    print(f"... {name}", flush=True)


# --- sections 1-3: one instance ------------------------------------------------------------


@dataclass
class StreamRound:
    """One round: the streams opened, the REST run with them open, what they saw meanwhile."""

    opened_in: float
    opened: list[Stream]
    after_rest: list[Stream]
    pushes_during_rest: list[int]
    fleet_open: Any
    with_streams: load.Throughput


@dataclass
class OneInstance:
    """Everything sections 1-3 measured: REST runs without streams around each round with them."""

    without: list[load.Throughput] = field(default_factory=list)
    rounds: list[StreamRound] = field(default_factory=list)
    memory_before: dict[str, int] = field(default_factory=dict)
    memory_after: dict[str, int] = field(default_factory=dict)
    sockets_before: dict[int, int] = field(default_factory=dict)
    sockets_after: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def one_instance(
    fake: FakeProviderServer, redis_server: RedisServer, args: argparse.Namespace
) -> OneInstance:
    """Without streams, then per round: open them, REST with them, close them, REST without."""
    result = OneInstance()
    env = _env(fake, redis_server, args)
    with fleet(env, instances=1, workers=WORKERS) as [instance], moving_prices(fake, STREAM_TICKERS):
        rest_url = f"{instance.url}{REST_PATH}"
        warm = one(Call(rest_url))
        if warm.status != 200:
            raise RuntimeError(f"QuantPulse answered {warm.status} for {REST_PATH}: {warm.body}")
        pids = instance.worker_pids()
        _section(f"2. REST without streams ({args.seconds:g} s)")
        result.without.append(_rest(rest_url, args))
        for number in range(1, args.rounds + 1):
            first = number == 1
            if first:
                result.memory_before, result.sockets_before = memory_kib(pids), socket_counts(pids)
            with StreamClient() as client:
                _section(f"1. round {number}: opening {args.streams} streams")
                opened_in = client.open(stream_urls(instance, STREAM_TICKERS, args.streams))
                opened = client.snapshot()
                time.sleep(3)
                if first:
                    result.memory_after, result.sockets_after = memory_kib(pids), socket_counts(pids)
                fleet_open = fleet_streams(instance).get("open")
                _section(f"2. round {number}: REST with {args.streams} streams open ({args.seconds:g} s)")
                before = client.snapshot()
                with_streams = _rest(rest_url, args)
                after = client.snapshot()
            pushes = [late.quotes - early.quotes for early, late in zip(before, after, strict=True)]
            result.rounds.append(StreamRound(opened_in, opened, after, pushes, fleet_open, with_streams))
            time.sleep(3)  # the workers let go of the streams and their slots
            _section(f"2. round {number}: REST without streams ({args.seconds:g} s)")
            result.without.append(_rest(rest_url, args))
    result.problems = server_problems(instance.output())
    return result


def _env(fake: FakeProviderServer, redis_server: RedisServer, args: argparse.Namespace) -> dict[str, str]:
    return {
        **fake.service_env(),
        "REDIS_URL": redis_server.url,
        "MARKET_HOURS": "always_open",
        "STREAM_MAX_PER_CLIENT": "100000",
        "QUOTE_TTL": str(args.quote_ttl),
    }


def _rest(url: str, args: argparse.Namespace) -> load.Throughput:
    load.measure(url, seconds=2, connections=args.connections)  # warm-up
    return load.measure(url, seconds=args.seconds, connections=args.connections)


def one_instance_rows(result: OneInstance, args: argparse.Namespace) -> list[Row]:
    return [_held_row(result, args), *_rest_rows(result, args), _memory_row(result)]


def _held_row(result: OneInstance, args: argparse.Namespace) -> Row:
    """Healthy = still healthy after the REST run with them, the worst round counting."""
    healthy = [sum(stream.healthy for stream in run.after_rest) for run in result.rounds]
    at_open = [sum(stream.healthy for stream in run.opened) for run in result.rounds]
    firsts = [
        s.first_quote_seconds
        for run in result.rounds
        for s in run.opened
        if s.first_quote_seconds is not None
    ]
    failures = Counter(
        stream.failure or "not healthy"
        for run in result.rounds
        for stream in run.after_rest
        if not stream.healthy
    )
    pushes = [count for run in result.rounds for count in run.pushes_during_rest]
    gained = [
        result.sockets_after.get(pid, 0) - result.sockets_before.get(pid, 0) for pid in result.sockets_after
    ]
    worst = min(healthy, default=0)
    note = (
        f"{len(result.rounds)} round(s) of {args.streams:,} streams; healthy once opened: "
        f"{' / '.join(map(str, at_open))}; opened in "
        f"{' / '.join(f'{r.opened_in:.1f}' for r in result.rounds)} s; "
        f"first quote p50 {percentile(firsts, 50) * 1e3:.0f} ms, p99 {percentile(firsts, 99) * 1e3:.0f} ms; "
        f"result = still healthy after {args.seconds:g} s of REST load with them"
        f"{'' if not failures else ' (not healthy: ' + counts(failures) + ')'}; "
        f"quote events per stream during that run: min {min(pushes, default=0)}, median {median(pushes):g}, "
        f"max {max(pushes, default=0)}; error events "
        f"{sum(s.error_events for run in result.rounds for s in run.after_rest)}; sockets gained per worker "
        f"(round 1): {' / '.join(map(str, gained))}; the fleet's registry counted "
        f"{' / '.join(str(run.fleet_open) for run in result.rounds)} open"
    )
    return Row(
        "1. SSE streams held open and healthy by one instance (2 gevent workers)",
        f"{worst:,} of {args.streams:,}",
        "—",
        None,
        f">= {STREAMS_TARGET:,}",
        verdict(worst >= STREAMS_TARGET),
        note,
    )


def _rest_rows(result: OneInstance, args: argparse.Namespace) -> list[Row]:
    """Each round's run with streams against the mean of the runs without just before and after."""
    pairs = [
        (run.with_streams, result.without[index], result.without[index + 1])
        for index, run in enumerate(result.rounds)
    ]
    p99_ratio = median([w.p99_ms / ((a.p99_ms + b.p99_ms) / 2) for w, a, b in pairs])
    rate_ratio = median(
        [w.requests_per_second / ((a.requests_per_second + b.requests_per_second) / 2) for w, a, b in pairs]
    )
    with_runs = [run.with_streams for run in result.rounds]
    failures = sum(run.failures for run in [*with_runs, *result.without])
    how = (
        f"wrk {args.connections} connections, {args.seconds:g} s after 2 s warm-up, "
        f"QUOTE_TTL={args.quote_ttl}; "
        f"{len(result.rounds)} round(s), ratio = median over rounds of with / mean(without before, after)"
    )
    p99s = " / ".join(f"{run.p99_ms:.1f}" for run in with_runs)
    bare = " / ".join(f"{run.p99_ms:.1f}" for run in result.without)
    rates = " / ".join(f"{run.requests_per_second:,.0f}" for run in with_runs)
    bare_rates = " / ".join(f"{run.requests_per_second:,.0f}" for run in result.without)
    return [
        Row(
            f"2. cached GET {REST_PATH} p99, {args.streams:,} streams open vs none",
            f"{median([run.p99_ms for run in with_runs]):.1f} ms",
            f"{median([run.p99_ms for run in result.without]):.1f} ms",
            p99_ratio,
            f"<= {P99_TARGET}x",
            verdict(p99_ratio <= P99_TARGET),
            f"{how}; p99 with streams {p99s} ms, without {bare} ms (in run order); "
            + ("no failed requests" if failures == 0 else f"{failures} non-2xx or socket errors"),
        ),
        Row(
            f"2. cached GET {REST_PATH} throughput, {args.streams:,} streams open vs none",
            f"{median([run.requests_per_second for run in with_runs]):,.0f} req/s",
            f"{median([run.requests_per_second for run in result.without]):,.0f} req/s",
            rate_ratio,
            "—",
            verdict(None),
            f"same runs; req/s with streams {rates}, without {bare_rates}",
        ),
    ]


def _memory_row(result: OneInstance) -> Row:
    opened = max(1, sum(stream.healthy for stream in result.rounds[0].opened))
    before, after = result.memory_before, result.memory_after
    rss = (after["rss_kib"] - before["rss_kib"]) / opened
    pss = (after["pss_kib"] - before["pss_kib"]) / opened
    return Row(
        "3. worker memory per open stream (2 workers, summed)",
        f"{rss:.1f} KiB RSS per stream ({pss:.1f} KiB PSS)",
        f"{before['rss_kib'] / 1024:.1f} MiB RSS before ({before['pss_kib'] / 1024:.1f} MiB PSS)",
        None,
        "—",
        verdict(None),
        f"round 1, after {opened:,} streams: {after['rss_kib'] / 1024:.1f} MiB RSS, "
        f"{after['pss_kib'] / 1024:.1f} MiB PSS",
    )


# --- section 4: upstream calls per window --------------------------------------------------


@dataclass
class WindowRun:
    clients: int
    tickers: tuple[str, ...]
    observed_seconds: float
    calls: dict[str, list[float]]  # per instrument, call times relative to the first stream's open
    observe_from: float  # relative time the observation began
    healthy: int
    quotes: list[int]


def upstream_windows(
    fake: FakeProviderServer, redis_server: RedisServer, args: argparse.Namespace
) -> tuple[list[WindowRun], list[str]]:
    env = _env(fake, redis_server, args)
    runs = []
    with fleet(env, instances=2, workers=WORKERS) as instances:
        for clients in args.clients:
            tickers = WINDOW_TICKERS[clients]
            _section(f"4. upstream calls per window, {clients} client(s), {args.observe:g} s")
            runs.append(_window_run(fake, instances, clients, tickers, args))
    problems = [line for instance in instances for line in server_problems(instance.output())]
    return runs, problems


def _window_run(
    fake: FakeProviderServer,
    instances: Sequence[Gunicorn],
    clients: int,
    tickers: tuple[str, ...],
    args: argparse.Namespace,
) -> WindowRun:
    symbols = ",".join(tickers)
    urls = [
        f"{instances[index % len(instances)].url}/stock/stream?symbols={symbols}" for index in range(clients)
    ]
    with moving_prices(fake, tickers), CallClock(fake) as clock, StreamClient() as client:
        began = time.monotonic()
        client.open(urls)
        observe_from = time.monotonic()
        time.sleep(args.observe)
        observed = time.monotonic() - observe_from
        streams = client.snapshot()
    calls = {
        name: [at - began for at in times]
        for name, times in clock.quote_times(began).items()
        if name.partition(":")[0] in tickers
    }
    for ticker in tickers:
        calls.setdefault(f"{ticker}:NSE", [])
    return WindowRun(
        clients,
        tickers,
        observed,
        calls,
        observe_from - began,
        sum(stream.healthy for stream in streams),
        [stream.quotes for stream in streams],
    )


def most_in_window(times: Sequence[float], window: float) -> int:
    """The most calls inside any span shorter than ``window`` (less the polling slack)."""
    ordered = sorted(times)
    span = window - SPAN_TOLERANCE
    return max((bisect.bisect_left(ordered, at + span) - i for i, at in enumerate(ordered)), default=0)


def window_rows(runs: Sequence[WindowRun], args: argparse.Namespace) -> list[Row]:
    ttl = args.quote_ttl
    rows = []
    for run in runs:
        windows = run.observed_seconds / ttl
        observed = {name: [at for at in times if at >= run.observe_from] for name, times in run.calls.items()}
        per_window = {name: len(times) / windows for name, times in observed.items()}
        worst = max(most_in_window(times, ttl) for times in run.calls.values())
        cold = {name: sum(at < run.observe_from for at in times) for name, times in run.calls.items()}
        instruments = ", ".join(f"{name} {len(times)}" for name, times in sorted(observed.items()))
        rows.append(
            Row(
                f"4. upstream quote calls per instrument per {ttl} s window, {run.clients} client(s) "
                f"watching {len(run.tickers)} instruments",
                f"max {worst} in any window; {median(list(per_window.values())):.2f} per window (median)",
                "1 per window",
                float(worst),
                "<= 1 per window",
                verdict(worst <= 1),
                "2 instances x 2 workers sharing one Redis, clients round-robin; "
                f"{run.observed_seconds:.1f} s observed = {windows:.1f} windows: calls {instruments}; "
                "while opening (cold fill): "
                f"{' '.join(str(n) for n in cold.values())}; {run.healthy}/{run.clients} streams healthy, "
                f"quote events per stream min {min(run.quotes, default=0)}",
            )
        )
    return rows


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    limits = raise_open_files(args.streams * 2 + 1024)
    report = Report("QuantPulse live quotes (Server-Sent Events)", COLUMNS, notes=list(NOTES))
    report.meta.update(
        load_generator=load.load_tool(),
        streams=args.streams,
        seconds=args.seconds,
        quote_ttl=args.quote_ttl,
        open_files_limit=list(limits),
    )
    with (
        FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY, latency=LATENCY) as fake,
        RedisServer() as redis_server,
    ):
        single = one_instance(fake, redis_server, args)
        for row in one_instance_rows(single, args):
            report.add(row)
        flush_redis(redis_server)
        fake.reset()
        runs, window_problems = upstream_windows(fake, redis_server, args)
        for row in window_rows(runs, args):
            report.add(row)
    problems = single.problems + window_problems
    report.details.update(
        rest_without_streams=[run.__dict__ for run in single.without],
        rest_with_streams=[run.with_streams.__dict__ for run in single.rounds],
        memory_kib={"before": single.memory_before, "after": single.memory_after},
        sockets_per_worker={"before": single.sockets_before, "after": single.sockets_after},
        rounds=[
            {
                "opened_in_seconds": run.opened_in,
                "healthy_once_opened": sum(s.healthy for s in run.opened),
                "healthy_after_rest": sum(s.healthy for s in run.after_rest),
                "failures": dict(Counter(s.failure for s in run.after_rest if s.failure)),
                "pushes_during_rest": dict(Counter(run.pushes_during_rest)),
                "fleet_open": run.fleet_open,
            }
            for run in single.rounds
        ],
        upstream_windows=[dataclasses.asdict(run) for run in runs],
        server_log_problems=problems[:50],
    )
    report.notes.append(
        f"Server logs (all instances): {len(problems)} line(s) at WARNING or above"
        + ("" if not problems else f"; first: {_shorten(problems[0])}")
        + "."
    )
    report.finish(args.name)
    return 0


def _shorten(line: str, limit: int = 300) -> str:
    return re.sub(r"\s+", " ", line)[:limit]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=STREAMS_TARGET, help="SSE streams to open (1)")
    parser.add_argument("--seconds", type=float, default=10, help="each REST wrk run (2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of streams opened and closed (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections (2)")
    parser.add_argument("--quote-ttl", type=int, default=2, help="QUOTE_TTL, the freshness window")
    parser.add_argument("--observe", type=float, default=10, help="seconds observed per client count (4)")
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 10, 100],
        help="client counts for (4), from 1, 10, 100",
    )
    parser.add_argument("--name", default="streams", help="results file name under bench/results/")
    args = parser.parse_args(argv)
    if unknown := set(args.clients) - set(WINDOW_TICKERS):
        parser.error(f"--clients may only use {sorted(WINDOW_TICKERS)}, not {sorted(unknown)}")
    return args


if __name__ == "__main__":
    raise SystemExit(main())
