"""Faults a review reproduced on the cache engine, each pinned by a test that failed before the fix.

fakeredis stands in for Redis (``server.connected = False`` is an outage); two engines on one
fake server stand in for two processes. The same claims are proven against a real redis-server
and gunicorn in ``tests/e2e/test_redis_plans.py``.
"""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest
import redis

from quantpulse.cache.entry import CacheKey, Entry, Failed, Missing, encode_entry
from quantpulse.cache.locks import FillLocks
from quantpulse.cache.notify import _decode
from quantpulse.errors import ProviderError
from quantpulse.infra.counters import REFRESHES, Stats
from quantpulse.infra.store import (
    BACKEND_REDIS,
    CONNECTION,
    OOM,
    REFUSED,
    TIMEOUT,
    PoolExhausted,
    RedisTrouble,
    Store,
    Stores,
    embedded_store,
    error_kind,
)
from quantpulse.upstream.budget import CreditBudget, Window
from quantpulse.upstream.guard import UpstreamGuard
from quantpulse.upstream.health import ProviderHealth
from tests.unit.test_cache_engine import (
    RELIANCE,
    CountingFetch,
    ManualExecutor,
    counts,
    dead_redis,
    entry,
    make_engine,
    shared_store,
    wait_behind_a_blocked_fill,
)


def stale_entry() -> Entry:
    return entry(age=120)  # past the 60 s TTL, inside the 600 s stale window


# ---- a refresh never turns a real entry into a 404, and failures are not retried per request ----


def test_a_refresh_that_gets_not_found_keeps_the_stale_copy(store):
    refresher = ManualExecutor()
    engine = make_engine(store, refresher=refresher)
    store.client.set(RELIANCE.redis_key, encode_entry(stale_entry()))

    first = engine.get_or_fetch(RELIANCE, CountingFetch(lambda: Missing("No listing found for RELIANCE")))
    refresher.run_all()
    after = engine.get_or_fetch(RELIANCE, lambda: pytest.fail("a failed refresh is not retried at once"))

    assert first.cache == after.cache == "stale"
    assert after.entry == first.entry
    assert not store.client.exists(RELIANCE.missing_key), "no negative entry for a known instrument"
    assert store.client.exists(RELIANCE.failure_key), "the failed refresh is shared for a short time"


def test_a_failing_refresh_is_tried_once_not_on_every_stale_read(store):
    refresher = ManualExecutor()
    engine = make_engine(store, refresher=refresher)
    store.client.set(RELIANCE.redis_key, encode_entry(stale_entry()))
    fetch = CountingFetch(lambda: Failed("twelvedata: transient"))

    answers = []
    for _ in range(20):
        answers.append(engine.get_or_fetch(RELIANCE, fetch))
        refresher.run_all()

    assert fetch.calls == 1
    assert {answer.cache for answer in answers} == {"stale"}
    engine._stats.flush()
    assert counts(engine)[REFRESHES] == 1


def test_a_real_entry_is_served_over_a_negative_entry(store):
    engine = make_engine(store)
    store.client.set(RELIANCE.redis_key, encode_entry(entry()))
    store.client.set(RELIANCE.missing_key, json.dumps({"message": "not found"}))

    served = engine.get_or_fetch(RELIANCE, lambda: pytest.fail("must not fetch"))

    assert served.cache == "hit"


@pytest.mark.parametrize(
    "settled",
    [
        (lambda key: (key.missing_key, json.dumps({"message": "gone"})), Missing("gone")),
        (lambda key: (key.failure_key, json.dumps({"reason": "down", "retry_after": 3})), Failed("down", 3)),
    ],
    ids=["verdict", "failure"],
)
def test_the_lock_winner_takes_what_another_worker_settled_instead_of_fetching(store, settled):
    """The race: nothing was cached when this worker read, another settled the key before it
    took the lock. ``_fill`` is where the winner re-checks."""
    record, expected = settled
    engine = make_engine(store)
    store.client.set(*record(RELIANCE))

    results = engine._fill(store, [RELIANCE], lambda keys: pytest.fail("must not fetch"))

    assert results[RELIANCE] == expected


