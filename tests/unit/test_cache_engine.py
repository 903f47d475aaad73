"""The get-or-fetch engine on an embedded (fakeredis) store."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from quantpulse.cache.engine import CacheEngine, CacheKey, Entry, Kind
from quantpulse.cache.stats import COALESCED_WAITS, HITS, MISSES, Stats
from quantpulse.cache.store import embedded_store
from quantpulse.errors import ServiceUnavailable
from quantpulse.models import Profile
from quantpulse.symbols import Instrument

PROFILE = Kind("profile", Profile, ttl=60)
RELIANCE = CacheKey(PROFILE, Instrument("RELIANCE", "NSE"))
TCS = CacheKey(PROFILE, Instrument("TCS", "NSE"))


def profile(name: str = "Reliance Industries Ltd") -> Profile:
    return Profile(name, None, "Energy", None, Decimal("19475412470000.50"), 347362, None, "INR")


def entry(name: str = "Reliance Industries Ltd", fetched_at: float | None = None) -> Entry[Profile]:
    return Entry(profile(name), "twelvedata", fetched_at or time.time())


@pytest.fixture
def store():
    return embedded_store(max_entries=100)


@pytest.fixture
def stats() -> Stats:
    return Stats()


@pytest.fixture
def engine(store, stats) -> CacheEngine:
    return CacheEngine(store, stats, wait_timeout=2)


def test_miss_fetches_and_stores_readable_json_with_the_type_ttl(engine, store, stats):
    served = engine.get_or_fetch(RELIANCE, entry)

    assert served.cache == "miss" and served.value == profile()
    raw = json.loads(store.client.get("qp:v1:profile:NSE:RELIANCE"))
    assert raw["source"] == "twelvedata"
    assert raw["value"]["market_cap"] == "19475412470000.50"  # exact, as a string
    assert 0 < store.client.ttl("qp:v1:profile:NSE:RELIANCE") <= 60
    assert stats.count(MISSES) == 1


def test_fresh_entry_is_a_hit_with_the_same_value_and_fetch_time(engine, stats):
    first = engine.get_or_fetch(RELIANCE, entry)

    second = engine.get_or_fetch(RELIANCE, lambda: pytest.fail("a hit must not fetch"))

    assert second.cache == "hit"
    assert second.value == first.value
    assert second.entry.fetched_at == pytest.approx(first.entry.fetched_at)
    assert stats.count(HITS) == 1


def test_entry_older_than_its_ttl_is_fetched_again(engine):
    engine.get_or_fetch(RELIANCE, lambda: entry(fetched_at=time.time() - 61))

    served = engine.get_or_fetch(RELIANCE, lambda: entry("Refetched"))

    assert served.cache == "miss" and served.value.name == "Refetched"


def test_concurrent_misses_in_one_process_make_one_fetch(engine, stats):
    release = threading.Event()
    fetches = []

    def slow_fetch() -> Entry[Profile]:
        fetches.append(1)
        release.wait(2)
        return entry()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(engine.get_or_fetch, RELIANCE, slow_fetch) for _ in range(8)]
        time.sleep(0.2)
        release.set()
        results = [future.result(timeout=3) for future in futures]

    assert len(fetches) == 1
    assert sorted(r.cache for r in results) == ["coalesced"] * 7 + ["miss"]
    assert {r.value for r in results} == {profile()}
    assert stats.count(COALESCED_WAITS) == 7


def test_a_failed_fetch_is_shared_with_its_waiters_and_nothing_is_cached(engine, store):
    release = threading.Event()

    def failing_fetch() -> Entry[Profile]:
        release.wait(2)
        raise ServiceUnavailable("upstream down")

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(engine.get_or_fetch, RELIANCE, failing_fetch) for _ in range(4)]
        time.sleep(0.2)
        release.set()
        errors = [future.exception(timeout=3) for future in futures]

    assert all(isinstance(error, ServiceUnavailable) for error in errors)
    assert store.client.get(RELIANCE.redis_key) is None


def test_waiters_give_up_after_the_wait_timeout(store, stats):
    engine = CacheEngine(store, stats, wait_timeout=0.2)
    release = threading.Event()

    def stuck_fetch() -> Entry[Profile]:
        release.wait(3)
        return entry()

    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(engine.get_or_fetch, RELIANCE, stuck_fetch)
        time.sleep(0.1)
        waiter = pool.submit(engine.get_or_fetch, RELIANCE, stuck_fetch)
        error = waiter.exception(timeout=2)
        release.set()
        leader.result(timeout=3)

    assert isinstance(error, ServiceUnavailable)


def test_many_keys_answer_hits_and_fetch_only_the_misses(engine):
    engine.get_or_fetch(RELIANCE, entry)
    asked = []

    def fetch_many(keys):
        asked.extend(keys)
        return {key: entry(key.instrument.ticker) for key in keys}

    results = engine.get_or_fetch_many([RELIANCE, TCS], fetch_many)

    assert asked == [TCS]
    assert results[RELIANCE].cache == "hit" and results[TCS].cache == "miss"


def test_an_undecodable_entry_is_a_miss_and_is_overwritten(engine, store):
    store.client.set(RELIANCE.redis_key, b"\x80not json")

    served = engine.get_or_fetch(RELIANCE, entry)

    assert served.cache == "miss"
    assert json.loads(store.client.get(RELIANCE.redis_key))["source"] == "twelvedata"


def test_embedded_store_stays_within_its_bound(stats):
    engine = CacheEngine(embedded_store(max_entries=3), stats, wait_timeout=1)

    for ticker in ("A", "B", "C", "D", "E"):
        engine.get_or_fetch(CacheKey(PROFILE, Instrument(ticker, "NSE")), entry)

    assert engine.entry_count() == 3


def test_delete_drops_only_the_named_keys(engine):
    engine.get_or_fetch(RELIANCE, entry)
    engine.get_or_fetch(TCS, entry)

    assert engine.delete([RELIANCE]) == 1
    assert engine.peek(RELIANCE) is None and engine.peek(TCS) is not None
