"""The fleet on Redis as the platforms sell it: Heroku mini's 20 connections and 25 MB with
``noeviction``, a Redis that is SIGKILLed and restarted, and a failover that resets every open
connection. Two gunicorn instances x 4 workers share one real redis-server; the fake provider
answers after 300 ms and counts every request.

Time bounds here are liveness bounds from docs/redis-plans.md ("within a second"), with slack; speed is the
benchmarks' business.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from tests.e2e.conftest import UPSTREAM_LATENCY
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.tcp_proxy import ResettingProxy
from tests.servers import Answer, Gunicorn, PeakClients, RedisServer, fire, mixed_load, wait_until

pytestmark = pytest.mark.slow

HEROKU_MINI = {"maxclients": "20", "maxmemory": "25mb", "maxmemory-policy": "noeviction"}
SYMBOLS = [f"SYN{index:02d}" for index in range(1, 42)]
PATHS = ("/stock/{}", "/stock/{}/profile", "/stock/{}/historical?period=1mo")


@pytest.fixture
def mini() -> Iterator[RedisServer]:
    """A redis-server configured like Heroku's Key-Value Store mini plan."""
    with RedisServer(options=HEROKU_MINI) as server:
        yield server


@pytest.fixture
def watcher(mini: RedisServer) -> Iterator[redis.Redis]:
    """The test's own connection, opened first: it must not be refused when the plan is full."""
    client = redis.Redis(port=mini.port)
    client.ping()
    yield client
    client.close()


def fleet_env(upstream: FakeProviderServer, redis_url: str, **extra: str) -> dict[str, str]:
    return {**upstream.service_env(), "REDIS_URL": redis_url, "PROVIDER_TIMEOUT": "3", **extra}


def load(instances: tuple[Gunicorn, ...], total: int, concurrency: int) -> Counter[int]:
    """Quotes, profiles and histories of 41 instruments, spread over the instances."""
    paths = [path.format(symbol) for symbol in SYMBOLS for path in PATHS]
    return mixed_load(instances, paths, total, concurrency)


def cold_storms(instances: tuple[Gunicorn, ...], upstream: FakeProviderServer) -> list[int]:
    """One 100-request cold storm per data type; the upstream calls each one cost."""
    costs = []
    for path in ("/stock/RELIANCE", "/stock/TCS/historical?period=6mo", "/stock/INFY/profile"):
        before = upstream.calls()
        answers = fire([instance.url + path for instance in instances], 100)
        assert {answer.status for answer in answers} == {200}, path
        costs.append(upstream.calls() - before)
    return costs


def fleet_status(instance: Gunicorn) -> dict[str, Any]:
    return requests.get(f"{instance.url}/stock/service/status", timeout=10).json()["status"]


def test_two_instances_fit_heroku_mini_with_two_connections_per_worker(upstream, mini, watcher):
    env = fleet_env(upstream, mini.url, REDIS_MAX_CONNECTIONS="2")
    with (
        Gunicorn(env, workers=4) as first,
        Gunicorn(env, workers=4) as second,
        PeakClients(watcher) as clients,
    ):
        statuses = load((first, second), 900, concurrency=48)
        storm_costs = cold_storms((first, second), upstream)

    print(f"\nREDIS_MAX_CONNECTIONS=2: peak connected_clients {clients.peak} (the test's own included)")
    assert statuses == Counter({200: 900})
    # One fill per storm, fleet-wide; a profile's fill also asks Finnhub for the market cap.
    assert storm_costs == [1, 1, 2]
    assert int(watcher.info("stats")["rejected_connections"]) == 0
    assert clients.peak <= 8 * 2 + 1


def test_the_default_setting_over_the_plan_is_refused_without_5xx(upstream, mini, watcher):
    """4 connections per worker x 8 workers want 32 of the plan's 20."""
    env = fleet_env(upstream, mini.url)
    with (
        Gunicorn(env, workers=4) as first,
        Gunicorn(env, workers=4) as second,
        PeakClients(watcher) as clients,
    ):
        statuses = load((first, second), 1500, concurrency=64)
        storm_costs = cold_storms((first, second), upstream)
        time.sleep(0.7)  # every worker flushes its counters at least every 0.5 s
        refused = fleet_status(first)["cache_stats"]["redis_errors"]["refused"]

    rejected = int(watcher.info("stats")["rejected_connections"])
    print(f"\ndefault: peak connected_clients {clients.peak}, rejected {rejected}, counted refused {refused}")
    assert rejected > 0, "the plan really was over-subscribed"
    assert statuses == Counter({200: 1500}), "refused clients never become 5xx"
    assert refused > 0, "and operators see them in status"
    assert all(cost >= 1 for cost in storm_costs)


