"""The fleet spends its quota like one careful client: a compressed-time polling load against a
fake provider that enforces the free plans and answers 429 exactly as the real APIs do.

A "minute" lasts MINUTE seconds on both sides (QUOTA_MINUTE_SECONDS here, enforce_limits there),
and the quote TTL is one such minute, so a few seconds of polling are several minutes of quota.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from tests.conftest import FH_KEY, TD_KEY
from tests.fakes.provider_server import COMPANIES, NO_HISTORY_SYMBOLS, FakeProviderServer
from tests.servers import Gunicorn, RedisServer

pytestmark = pytest.mark.slow

MINUTE = 3.0
LOAD_SECONDS = 5 * MINUTE
CLIENTS = 20
SYMBOLS = [ticker for ticker in COMPANIES if ticker not in NO_HISTORY_SYMBOLS][:50]
FREE_PLANS = {
    "TWELVEDATA_CREDITS_PER_MINUTE": "8",
    "TWELVEDATA_CREDITS_PER_DAY": "800",
    "FINNHUB_CALLS_PER_MINUTE": "60",
    "FINNHUB_CALLS_PER_SECOND": "30",
}


@pytest.fixture
def upstream() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY, latency=0.02) as server:
        server.enforce_limits(minute_seconds=MINUTE)
        yield server


@pytest.fixture
def fleet(upstream: FakeProviderServer) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    with RedisServer() as redis_server:
        env = {
            **FREE_PLANS,
            **upstream.service_env(),
            "REDIS_URL": redis_server.url,
            "QUOTA_MINUTE_SECONDS": str(MINUTE),
            "QUOTE_TTL": str(int(MINUTE)),
            "QUOTE_STALE_TTL": str(int(MINUTE * 10)),
            "PROVIDER_TIMEOUT": "3",
            "LOG_LEVEL": "DEBUG",
        }
        with Gunicorn(env, workers=4) as first, Gunicorn(env, workers=4) as second:
            yield first, second


def poll(base_url: str, watchlist: list[str], batch: bool, stop: threading.Event, log: list) -> None:
    """One front end: polls its watchlist (as a batch, or symbol by symbol) until told to stop."""
    while not stop.is_set():
        if batch:
            response = requests.post(
                f"{base_url}/stock/quotes", params={"symbols": ",".join(watchlist)}, timeout=30
            )
            body = response.json()
            log.append((response.status_code, body.get("errors"), list(body.get("quotes", {}).values())))
        else:
            for symbol in watchlist:
                response = requests.get(f"{base_url}/stock/{quote(symbol, safe='')}", timeout=30)
                log.append((response.status_code, None, [response.json()]))
        time.sleep(0.2)


def test_polling_fleet_never_gets_a_429_and_stays_within_the_free_plans(fleet, upstream):
    stop, log = threading.Event(), []
    clients = [
        threading.Thread(
            target=poll,
            args=(fleet[i % 2].url, [SYMBOLS[(i * 7 + j) % 50] for j in range(10)], i % 2 == 0, stop, log),
        )
        for i in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(LOAD_SECONDS)
    stop.set()
    for client in clients:
        client.join(timeout=60)

    quotes = list(itertools.chain.from_iterable(quotes for _, _, quotes in log))
    answers = Counter(_answer_kind(quote) for quote in quotes)
    print(
        f"\nclient requests: {len(log)} ({len(quotes)} quotes) from {CLIENTS} clients polling {len(SYMBOLS)}"
        f" symbols for {LOAD_SECONDS:.0f} s (= {LOAD_SECONDS / MINUTE:.0f} plan minutes) on 2 x 4 workers\n"
        f"upstream requests: twelvedata {upstream.calls('twelvedata')}, finnhub {upstream.calls('finnhub')}\n"
        f"credits used: twelvedata {upstream.credits_used('twelvedata')} "
        f"(per minute: {sorted(upstream.credits_by_window('twelvedata').values())}), "
        f"finnhub {upstream.credits_used('finnhub')}\n"
        f"429s received from the providers: twelvedata {upstream.rate_limited('twelvedata')}, "
        f"finnhub {upstream.rate_limited('finnhub')}\n"
        f"answers: {dict(answers)}"
    )
    assert {status for status, _, _ in log} == {200}
    errors = [errors for _, errors, _ in log if errors]
    assert not errors, errors[:3]
    assert upstream.rate_limited() == 0
    assert max(upstream.credits_by_window("twelvedata").values()) <= 8
    assert max(upstream.credits_by_window("finnhub").values()) <= 60
    assert answers["fresh"] > answers["demo"], "quota spent on the symbols clients poll"
    assert upstream.key_seen_in_url is False
    for instance in fleet:
        assert TD_KEY not in instance.output() and FH_KEY not in instance.output()


def _answer_kind(quote: dict) -> str:
    info = quote["service_info"]
    if quote["isDemoData"]:
        return "demo"
    return "stale" if info["stale"] else "fresh"


def test_client_rate_limit_is_shared_by_both_instances(upstream):
    env = {"STOCK_PROVIDER": "demo", "RATE_LIMIT": "6/minute"}
    with RedisServer() as redis_server:
        env["REDIS_URL"] = redis_server.url
        with Gunicorn(env, workers=2) as first, Gunicorn(env, workers=2) as second:
            answers = [requests.get(f"{(first, second)[i % 2].url}/stock/TCS", timeout=10) for i in range(10)]
            health = requests.get(f"{second.url}/health", timeout=10)

    assert [a.status_code for a in answers] == [200] * 6 + [429] * 4
    for refused in answers[6:]:
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.json()["detail"]["error"] == "Too Many Requests"
    assert health.status_code == 200
