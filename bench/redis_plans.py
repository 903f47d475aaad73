"""How QuantPulse fits a managed Redis plan: ``python -m bench.redis_plans`` (``make redis-plans``).

(a) Connections: two gunicorn instances x 4 workers on a redis-server configured like Heroku's
mini plan (``maxclients 20``), under the same mixed load, once with the default
``REDIS_MAX_CONNECTIONS`` and once with 2: peak ``connected_clients``, rejected connections and
answers. (b) Memory: every instrument the fake provider knows is filled the way a front end
fills it (quote, profile, ``1mo`` and ``1y`` history); ``MEMORY USAGE`` per entry type and the
growth of ``used_memory`` per instrument, against the plan's 25 MB. Writes
bench/results/redis-plans.md and .json. It asserts nothing.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import requests

from bench.report import INFO, Report, Row, verdict
from tests.conftest import FH_KEY, TD_KEY
from tests.fakes.provider_server import COMPANIES, FakeProviderServer
from tests.servers import Gunicorn, PeakClients, RedisServer, mixed_load

PLAN_BYTES = 25 * 1024 * 1024
PLAN_CONNECTIONS = 20
HEROKU_MINI = {"maxclients": str(PLAN_CONNECTIONS), "maxmemory": "25mb", "maxmemory-policy": "noeviction"}
INSTRUMENT = (
    "/stock/{}",
    "/stock/{}/profile",
    "/stock/{}/historical?period=1mo",
    "/stock/{}/historical?period=1y",
)
# What else lives in Redis besides entries (statistics, budgets, locks, health, the rate limiter)
# and Redis's own growth are kept out of the instruments' share.
HEADROOM = 0.8
COLUMNS = ("measurement", "result", "baseline", "ratio", "target", "verdict", "note")
NOTES = [
    "An instrument is one quote, one profile and the 1mo and 1y histories: what the dashboard "
    "loads for a stock. Bytes are Redis's own MEMORY USAGE per key (value, key name, expiry and "
    "allocator overhead) and the growth of INFO used_memory per instrument.",
    "Instruments that fit: 80 % of 25 MB, less Redis's empty footprint, over the used_memory "
    "growth per instrument. The other 20 % is left to statistics, budgets, fill locks, provider "
    "health, the rate limiter's counters and fragmentation.",
    "Connections: 2 instances x 4 workers (gevent), 1,500 requests over 41 "
    "instruments from 64 client threads; the baseline is the plan's limit of 20, which must also "
    "leave room for the CLI and redis-cli.",
]


def main() -> int:
    report = Report("QuantPulse on Redis plans", COLUMNS, notes=list(NOTES))
    with FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY, latency=0.05) as fake:
        for setting in ("default (4)", "2"):
            print(f"... connections, REDIS_MAX_CONNECTIONS={setting}", flush=True)
            report.add(connection_row(fake, setting))
        print("... memory per entry type and per instrument", flush=True)
        for row in memory_rows(fake):
            report.add(row)
    report.finish("redis-plans")
    return 0


def connection_row(fake: FakeProviderServer, setting: str) -> Row:
    with RedisServer(options=HEROKU_MINI) as server, _watcher(server) as watcher:
        env = {**fake.service_env(), "REDIS_URL": server.url}
        if setting == "2":
            env["REDIS_MAX_CONNECTIONS"] = "2"
        with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
            paths = [path.format(ticker) for ticker in sorted(COMPANIES) for path in INSTRUMENT[:3]]
            with PeakClients(watcher) as peak:
                statuses = mixed_load((first, second), paths, 1500, 64)
        rejected = int(watcher.info("stats")["rejected_connections"])
    app_peak = peak.peak - 1  # the watcher's own connection
    fits = rejected == 0 and app_peak <= PLAN_CONNECTIONS - 2
    return Row(
        measurement=f"a. peak connections, 2 x 4 workers, REDIS_MAX_CONNECTIONS={setting}",
        result=f"{app_peak} (rejected {rejected})",
        baseline=f"plan limit {PLAN_CONNECTIONS}",
        ratio=round(app_peak / PLAN_CONNECTIONS, 2),
        target="<= 18, none rejected",
        verdict=verdict(fits) if setting == "2" else INFO,
        note=f"answers {dict(statuses)}",
    )


def memory_rows(fake: FakeProviderServer) -> list[Row]:
    tickers = sorted(COMPANIES)
    with RedisServer() as server, _watcher(server) as watcher:
        env = {**fake.service_env(), "REDIS_URL": server.url}
        with Gunicorn(env, workers=1) as instance:
            requests.get(f"{instance.url}/stock/service/status", timeout=10)
            time.sleep(0.7)  # statistics flushed: the baseline holds everything but entries
            empty = int(watcher.info("memory")["used_memory"])
            for ticker in tickers:
                for path in INSTRUMENT:
                    requests.get(instance.url + path.format(ticker), timeout=30).raise_for_status()
            time.sleep(0.7)
            filled = int(watcher.info("memory")["used_memory"])
            sizes = _bytes_per_kind(watcher)
    per_instrument = (filled - empty) / len(tickers)
    fit = int((PLAN_BYTES * HEADROOM - empty) / per_instrument)
    rows = [
        Row(
            measurement=f"b. bytes per {kind} entry",
            result=f"{statistics.mean(values):,.0f}",
            baseline="",
            ratio=None,
            target="",
            verdict=INFO,
            note=f"MEMORY USAGE, mean of {len(values)} keys (min {min(values):,}, max {max(values):,})",
        )
        for kind, values in sorted(sizes.items())
    ]
    rows.append(
        Row(
            measurement="b. used_memory growth per instrument",
            result=f"{per_instrument:,.0f} bytes",
            baseline=f"empty Redis + service: {empty:,} bytes",
            ratio=None,
            target="",
            verdict=INFO,
            note=f"{len(tickers)} instruments filled",
        )
    )
    rows.append(
        Row(
            measurement="b. instruments that fit in Heroku mini (25 MB)",
            result=f"{fit:,}",
            baseline="25 MB",
            ratio=None,
            target="",
            verdict=INFO,
            note="80 % of the plan for entries (see notes); volatile-lru evicts the coldest beyond",
        )
    )
    return rows


def _bytes_per_kind(client: redis.Redis) -> dict[str, list[int]]:
    sizes: dict[str, list[int]] = defaultdict(list)
    for name in client.scan_iter(match="qp:v1:*", count=1000):
        parts = name.decode().split(":")
        kind = parts[2]
        if kind == "history":
            kind = f"history {parts[-1]}"
        if kind in ("quote", "profile", "history 1mo", "history 1y"):
            sizes[kind].append(int(client.memory_usage(name, samples=0)))
    return sizes


@contextmanager
def _watcher(server: RedisServer) -> Iterator[redis.Redis]:
    """The measurement's own connection, opened before the fleet so it is never refused."""
    client = redis.Redis(port=server.port)
    client.ping()
    try:
        yield client
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
