"""The cache engine on fakeredis: expiry, stale window, locks, take-over, failure sharing, stats.

Two engines on one fakeredis server stand in for two processes sharing one Redis.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import fakeredis
import pytest

from quantpulse.cache.ahead import RefreshAhead
from quantpulse.cache.engine import CacheEngine
from quantpulse.cache.entry import CacheKey, Entry, Failed, Kind, Missing
from quantpulse.cache.locks import FillLocks
from quantpulse.config import Settings
from quantpulse.infra.counters import (
    COALESCED_WAITS,
    FILL_WAKEUP,
    HITS,
    LOCK_TAKEOVERS,
    MISSES,
    STALE_SERVED,
    Stats,
)
from quantpulse.infra.namespace import STATS_KEY
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, connect_redis, embedded_store
from quantpulse.models import Profile

PROFILE = Kind("profile", Profile, ttl=60, stale_ttl=600)
RELIANCE = CacheKey(PROFILE, "NSE:RELIANCE")
TCS = CacheKey(PROFILE, "NSE:TCS")


def profile(name: str = "Reliance Industries Ltd") -> Profile:
    return Profile(name, None, "Energy", None, Decimal("19475412470000.50"), 347362, None, "INR")


def entry(name: str = "Reliance Industries Ltd", age: float = 0.0) -> Entry[Profile]:
    return Entry(profile(name), "twelvedata", time.time() - age)


class ManualExecutor:
    """Collects background work so a test decides when it runs."""

    def __init__(self) -> None:
        self.tasks: list[tuple[Callable, tuple]] = []

    def submit(self, fn: Callable, *args: object) -> None:
        self.tasks.append((fn, args))

    def run_all(self) -> None:
        while self.tasks:
            fn, args = self.tasks.pop(0)
            fn(*args)


class CountingFetch:
    """A fetch function that counts its calls and can block until released."""

    def __init__(self, outcome: Callable[[], object] = entry, *, block: bool = False) -> None:
        self.calls = 0
        self._outcome = outcome
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self) -> object:
        self.calls += 1
        self.release.wait(5)
        return self._outcome()


def shared_store(server: fakeredis.FakeServer) -> Store:
    return Store(fakeredis.FakeRedis(server=server), BACKEND_REDIS)


def make_engine(
    store: Store,
    *,
    refresher=None,
    lock_ttl: float = 5,
    wait_timeout: float = 5,
    fallback: Store | None = None,
    ahead_fraction: float = 0.0,
    budget_allows: bool = True,
) -> CacheEngine:
    stores = Stores(store, fallback=fallback, probe_interval=30)
    return CacheEngine(
        [PROFILE],
        stores,
        Stats(store.client, stores.trouble),
        FillLocks(lock_ttl, max_hold=wait_timeout),
        refresher or ManualExecutor(),
        RefreshAhead(fraction=ahead_fraction, hot_reads=3, allowed=lambda: budget_allows),
        negative_ttl=30,
        failure_ttl=5,
        wait_timeout=wait_timeout,
    )


def dead_redis() -> Store:
    """A production-configured client for a port where nothing listens."""
    return connect_redis(Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.2))


def counts(engine: CacheEngine) -> dict[str, int]:
    return engine._stats.snapshot()[0]


@pytest.fixture
def engine(store) -> CacheEngine:
    return make_engine(store)


# ---- entries and expiry -----------------------------------------------------------------------


def test_miss_stores_readable_json_that_lives_for_ttl_plus_stale_window(engine, store):
    served = engine.get_or_fetch(RELIANCE, entry)

    assert served.cache == "miss" and served.value == profile()
    raw = json.loads(store.client.get("qp:v1:profile:NSE:RELIANCE"))
    assert raw["source"] == "twelvedata"
    assert raw["value"]["market_cap"] == "19475412470000.50"  # exact, as a string
    assert 600 < store.client.ttl("qp:v1:profile:NSE:RELIANCE") <= 660
    assert store.client.get("qp:v1:lock:profile:NSE:RELIANCE") is None, "lock released"


def test_fresh_entry_is_a_hit_without_fetching(engine):
    first = engine.get_or_fetch(RELIANCE, entry)

    second = engine.get_or_fetch(RELIANCE, lambda: pytest.fail("a hit must not fetch"))

    assert second.cache == "hit"
    assert second.entry == first.entry
    assert counts(engine)[HITS] == 1 and counts(engine)[MISSES] == 1


def test_stale_entry_is_served_at_once_and_refreshed_once_in_the_background(store):
    refresher = ManualExecutor()
    engine = make_engine(store, refresher=refresher)
    engine.get_or_fetch(RELIANCE, lambda: entry(age=120))
    fetch = CountingFetch(lambda: entry("Refreshed"))

    answers = [engine.get_or_fetch(RELIANCE, fetch) for _ in range(5)]

    assert [a.cache for a in answers] == ["stale"] * 5
    assert fetch.calls == 0, "nobody waited for the provider"
    assert len(refresher.tasks) == 1, "one refresh, although five requests saw the stale entry"
    refresher.run_all()
    assert fetch.calls == 1
    fresh = engine.get_or_fetch(RELIANCE, fetch)
    assert fresh.cache == "hit" and fresh.value.name == "Refreshed"
    assert counts(engine)[STALE_SERVED] == 5


def test_a_failed_refresh_keeps_the_stale_copy(store):
    refresher = ManualExecutor()
    engine = make_engine(store, refresher=refresher)
    engine.get_or_fetch(RELIANCE, lambda: entry(age=120))
    engine.get_or_fetch(RELIANCE, CountingFetch(lambda: Failed("all down")))

    refresher.run_all()

    again = engine.get_or_fetch(RELIANCE, lambda: pytest.fail("still refreshing?"))
    assert again.cache == "stale" and again.value == profile()


def test_hot_keys_are_refreshed_shortly_before_they_go_stale(store):
    refresher = ManualExecutor()
    engine = make_engine(store, refresher=refresher, ahead_fraction=0.2)
    engine.get_or_fetch(RELIANCE, lambda: entry(age=50))  # fresh, in the last 20 % of its TTL
    fetch = CountingFetch(lambda: entry("Ahead"))

    answers = [engine.get_or_fetch(RELIANCE, fetch).cache for _ in range(4)]
    refresher.run_all()

    assert answers == ["hit"] * 4
    assert fetch.calls == 1, "one refresh once the key was hot"
    assert engine.get_or_fetch(RELIANCE, fetch).value.name == "Ahead"


@pytest.mark.parametrize(("age", "reads", "budget"), [(10, 6, True), (50, 2, True), (50, 6, False)])
def test_no_refresh_ahead_for_young_cold_or_unaffordable_keys(store, age, reads, budget):
    refresher = ManualExecutor()
    engine = make_engine(store, refresher=refresher, ahead_fraction=0.2, budget_allows=budget)
    engine.get_or_fetch(RELIANCE, lambda: entry(age=age))

    for _ in range(reads - 1):
        engine.get_or_fetch(RELIANCE, lambda: pytest.fail("no fetch expected"))

    assert refresher.tasks == []


def test_entry_past_its_stale_window_is_a_miss(engine):
    engine.get_or_fetch(RELIANCE, lambda: entry(age=661))

    served = engine.get_or_fetch(RELIANCE, lambda: entry("Refetched"))

    assert served.cache == "miss" and served.value.name == "Refetched"


def test_unknown_symbol_is_cached_as_a_negative_entry(engine, store):
    fetch = CountingFetch(lambda: Missing("no such symbol"))

    outcomes = [engine.get_or_fetch(RELIANCE, fetch) for _ in range(3)]

    assert outcomes == [Missing("no such symbol")] * 3
    assert fetch.calls == 1
    assert 0 < store.client.ttl("qp:v1:missing:NSE:RELIANCE") <= 30


def test_an_undecodable_entry_is_a_miss_and_is_overwritten(engine, store):
    store.client.set(RELIANCE.redis_key, b"\x80not json")

    served = engine.get_or_fetch(RELIANCE, entry)

    assert served.cache == "miss"
    assert json.loads(store.client.get(RELIANCE.redis_key))["source"] == "twelvedata"


def test_many_keys_answer_hits_and_fetch_only_the_misses(engine):
    engine.get_or_fetch(RELIANCE, entry)
    asked = []

    def fetch_many(keys):
        asked.extend(keys)
        return {key: entry(key.subject) for key in keys}

    results = engine.get_or_fetch_many([RELIANCE, TCS], fetch_many)

    assert asked == [TCS]
    assert results[RELIANCE].cache == "hit" and results[TCS].cache == "miss"


def test_eviction_never_takes_statistics_budgets_or_health():
    store = embedded_store(max_entries=3)
    engine = make_engine(store)
    store.client.hset("qp:v1:stats", "cache:hits", 7)
    store.client.set("qp:v1:health:twelvedata:cooldown", "{}")

    for ticker in ("A", "B", "C", "D", "E", "F"):
        engine.get_or_fetch(CacheKey(PROFILE, f"NSE:{ticker}"), entry)

    assert store.client.hget("qp:v1:stats", "cache:hits") == b"7"
    assert store.client.exists("qp:v1:health:twelvedata:cooldown")


def test_embedded_store_stays_within_its_bound():
    engine = make_engine(embedded_store(max_entries=3))

    for ticker in ("A", "B", "C", "D", "E"):
        engine.get_or_fetch(CacheKey(PROFILE, f"NSE:{ticker}"), entry)

    assert engine.entry_count() <= 3


# ---- single flight across "processes" ------------------------------------------------------


def test_concurrent_misses_in_two_processes_make_one_fetch(server):
    engines = [make_engine(shared_store(server)) for _ in range(2)]
    fetch = CountingFetch(block=True)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(engines[i % 2].get_or_fetch, RELIANCE, fetch) for i in range(16)]
        time.sleep(0.3)
        fetch.release.set()
        results = [future.result(timeout=5) for future in futures]

    assert fetch.calls == 1
    assert sorted(r.cache for r in results) == ["coalesced"] * 15 + ["miss"]
    assert {r.entry for r in results} == {results[0].entry}
    engines[1]._stats.flush()
    assert counts(engines[0])[COALESCED_WAITS] == 15, "both processes' waits, in one shared count"


def wait_behind_a_blocked_fill(owner: CacheEngine, waiter: CacheEngine):
    """``owner`` fills RELIANCE slowly; ``waiter`` (another process) asks meanwhile. Returns the
    waiter's outcome and how long it waited."""
    fetch = CountingFetch(block=True)
    with ThreadPoolExecutor(2) as pool:
        filling = pool.submit(owner.get_or_fetch, RELIANCE, fetch)
        time.sleep(0.1)
        started = time.monotonic()
        waiting = pool.submit(waiter.get_or_fetch, RELIANCE, lambda: pytest.fail("must not fetch"))
        time.sleep(0.2)
        fetch.release.set()
        result = waiting.result(timeout=5)
        filling.result(timeout=5)
    return result, time.monotonic() - started


