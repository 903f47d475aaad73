"""(a) Cached quote reads: QuantPulse against a bare Flask app doing one Redis GET per request.

All three servers run side by side (idle ones cost nothing) and are measured in interleaved
rounds, so drift on a shared machine hits each of them alike; each figure is the median of its
rounds and each ratio the median of the per-round ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from bench import load
from bench.fleet import Call, cpu_seconds, fleet, median, one
from bench.report import Row, verdict
from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer

SYMBOL = "RELIANCE"
WORKERS = 4
THROUGHPUT_TARGET = 1.2
WARMUP_SECONDS = 2


@dataclass(frozen=True)
class Server:
    """A server under test: a WSGI target and its extra environment."""

    name: str
    app: str
    extra_env: dict[str, str]


SERVERS = (
    Server("QuantPulse", "wsgi:app", {}),
    Server("baseline", "bench.baseline_app:create_app()", {}),
    Server("QuantPulse + RATE_LIMIT", "wsgi:app", {"RATE_LIMIT": "100000/minute"}),
)


@dataclass(frozen=True)
class Run:
    """One measured run of one server."""

    throughput: load.Throughput
    cpu_ms_per_request: float

    @property
    def requests_per_second(self) -> float:
        return self.throughput.requests_per_second

    @property
    def p99_ms(self) -> float:
        return self.throughput.p99_ms


Runs = dict[str, list[Run]]


def throughput_rows(
    fake: FakeProviderServer, redis_server: RedisServer, *, rounds: int, seconds: float, connections: int
) -> tuple[list[Row], dict[str, object]]:
    """The three servers measured in ``rounds`` interleaved rounds; rows and every raw run."""
    # The rounds outlast the default 60 s quote TTL: keep the key fresh so every read is a hit.
    env = {**fake.service_env(), "REDIS_URL": redis_server.url, "QUOTE_TTL": "3600"}
    with ExitStack() as stack:
        started = {
            server.name: stack.enter_context(
                fleet({**env, **server.extra_env}, instances=1, workers=WORKERS, app=server.app)
            )[0]
            for server in SERVERS
        }
        warm(started)
        runs: Runs = {name: [] for name in started}
        for _ in range(rounds):
            for name, instance in started.items():
                runs[name].append(_measure(instance, seconds, connections))
    details = {
        name: [run.throughput.__dict__ | {"cpu_ms_per_request": run.cpu_ms_per_request} for run in series]
        for name, series in runs.items()
    }
    return _rows(runs, f"{connections} connections, {seconds:g} s x {rounds} rounds"), {
        "throughput_runs": details
    }


def warm(started: dict[str, Gunicorn]) -> None:
    """Fill the quote once through QuantPulse; the baseline serves that same cached JSON."""
    for name, instance in started.items():
        answer = one(Call(f"{instance.url}/stock/{SYMBOL}"))
        if answer.status != 200:
            raise RuntimeError(f"{name} answered {answer.status} while warming: {answer.body}")


def _measure(instance: Gunicorn, seconds: float, connections: int) -> Run:
    url = f"{instance.url}/stock/{SYMBOL}"
    load.measure(url, seconds=WARMUP_SECONDS, connections=connections)
    workers = instance.worker_pids()
    cpu = cpu_seconds(workers)
    result = load.measure(url, seconds=seconds, connections=connections)
    cpu_ms = (cpu_seconds(workers) - cpu) * 1000 / max(1, result.requests)
    return Run(result, cpu_ms)


def _ratio(runs: Runs, server: str, baseline: str, metric: Callable[[Run], float]) -> float:
    """Median of the per-round ratios: rounds are interleaved, so each ratio shares its conditions."""
    return median([metric(a) / metric(b) for a, b in zip(runs[server], runs[baseline], strict=True)])


def _rows(runs: Runs, how: str) -> list[Row]:
    quantpulse, baseline, limited = (server.name for server in SERVERS)
    speedup = _ratio(runs, quantpulse, baseline, lambda run: run.requests_per_second)
    return [
        Row(
            "a. cached quote throughput, QuantPulse vs bare Flask + 1 Redis GET",
            _rate(runs[quantpulse]),
            _rate(runs[baseline]),
            speedup,
            f">= {THROUGHPUT_TARGET}x",
            verdict(speedup >= THROUGHPUT_TARGET),
            f"{how}; medians, ratio = median of per-round ratios; {_failures(runs, quantpulse, baseline)}",
        ),
        Row(
            "a. cached quote p99 latency, QuantPulse vs baseline",
            _p99(runs[quantpulse]),
            _p99(runs[baseline]),
            _ratio(runs, quantpulse, baseline, lambda run: run.p99_ms),
            "—",
            verdict(None),
            "wrk --latency distribution" if load.load_tool() == "wrk" else "python load generator",
        ),
        Row(
            "a. cost of RATE_LIMIT=100000/minute: throughput with vs without",
            _rate(runs[limited]),
            _rate(runs[quantpulse]),
            _ratio(runs, limited, quantpulse, lambda run: run.requests_per_second),
            "—",
            verdict(None),
            f"p99 {_p99(runs[limited])} vs {_p99(runs[quantpulse])}; {_failures(runs, limited)}",
        ),
    ]


def _rate(series: list[Run]) -> str:
    rate = median([run.requests_per_second for run in series])
    cpu = median([run.cpu_ms_per_request for run in series])
    return f"{rate:,.0f} req/s ({cpu:.2f} ms server CPU/req)"


def _p99(series: list[Run]) -> str:
    return f"{median([run.p99_ms for run in series]):.1f} ms"


def _failures(runs: Runs, *names: str) -> str:
    failures = sum(run.throughput.failures for name in names for run in runs[name])
    return "no failed requests" if failures == 0 else f"{failures} non-2xx or socket errors"