# ---- corrupt entries are misses, never 500s ----------------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [
        lambda good: {**good, "value": {**good["value"], "market_cap": "n/a"}},  # InvalidOperation
        lambda good: {**good, "value": {**good["value"], "market_cap": "Infinity"}},
        lambda good: {**good, "value": {**good["value"], "market_cap": "NaN"}},
        lambda good: {**good, "value": {**good["value"], "market_cap": "1E+30"}},  # fails rounding
        lambda good: {**good, "value": ["not", "an", "object"]},  # AttributeError
        lambda good: {**good, "value": {**good["value"], "employees": "many"}},  # wrong type
        lambda good: {**good, "value": {**good["value"], "employees": True}},  # a bool is no count
        lambda good: {**good, "value": {**good["value"], "new_field_of_a_later_release": 1}},
        lambda good: {**good, "source": 42},
        lambda good: [good],
    ],
    ids=[
        "bad-decimal",
        "infinite",
        "nan",
        "huge",
        "list-value",
        "text-count",
        "bool-count",
        "unknown-field",
        "bad-source",
        "list",
    ],
)
def test_a_corrupt_entry_is_a_miss_and_is_overwritten(store, blob):
    engine = make_engine(store)
    good = json.loads(encode_entry(entry()))
    store.client.set(RELIANCE.redis_key, json.dumps(blob(good)))
    fetch = CountingFetch()

    served = engine.get_or_fetch(RELIANCE, fetch)

    assert served.cache == "miss" and fetch.calls == 1
    assert json.loads(store.client.get(RELIANCE.redis_key)) == json.loads(encode_entry(served.entry))


# ---- locks are leases ---------------------------------------------------------------------------


def test_the_same_lock_key_on_two_stores_is_two_leases(server):
    locks = FillLocks(5, max_hold=30)
    shared, fallback = shared_store(server), embedded_store(10)
    (on_shared,), _ = locks.acquire(shared.client, ["qp:v1:lock:x"])
    (on_fallback,), _ = locks.acquire(fallback.client, ["qp:v1:lock:x"])

    locks.release([on_fallback])

    assert shared.client.get("qp:v1:lock:x") == on_shared.token.encode(), "the other lease is untouched"
    assert fallback.client.get("qp:v1:lock:x") is None
    assert locks._due() == [on_shared], "and still kept alive"


def test_a_hung_fill_stops_being_extended_so_a_waiter_can_take_over(store):
    locks = FillLocks(0.3, max_hold=0.4)
    locks.acquire(store.client, ["qp:v1:lock:hung"])

    time.sleep(1.2)

    assert store.client.get("qp:v1:lock:hung") is None, "expired once the keeper let it go"


