"""The fleet behaves as ONE upstream client: two gunicorn instances x 4 workers, one real Redis.

The fake provider answers after 300 ms, like a real API, and counts what it receives. The only
time bounds here are liveness bounds (an answer arrives instead of hanging); speed is measured by
the benchmarks, not asserted by tests.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import UPSTREAM_LATENCY
from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer, fire, wait_until

pytestmark = pytest.mark.slow

PROVIDER_TIMEOUT = 3
LOCK_TTL = 2


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def fleet_env(upstream: FakeProviderServer, redis_server: RedisServer) -> dict[str, str]:
    return {
        **upstream.service_env(),
        "REDIS_URL": redis_server.url,
        "PROVIDER_TIMEOUT": str(PROVIDER_TIMEOUT),
        "LOCK_TTL": str(LOCK_TTL),
    }


@pytest.fixture
def fleet(fleet_env: dict[str, str]) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    """Two instances of 4 workers sharing one Redis."""
    with Gunicorn(fleet_env, workers=4) as first, Gunicorn(fleet_env, workers=4) as second:
        yield first, second


def status_of(instance: Gunicorn) -> dict[str, Any]:
    return requests.get(f"{instance.url}/stock/service/status", timeout=10).json()["status"]


@pytest.mark.parametrize(
    ("path", "upstream_path", "calls"),
    [
        ("/stock/RELIANCE", "/quote", 1),
        ("/stock/TCS/historical?period=6mo", "/time_series", 1),
        ("/stock/INFY/profile", "/profile", 2),  # the one fill also asks Finnhub for the market cap
    ],
)
def test_cold_storm_over_two_instances_makes_one_fill(fleet, upstream, path, upstream_path, calls):
    answers = fire([instance.url + path for instance in fleet], 200)

    assert upstream.calls("twelvedata", upstream_path) == 1
    assert upstream.calls() == calls
    assert {answer.status for answer in answers} == {200}
    assert len({str(answer.body.get("currentPrice", answer.body.get("data"))) for answer in answers}) == 1
    caches = [answer.body["service_info"]["cache"] for answer in answers]
    assert caches.count("miss") == 1 and set(caches) <= {"miss", "coalesced", "hit"}
    waits = sorted(a.seconds for a in answers if a.body["service_info"]["cache"] == "coalesced")
    print(
        f"\n{path}: waiters p50 {statistics.median(waits):.3f} s, p99 {waits[int(len(waits) * 0.99)]:.3f} s"
    )


def test_expired_entry_storm_is_served_stale_with_one_refresh(fleet_env, upstream):
    env = {**fleet_env, "QUOTE_TTL": "1"}
    with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
        requests.get(f"{first.url}/stock/SBIN", timeout=10)
        time.sleep(1.2)
        before = upstream.calls()

        answers = fire([first.url + "/stock/SBIN", second.url + "/stock/SBIN"], 100)
        wait_until(lambda: upstream.calls() > before, timeout=5, what="the background refresh")
        time.sleep(UPSTREAM_LATENCY * 2)

        assert upstream.calls() - before == 1
        assert {answer.status for answer in answers} == {200}
        caches = [answer.body["service_info"]["cache"] for answer in answers]
        # Nobody waits for the provider: the stale copy, or (for requests that arrive after the
        # refresh landed) the new one; never a miss or a wait on the fill.
        assert set(caches) <= {"stale", "hit"} and caches.count("stale") >= len(answers) // 2
        assert all(
            a.body["service_info"]["stale"] is (a.body["service_info"]["cache"] == "stale") for a in answers
        )
        refreshed = requests.get(f"{second.url}/stock/SBIN", timeout=10).json()
        assert refreshed["service_info"]["cache"] == "hit"


def test_an_owner_that_never_releases_costs_waiters_at_most_the_lock_expiry(fleet, upstream, redis_server):
    redis_server.cli("SET", "qp:v1:lock:quote:NSE:ITC", "owner-that-died", "PX", str(LOCK_TTL * 1000))

    answers = fire([instance.url + "/stock/ITC" for instance in fleet], 60)

    assert {answer.status for answer in answers} == {200}
    assert upstream.calls() == 1
    assert max(answer.seconds for answer in answers) < LOCK_TTL + PROVIDER_TIMEOUT
    time.sleep(0.6)
    assert status_of(fleet[0])["cache_stats"]["lock_takeovers"] >= 1


def test_killing_the_worker_that_holds_the_fill_lock_costs_one_extra_call_at_most(
    fleet, upstream, redis_server
):
    first, second = fleet
    upstream.set_mode("twelvedata", "stall", times=1, stall_seconds=20)
    with ThreadPoolExecutor(2) as pool:
        owner = pool.submit(requests.get, f"{first.url}/stock/ICICIBANK", timeout=30)
        wait_until(
            lambda: redis_server.cli("EXISTS", "qp:v1:lock:quote:NSE:ICICIBANK").strip() == "1",
            timeout=5,
            what="the fill lock",
        )
        waiting = pool.submit(fire, [second.url + "/stock/ICICIBANK"], 40)
        time.sleep(0.3)
        for pid in first.worker_pids():
            os.kill(pid, signal.SIGKILL)  # the lock holder is among them
        answers = waiting.result(timeout=30)
        with pytest.raises(requests.ConnectionError):
            owner.result(timeout=30)  # its worker was killed under it

    assert {answer.status for answer in answers} == {200}
    assert {answer.body["service_info"]["source"] for answer in answers} == {"twelvedata"}
    assert upstream.calls("twelvedata") <= 2, "the stalled call, plus one take-over"
    assert max(answer.seconds for answer in answers) < LOCK_TTL + PROVIDER_TIMEOUT * 2


def test_redis_outage_under_load_never_500s_and_sharing_resumes(fleet, upstream, redis_server):
    first, second = fleet
    answers: list[tuple[int, float]] = []
    stop = threading.Event()

    def load() -> None:
        symbols = ["RELIANCE", "TCS", "INFY", "HDFCBANK"]
        index = 0
        while not stop.is_set():
            url = f"{fleet[index % 2].url}/stock/{symbols[index % 4]}"
            began = time.monotonic()
            status = requests.get(url, timeout=30).status_code
            answers.append((status, time.monotonic() - began))
            index += 1

    workers = [threading.Thread(target=load) for _ in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(1)
    redis_server.stop()
    time.sleep(3)
    degraded = requests.get(f"{first.url}/health/ready", timeout=10)
    redis_server.start()
    time.sleep(1)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)

    assert answers and {status for status, _ in answers} == {200}
    assert max(seconds for _, seconds in answers) < PROVIDER_TIMEOUT + 2
    assert degraded.status_code == 503 and degraded.json()["status"] == "degraded"

    def shared_again() -> bool:
        symbol = f"M&M?probe={time.monotonic()}"  # a new query string, same instrument
        requests.get(f"{first.url}/stock/{symbol}", timeout=10)
        return requests.get(f"{second.url}/stock/M%26M", timeout=10).json()["service_info"]["cache"] == "hit"

    wait_until(shared_again, timeout=10, what="shared caching after Redis came back")
    assert requests.get(f"{second.url}/health/ready", timeout=10).status_code == 200


def test_status_from_either_instance_matches_the_providers_own_count(fleet, upstream, redis_server):
    first, second = fleet
    fire([first.url + "/stock/RELIANCE", second.url + "/stock/TCS"], 40)
    requests.get(f"{second.url}/stock/ZZZZZZ", timeout=10)
    requests.post(f"{first.url}/stock/quotes?symbols=INFY,ITC,SBIN", timeout=10)
    time.sleep(0.7)  # every worker flushes its counters at least every 0.5 s

    one, other = status_of(first), status_of(second)

    assert one["provider_status"] == other["provider_status"]
    for field in ("hits", "misses", "coalesced_waits", "stale_served"):
        assert one["cache_stats"][field] == other["cache_stats"][field], field
    assert one["provider_status"]["providers"]["twelvedata"]["calls"] == upstream.calls("twelvedata") == 4
    assert one["cache_stats"]["stats_scope"] == "fleet"
    assert "cache:misses" in redis_server.cli("HGETALL", "qp:v1:stats")


def test_metrics_from_any_worker_count_the_whole_fleet(fleet, upstream):
    first, second = fleet
    fire([first.url + "/stock/HDFCBANK", second.url + "/stock/HDFCBANK"], 40)
    time.sleep(0.7)  # every worker flushes its counters at least every 0.5 s

    scrapes = [requests.get(f"{instance.url}/metrics", timeout=10).text for instance in (first, second) * 2]

    served = 'quantpulse_requests_total{endpoint="stocks.quote",status="200"} 40.0'
    assert all(served in text for text in scrapes), "every worker of both instances reports all 40"
    calls = f'quantpulse_upstream_calls_total{{provider="twelvedata"}} {upstream.calls("twelvedata")}.0'
    assert all(calls in text for text in scrapes)


@pytest.mark.parametrize(("market_hours", "calls_after_the_ttl"), [("always_closed", 0), ("always_open", 1)])
def test_a_closed_market_costs_no_quote_call_after_the_settled_fetch(
    fleet_env, upstream, market_hours, calls_after_the_ttl
):
    env = {**fleet_env, "QUOTE_TTL": "1", "MARKET_HOURS": market_hours}
    with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
        assert requests.get(f"{first.url}/stock/ITC", timeout=10).status_code == 200
        time.sleep(1.5)  # past QUOTE_TTL
        before = upstream.calls()

        answers = fire([first.url + "/stock/ITC", second.url + "/stock/ITC"], 40)
        time.sleep(UPSTREAM_LATENCY * 3)  # room for a refresh, if one were started

        assert {answer.status for answer in answers} == {200}
        assert upstream.calls() - before == calls_after_the_ttl
        if market_hours == "always_closed":
            assert {answer.body["service_info"]["cache"] for answer in answers} == {"hit"}