def test_waiters_are_woken_by_the_fill_not_by_the_lock_expiry(server):
    owner, waiter = make_engine(shared_store(server), lock_ttl=30), make_engine(shared_store(server))

    result, waited = wait_behind_a_blocked_fill(owner, waiter)

    assert result.cache == "coalesced"
    assert waited < 2, "woken by push, long before the owner's 30 s lock would lapse"
    waiter._stats.flush()
    wakeups = counts(waiter)
    assert wakeups[f"{FILL_WAKEUP}:count"] == 1, "the wake-up is timed from the fill's write"
    assert 0 <= wakeups[f"{FILL_WAKEUP}:sum_us"] < 1_000_000


def test_a_dead_owners_lock_expires_and_is_taken_over(store):
    engine = make_engine(store)
    store.client.set(RELIANCE.lock_key, "token-of-a-killed-worker", px=500)
    fetch = CountingFetch()

    started = time.monotonic()
    served = engine.get_or_fetch(RELIANCE, fetch)

    assert 0.4 < time.monotonic() - started < 2
    assert served.cache == "miss" and fetch.calls == 1
    assert counts(engine)[LOCK_TAKEOVERS] == 1


def test_only_the_owner_releases_a_lock(store):
    locks = FillLocks(5, max_hold=30)
    taken, _ = locks.acquire(store.client, ["lock-a"])
    store.client.set("lock-a", "someone-else-took-over")

    locks.release(taken)

    assert store.client.get("lock-a") == b"someone-else-took-over"