class FlakyPipelines(fakeredis.FakeRedis):
    """A client whose next pipeline fails once: before it runs (``lose="request"``) or after it
    ran on the server (``lose="reply"``), as a connection that dies mid-command would."""

    def __init__(self, *args, lose: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lose: str | None = lose

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def flaky_execute(raise_on_error=True):
            lose, self.lose = self.lose, None
            if lose == "request":
                raise redis.ConnectionError("Connection reset by peer")
            result = execute(raise_on_error)
            if lose == "reply":
                raise redis.ConnectionError("Connection reset by peer")
            return result

        pipe.execute = flaky_execute
        return pipe


class RefusesWrites(fakeredis.FakeRedis):
    """Lock scripts run, but a pipeline that writes entries is refused as under ``noeviction``."""

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def refusing_execute(raise_on_error=True):
            if any(command[0][0] == "SET" for command in pipe.command_stack):
                pipe.reset()
                raise redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
            return execute(raise_on_error)

        pipe.execute = refusing_execute
        return pipe


def test_a_retried_acquire_that_finds_its_own_token_holds_the_lock(server):
    """The first attempt ran on the server but its reply was lost with the connection."""
    locks = FillLocks(5, max_hold=30)
    taken, held = locks.acquire(FlakyPipelines(server=server, lose="reply"), ["qp:v1:lock:y"])

    assert [lease.key for lease in taken] == ["qp:v1:lock:y"] and held == {}


def test_a_write_whose_connection_broke_is_sent_again_in_full(server):
    engine = make_engine(Store(FlakyPipelines(server=server, lose="request"), BACKEND_REDIS))

    engine.get_or_fetch(RELIANCE, entry)

    assert shared_store(server).client.get(RELIANCE.redis_key) is not None


def test_waiters_compete_again_when_the_holder_could_not_write(server):
    """The holder's write was refused (OOM): waiters must not sleep until its 30 s lock lapses."""
    owner = make_engine(Store(RefusesWrites(server=server), BACKEND_REDIS), lock_ttl=30)
    waiter = make_engine(shared_store(server))
    fetch = CountingFetch(block=True)

    with ThreadPoolExecutor(2) as pool:
        filling = pool.submit(owner.get_or_fetch, RELIANCE, fetch)
        time.sleep(0.1)
        started = time.monotonic()
        waiting = pool.submit(waiter.get_or_fetch, RELIANCE, entry)
        time.sleep(0.2)
        fetch.release.set()
        result = waiting.result(timeout=5)
        filling.result(timeout=5)

    assert time.monotonic() - started < 2
    assert result.cache == "miss", "it fetched for itself once the holder let go"


# ---- recovery and waiting -----------------------------------------------------------------------


def test_a_worker_on_the_fallback_returns_to_the_shared_store_as_soon_as_it_answers(server):
    shared = shared_store(server)
    stores = Stores(shared, fallback=embedded_store(100), probe_interval=0.05)

    server.connected = False
    with pytest.raises(redis.ConnectionError) as outage:
        shared.client.ping()
    assert stores.failed(shared, outage.value) is not shared
    assert stores.active() is not shared, "down: work goes to the fallback"
    server.connected = True
    time.sleep(0.06)

    assert stores.active() is shared, "one probe later, back on the shared store"
    assert stores.shared_down is False


def test_fills_after_an_outage_coalesce_on_the_shared_store_again(server):
    """Two "processes" that both saw the outage make one fetch once Redis answers again."""
    engines = [make_engine(shared_store(server), fallback=embedded_store(100)) for _ in range(2)]
    for engine in engines:
        engine._stores._probe_interval = 0.05
    server.connected = False
    for engine in engines:
        engine.get_or_fetch(CacheKey(RELIANCE.kind, RELIANCE.subject, "outage"), entry)
    server.connected = True
    deadline = time.monotonic() + 5  # each engine's next probe finds Redis back (not a fixed sleep)
    while any(e._stores.shared_down for e in engines) and time.monotonic() < deadline:
        for engine in engines:
            engine._stores.active()
        time.sleep(0.01)
    assert not any(e._stores.shared_down for e in engines)
    fetch = CountingFetch(block=True)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(engines[i % 2].get_or_fetch, RELIANCE, fetch) for i in range(8)]
        time.sleep(0.3)
        fetch.release.set()
        results = [future.result(timeout=5) for future in futures]

    assert fetch.calls == 1
    assert sorted(result.cache for result in results) == ["coalesced"] * 7 + ["miss"]


def test_waiters_poll_while_the_fill_listener_cannot_subscribe(server):
    """Right after Redis comes back the listener may not be subscribed yet: a waiter must not
    sleep until the holder's 30 s lock lapses."""
    unsubscribed = Store(fakeredis.FakeRedis(server=server), BACKEND_REDIS, pubsub=dead_redis().client)
    owner, waiter = make_engine(shared_store(server), lock_ttl=30), make_engine(unsubscribed)

    result, waited = wait_behind_a_blocked_fill(owner, waiter)

    assert result.cache == "coalesced"
    assert waited < 2


# ---- errors: kinds, episodes, and what they switch ----------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis.ConnectionError("max number of clients reached"), REFUSED),
        (redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), OOM),
        (redis.TimeoutError("Timeout reading from socket"), TIMEOUT),
        (PoolExhausted("no pooled Redis connection came free in time"), TIMEOUT),
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."), CONNECTION),
    ],
)
def test_redis_errors_are_sorted_into_the_kinds_operators_see(error, kind):
    assert error_kind(error) == kind


