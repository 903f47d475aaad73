"""(a) Cached reads: QuantPulse against a bare Flask app doing one Redis GET per request (quote,
history, profile), and against Flask answering a constant JSON (the framework's ceiling).

All servers run side by side (idle ones cost nothing) and are measured in interleaved
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
P99_TARGET = 1.5
CEILING_TARGET = 0.9
WARMUP_SECONDS = 2
QUOTE, HISTORY, PROFILE = (
    f"/stock/{SYMBOL}",
    f"/stock/{SYMBOL}/historical?period=1mo",
    f"/stock/{SYMBOL}/profile",
)


@dataclass(frozen=True)
class Server:
    """A server under test: a WSGI target and its extra environment."""

    name: str
    app: str
    extra_env: dict[str, str]


SERVERS = (
    Server("QuantPulse", "wsgi:app", {}),
    Server("baseline", "bench.baseline_app:create_app()", {}),
    Server("constant", "bench.baseline_app:create_constant_app()", {}),
    Server("QuantPulse + RATE_LIMIT", "wsgi:app", {"RATE_LIMIT": "100000/minute"}),
)
# (server, path) pairs measured in every round, named for the rows.
TARGETS = {
    "quote": ("QuantPulse", QUOTE),
    "quote baseline": ("baseline", QUOTE),
    "quote constant": ("constant", QUOTE),
    "quote limited": ("QuantPulse + RATE_LIMIT", QUOTE),
    "history": ("QuantPulse", HISTORY),
    "history baseline": ("baseline", HISTORY),
    "profile": ("QuantPulse", PROFILE),
    "profile baseline": ("baseline", PROFILE),
}


@dataclass(frozen=True)
class Run:
    """One measured run of one target."""

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
    """Every target measured in ``rounds`` interleaved rounds; rows and every raw run."""
    # The rounds outlast the default TTLs: keep the keys fresh so every read is a hit.
    ttls = {"QUOTE_TTL": "3600", "HISTORICAL_TTL": "3600", "PROFILE_TTL": "86400"}
    env = {**fake.service_env(), "REDIS_URL": redis_server.url, **ttls}
    with ExitStack() as stack:
        started = {
            server.name: stack.enter_context(
                fleet({**env, **server.extra_env}, instances=1, workers=WORKERS, app=server.app)
            )[0]
            for server in SERVERS
        }
        warm(started["QuantPulse"])
        runs: Runs = {name: [] for name in TARGETS}
        for _ in range(rounds):
            for name, (server, path) in TARGETS.items():
                runs[name].append(_measure(started[server], path, seconds, connections))
    details = {
        name: [run.throughput.__dict__ | {"cpu_ms_per_request": run.cpu_ms_per_request} for run in series]
        for name, series in runs.items()
    }
    return _rows(runs, f"{connections} connections, {seconds:g} s x {rounds} rounds"), {
        "throughput_runs": details
    }


def warm(quantpulse: Gunicorn) -> None:
    """Fill each key once through QuantPulse; the baseline serves that same cached JSON."""
    for path in (QUOTE, HISTORY, PROFILE):
        answer = one(Call(f"{quantpulse.url}{path}"))
        if answer.status != 200:
            raise RuntimeError(f"QuantPulse answered {answer.status} for {path} while warming: {answer.body}")


def _measure(instance: Gunicorn, path: str, seconds: float, connections: int) -> Run:
    url = f"{instance.url}{path}"
    load.measure(url, seconds=WARMUP_SECONDS, connections=connections)
    workers = instance.worker_pids()
    cpu = cpu_seconds(workers)
    result = load.measure(url, seconds=seconds, connections=connections)
    cpu_ms = (cpu_seconds(workers) - cpu) * 1000 / max(1, result.requests)
    return Run(result, cpu_ms)


def _ratio(runs: Runs, target: str, baseline: str, metric: Callable[[Run], float]) -> float:
    """Median of the per-round ratios: rounds are interleaved, so each ratio shares its conditions."""
    return median([metric(a) / metric(b) for a, b in zip(runs[target], runs[baseline], strict=True)])


def _speed_row(runs: Runs, label: str, target: str, baseline: str, goal: float, how: str) -> Row:
    speedup = _ratio(runs, target, baseline, lambda run: run.requests_per_second)
    return Row(
        label,
        _rate(runs[target]),
        _rate(runs[baseline]),
        speedup,
        f">= {goal}x",
        verdict(speedup >= goal),
        f"{how}; medians, ratio = median of per-round ratios; {_failures(runs, target, baseline)}",
    )


def _rows(runs: Runs, how: str) -> list[Row]:
    p99 = _ratio(runs, "quote", "quote baseline", lambda run: run.p99_ms)
    return [
        _speed_row(
            runs,
            "a. cached quote throughput, QuantPulse vs bare Flask + 1 Redis GET",
            "quote",
            "quote baseline",
            THROUGHPUT_TARGET,
            how,
        ),
        Row(
            "a. cached quote p99 latency, QuantPulse vs baseline",
            _p99(runs["quote"]),
            _p99(runs["quote baseline"]),
            p99,
            f"<= {P99_TARGET}x",
            verdict(p99 <= P99_TARGET),
            "wrk --latency distribution" if load.load_tool() == "wrk" else "python load generator",
        ),
        _speed_row(
            runs,
            "a. cached quote throughput, QuantPulse vs Flask answering a constant JSON (ceiling)",
            "quote",
            "quote constant",
            CEILING_TARGET,
            how,
        ),
        _speed_row(
            runs,
            "a. cached history (1mo) throughput, QuantPulse vs bare Flask + 1 Redis GET",
            "history",
            "history baseline",
            THROUGHPUT_TARGET,
            how,
        ),
        _speed_row(
            runs,
            "a. cached profile throughput, QuantPulse vs bare Flask + 1 Redis GET",
            "profile",
            "profile baseline",
            THROUGHPUT_TARGET,
            how,
        ),
        Row(
            "a. cost of RATE_LIMIT=100000/minute: throughput with vs without",
            _rate(runs["quote limited"]),
            _rate(runs["quote"]),
            _ratio(runs, "quote limited", "quote", lambda run: run.requests_per_second),
            "—",
            verdict(None),
            f"p99 {_p99(runs['quote limited'])} vs {_p99(runs['quote'])}; {_failures(runs, 'quote limited')}",
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