def test_a_live_owner_keeps_its_lock_beyond_the_ttl(store):
    locks = FillLocks(0.3, max_hold=30)
    taken, _ = locks.acquire(store.client, ["lock-b"])

    time.sleep(0.8)

    assert store.client.get("lock-b") is not None, "extended by the keeper while held"
    locks.release(taken)
    assert store.client.get("lock-b") is None


def test_a_failed_fill_is_shared_with_waiters_and_newcomers(server):
    owner, other = make_engine(shared_store(server)), make_engine(shared_store(server))
    fetch = CountingFetch(lambda: Failed("twelvedata: transient", retry_after=7), block=True)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit((owner if i == 0 else other).get_or_fetch, RELIANCE, fetch) for i in range(6)]
        time.sleep(0.3)
        fetch.release.set()
        outcomes = [future.result(timeout=5) for future in futures]
    newcomer = other.get_or_fetch(RELIANCE, fetch)

    assert fetch.calls == 1
    assert counts(other)[HITS] == 0, "a shared failure is not a cache hit"
    assert set(outcomes) == {newcomer} == {Failed("twelvedata: transient", retry_after=7)}


def test_waiters_give_up_at_their_deadline(server):
    owner = make_engine(shared_store(server))
    impatient = make_engine(shared_store(server), wait_timeout=0.3)
    fetch = CountingFetch(block=True)

    with ThreadPoolExecutor(2) as pool:
        filling = pool.submit(owner.get_or_fetch, RELIANCE, fetch)
        time.sleep(0.1)
        started = time.monotonic()
        outcome = impatient.get_or_fetch(RELIANCE, fetch)
        waited = time.monotonic() - started
        fetch.release.set()
        filling.result(timeout=5)

    assert isinstance(outcome, Failed) and "timed out" in outcome.reason
    assert waited < 1.5