@pytest.mark.parametrize(
    "error",
    [
        PoolExhausted("busy"),
        redis.OutOfMemoryError("OOM"),
        redis.ConnectionError("max number of clients reached"),
    ],
    ids=["full-pool", "oom", "maxclients"],
)
def test_a_full_pool_or_a_refusal_does_not_switch_the_worker_to_its_fallback(server, error):
    shared = shared_store(server)
    stores = Stores(shared, fallback=embedded_store(10))

    elsewhere = stores.failed(shared, error)

    assert elsewhere is not shared, "this request carries on without the shared store"
    assert stores.shared_down is False and stores.active() is shared


def test_errors_are_counted_each_time_but_logged_once_per_episode(caplog):
    trouble = RedisTrouble()
    with caplog.at_level("WARNING"):
        for _ in range(50):
            trouble.record(redis.OutOfMemoryError("OOM command not allowed"))

    assert trouble.take() == {OOM: 50}
    assert len([r for r in caplog.records if "Redis trouble" in r.message]) == 1
    assert trouble.take() == {}


# ---- budgets never go per process ---------------------------------------------------------------


def make_guard(stores: Stores) -> UpstreamGuard:
    budget = CreditBudget({"twelvedata": (Window("minute", 60, 8),)})
    health = ProviderHealth({"twelvedata": "fp", "finnhub": "fp"})
    return UpstreamGuard(stores, stats=make_engine(stores.primary)._stats, budget=budget, health=health)


def test_budgeted_providers_fail_closed_while_the_shared_budget_is_unreachable():
    stores = Stores(dead_redis(), fallback=embedded_store(100))
    guard = make_guard(stores)

    refusals = []
    for _ in range(20):
        with pytest.raises(ProviderError, match="budget is unreachable") as refused:
            guard.admit("twelvedata", "quote", "NSE", 1)
        refusals.append(refused.value)

    assert {refusal.scope for refusal in refusals} == {"budget"}
    assert guard.admit("finnhub", "quote", "NSE", 1) == 1, "an unbudgeted provider is still called"
    assert guard.status("twelvedata")["budget"] == {"minute_left": None, "day_left": None}


def test_a_budget_that_refuses_its_write_fails_closed(server):
    class OutOfMemory(fakeredis.FakeRedis):
        def eval(self, *args, **kwargs):
            raise redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    stores = Stores(Store(OutOfMemory(server=server), "redis"), fallback=embedded_store(100))
    guard = make_guard(stores)

    with pytest.raises(ProviderError, match="budget is unreachable"):
        guard.admit("twelvedata", "quote", "NSE", 1)
    assert stores.shared_down is False, "reads still work: only the charge was refused"


def test_a_lost_shared_store_never_multiplies_the_plan_by_the_processes():
    """Eight "processes" with Redis down were once granted 8 credits each."""
    guards = [make_guard(Stores(dead_redis(), fallback=embedded_store(100))) for _ in range(8)]

    granted = 0
    for guard in guards:
        for _ in range(8):
            with contextlib.suppress(ProviderError):
                granted += guard.admit("twelvedata", "quote", "NSE", 1)

    assert granted == 0


def test_redis_errors_reach_the_shared_statistics(store):
    trouble = RedisTrouble()
    stats = Stats(store.client, trouble)
    trouble.record(redis.OutOfMemoryError("OOM command not allowed"))

    stats.flush()

    assert store.client.hget("qp:v1:stats", "redis:errors:oom") == b"1"


def test_pushes_wake_waiters_of_this_release_and_the_previous_one():
    """The previous release reads a push as a plain list of keys: it must still find its keys."""
    pushed = json.dumps(["qp:v1:quote:NSE:TCS", "@1795000000.25"]).encode()
    previous_release_reads = [key for key in json.loads(pushed)]

    assert "qp:v1:quote:NSE:TCS" in previous_release_reads
    assert _decode(pushed) == (["qp:v1:quote:NSE:TCS"], 1795000000.25)
    assert _decode(json.dumps(["qp:v1:quote:NSE:TCS"]).encode()) == (["qp:v1:quote:NSE:TCS"], None)