def test_writes_refused_under_noeviction_oom_are_never_5xx(upstream, mini, watcher):
    env = fleet_env(upstream, mini.url, REDIS_MAX_CONNECTIONS="2", TWELVEDATA_CREDITS_PER_MINUTE="1000")
    with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
        warm = requests.get(f"{first.url}/stock/RELIANCE", timeout=10).json()
        watcher.config_set("maxmemory", "1")  # every write is now "OOM command not allowed"

        statuses = load((first, second), 300, concurrency=16)
        cold = requests.get(f"{second.url}/stock/TCS", timeout=10)
        cached = requests.get(f"{second.url}/stock/RELIANCE", timeout=10).json()

        watcher.config_set("maxmemory", "25mb")
        time.sleep(0.7)  # the counts kept while writes failed are flushed now
        counted = fleet_status(first)["cache_stats"]["redis_errors"]

    print(f"\nOOM: statuses {dict(statuses)}, redis_errors {counted}")
    assert statuses == Counter({200: 300})
    assert cold.status_code == 200 and cold.json()["isDemoData"] is False
    # The shared credit budget cannot be charged: Twelve Data fails closed, Finnhub answers.
    assert cold.json()["service_info"]["source"] == "finnhub"
    assert cached["currentPrice"] == warm["currentPrice"] and cached["service_info"]["cached"] is True
    assert counted["oom"] > 0


def storm_after_recovery(
    instances: tuple[Gunicorn, ...], upstream: FakeProviderServer, path: str
) -> list[Answer]:
    """Readiness 200 everywhere, one more second, then a 20-request cold storm."""
    for instance in instances:
        wait_until(
            lambda instance=instance: requests.get(f"{instance.url}/health/ready", timeout=5).ok,
            timeout=15,
            what="readiness",
        )
    time.sleep(1)
    before = upstream.calls()
    answers = fire([instance.url + path for instance in instances], 20)
    cost = upstream.calls() - before
    waits = sorted(answer.seconds for answer in answers)
    print(
        f"\n{path}: upstream calls {cost}, answers p50 {statistics.median(waits):.3f} s, "
        f"p99 {waits[-1]:.3f} s (upstream {UPSTREAM_LATENCY} s)"
    )
    assert {answer.status for answer in answers} == {200}
    assert cost == 1, "the whole fleet shares one cache again"
    # Dead pooled connections were replaced, not failed on: the budget could be charged.
    assert {answer.body["service_info"]["source"] for answer in answers} == {"twelvedata"}
    assert waits[-1] < UPSTREAM_LATENCY + 1, "waiters are not held for the lock's expiry"
    return answers


class Traffic:
    """Light background traffic over the instances, so every worker meets the outage."""

    MAX_SECONDS = 60.0
    MAX_REQUESTS = 2_000

    def __init__(self, instances: tuple[Gunicorn, ...]) -> None:
        self.statuses: Counter[int] = Counter()
        self._instances = instances
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(4)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, offset: int) -> None:
        """Until stopped, and never past ``MAX_SECONDS`` or ``MAX_REQUESTS`` per thread."""
        deadline = time.monotonic() + self.MAX_SECONDS
        for sent in range(self.MAX_REQUESTS):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            index = offset + 4 * sent
            path = PATHS[0].format(SYMBOLS[index % 8])
            self.statuses[requests.get(self._instances[index % 2].url + path, timeout=30).status_code] += 1
            time.sleep(0.05)


def test_a_restart_storm_costs_one_upstream_call(upstream):
    # A long lock expiry, so a waiter that sleeps until it lapses would show.
    with RedisServer() as server:
        env = fleet_env(upstream, server.url, LOCK_TTL="10", TWELVEDATA_CREDITS_PER_MINUTE="1000")
        with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
            fleet = (first, second)
            with Traffic(fleet) as traffic:
                fire([instance.url + "/stock/WIPRO" for instance in fleet], 40)  # listeners subscribed
                time.sleep(1)
                server.kill()
                time.sleep(4)
                server.start()
            storm_after_recovery(fleet, upstream, "/stock/RELIANCE")

    assert set(traffic.statuses) == {200}, "nothing but 200 through the outage"


def test_a_failover_that_resets_every_connection_costs_one_upstream_call(upstream):
    with RedisServer() as server, ResettingProxy(server.port) as proxy:
        env = fleet_env(upstream, proxy.url(), LOCK_TTL="10", TWELVEDATA_CREDITS_PER_MINUTE="1000")
        with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
            fleet = (first, second)
            with Traffic(fleet) as traffic:
                fire([instance.url + "/stock/WIPRO" for instance in fleet], 40)  # listeners subscribed
                time.sleep(1)
                reset = proxy.reset_all()
            storm_after_recovery(fleet, upstream, "/stock/RELIANCE")

    assert reset >= 16, "every worker's pub/sub and pooled connections were cut"
    assert set(traffic.statuses) == {200}