# ---- statistics and store trouble ---------------------------------------------------------


def test_statistics_are_flushed_to_one_hash_that_every_process_reads(server):
    first, second = make_engine(shared_store(server)), make_engine(shared_store(server))
    first.get_or_fetch(RELIANCE, entry)
    second.get_or_fetch(RELIANCE, entry)
    time.sleep(0.7)  # both flushers run at least every 0.5 s

    assert counts(first) == counts(second)
    assert counts(first)[HITS] == 1 and counts(first)[MISSES] == 1
    raw = fakeredis.FakeRedis(server=server).hgetall(STATS_KEY)
    assert raw[b"cache:hits"] == b"1"


def test_unflushable_statistics_are_kept_for_later():
    stats = Stats(dead_redis().client)
    stats.incr(HITS, 3)

    assert stats.flush() is False
    pending, _, shared = stats.snapshot()
    assert pending[HITS] == 3 and shared is False


def test_unreachable_store_falls_back_to_the_in_process_store():
    engine = make_engine(dead_redis(), fallback=embedded_store(100))
    fetch = CountingFetch()

    first = engine.get_or_fetch(RELIANCE, fetch)
    second = engine.get_or_fetch(RELIANCE, fetch)

    assert first.cache == "miss" and second.cache == "hit"
    assert fetch.calls == 1
