"""Get-or-fetch for the whole fleet: fresh hits, stale-while-revalidate, single-flight fills.

Every data type goes through ``get_or_fetch_many`` (a single quote is a batch of one):

* fresh entry → served (``hit``); negative entry → ``Missing`` (a cached verdict);
* stale entry (past its TTL, inside its stale window) → served at once (``stale``) while one
  background refresh runs fleet-wide, under the same fill lock;
* no entry → one caller per process (local flight) competes for the fleet-wide fill lock; the
  winner fetches, writes, releases and publishes; everyone else waits for that push
  (``coalesced``), bounded by the holder's lock time and ``wait_timeout``. A lock whose owner
  died expires and is taken over. A failed fill (``Failed``) is recorded briefly, so waiters
  and newcomers share the failure instead of stampeding the providers.

The engine knows kinds, subjects and outcomes, not what they mean: the service maps ``Missing``
and ``Failed`` to its own errors and decides what stands in for a failure.

If the shared store stops answering, the same code runs on the in-process fallback store.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from quantpulse.cache.ahead import RefreshAhead
from quantpulse.cache.coalesce import LocalFlights
from quantpulse.cache.entry import (
    COALESCED,
    FILLS_CHANNEL,
    HIT,
    MISS,
    STALE,
    CacheKey,
    Entry,
    Failed,
    Kind,
    Missing,
    Served,
    decode_entry,
    encode_entry,
)
from quantpulse.cache.locks import FillLocks, Lease
from quantpulse.cache.notify import FillNotifier
from quantpulse.infra import counters
from quantpulse.infra.counters import Stats
from quantpulse.infra.namespace import NAMESPACE
from quantpulse.infra.store import Store, Stores, retry_idempotent

log = logging.getLogger(__name__)

T = TypeVar("T")
# The per-key records besides entries (named in entry.py); statistics, budgets and health are not.
_VERDICT_RECORDS = ("missing", "fail")
_DELETE_CHUNK = 1000
_EVICTION_TRIES = 8
# Seconds between re-reads of the store while waiting for a fill: pushes wake waiters at once;
# the re-read is the safety net for a push lost on a connection that died without a word, and
# is frequent while the listener is (re)subscribing, when pushes are sure to be missed.
SUBSCRIBED_POLL = 0.5
UNSUBSCRIBED_POLL = 0.05

Fetched = Entry[Any] | Missing | Failed
Outcome = Served[Any] | Missing | Failed
FetchMany = Callable[[list[CacheKey]], dict[CacheKey, Fetched]]


@dataclass(frozen=True)
class _View:
    """What the store holds for one key right now."""

    entry: Entry[Any] | None
    missing: Missing | None
    failure: Failed | None


class CacheEngine:
    """The one get-or-fetch every data type uses."""

    def __init__(
        self,
        kinds: Sequence[Kind],
        stores: Stores,
        stats: Stats,
        locks: FillLocks,
        refresher: Executor,
        ahead: RefreshAhead,
        *,
        negative_ttl: int,
        failure_ttl: int,
        wait_timeout: float,
    ) -> None:
        self._kind_names = tuple(kind.name for kind in kinds)
        self._evictable = _prefixes((*self._kind_names, *_VERDICT_RECORDS))
        self._stores = stores
        self._stats = stats
        self._locks = locks
        self._refresher = refresher
        self._ahead = ahead
        self._negative_ttl = negative_ttl
        self._failure_ttl = failure_ttl
        self._wait_timeout = wait_timeout
        self._notifier = FillNotifier(stores.primary.subscriber, FILLS_CHANNEL, stores.trouble.record)
        self._flights = LocalFlights()

    @property
    def backend(self) -> str:
        return self._stores.backend

    def get_or_fetch(self, key: CacheKey, fetch: Callable[[], Fetched]) -> Outcome:
        """One key (a batch of one)."""
        return self.get_or_fetch_many([key], lambda keys: {key: fetch()})[key]

    def get_or_fetch_many(
        self, keys: Sequence[CacheKey], fetch_many: FetchMany, *, counted: bool = True
    ) -> dict[CacheKey, Outcome]:
        """``counted=False`` for the service's own reads (live streams): not hits, stale serves or
        hot reads in the statistics; misses, refreshes and waits are fill work and still count."""
        now = time.time()
        results: dict[CacheKey, Outcome] = {}
        store, views = self._read_anywhere(keys)
        stale: dict[CacheKey, float] = {}
        cold: list[CacheKey] = []
        for key, view in views.items():
            if view.entry is not None and key.kind.is_fresh(view.entry, now):
                results[key] = Served(view.entry, HIT)
            elif view.entry is not None and key.kind.is_servable(view.entry, now):
                # A real copy beats a verdict or a failure: refreshes never turn it into a 404.
                results[key] = Served(view.entry, STALE)
                if view.failure is None and view.missing is None:  # a failed refresh waits a while
                    stale[key] = view.entry.fetched_at
            elif view.missing is not None:
                results[key] = view.missing
            elif view.failure is not None:
                results[key] = view.failure  # a fill failed seconds ago: share it, do not stampede
            else:
                cold.append(key)
        if counted:
            self._count_reads(results)
            self._refresh_hot(store, results, fetch_many, now)
        if stale:
            self._revalidate(store, stale, fetch_many)
        leading, waiting = self._flights.claim(cold)
        if leading:
            results.update(self._fill(store, leading, fetch_many))
        results.update(self._wait_in_process(waiting))
        return results

    def _count_reads(self, results: dict[CacheKey, Outcome]) -> None:
        """Hits are answers the cache held: fresh entries and cached verdicts, not shared failures."""
        served_stale = sum(isinstance(o, Served) and o.cache == STALE for o in results.values())
        shared_failures = sum(isinstance(outcome, Failed) for outcome in results.values())
        self._stats.incr(counters.HITS, len(results) - served_stale - shared_failures)
        self._stats.incr(counters.STALE_SERVED, served_stale)

    def near_hit(self, key: CacheKey, entry: Entry[Any], fetch_many: FetchMany) -> None:
        """A fresh hit the caller served from its own memory: counted like any hit, and the key
        refreshed ahead when it is hot and close to going stale."""
        self._stats.incr(counters.HITS)
        if self._ahead.due(key, entry, time.time()):
            self._revalidate(self._stores.active(), {key: entry.fetched_at}, fetch_many)

    def near_stale(self) -> None:
        """A stale copy the caller served from its own memory: counted as stale. The read that
        gave the caller that copy started its refresh."""
        self._stats.incr(counters.STALE_SERVED)

    def on_fill(self, observer: Callable[[list[str]], object]) -> None:
        """``observer`` hears the store keys of every fill written anywhere in the fleet."""
        self._notifier.observe(observer)

    def fills_heard(self) -> bool:
        """Whether fills written by other processes reach ``on_fill`` observers right now."""
        return self._notifier.listen()

    def peek(self, key: CacheKey) -> Entry[Any] | None:
        """The cached entry, fresh or stale, without fetching or counting anything."""
        return self._read_anywhere([key])[1][key].entry

    def delete(self, keys: Sequence[str]) -> int:
        """Drop these records everywhere; raises ``redis.RedisError`` (noted) if the store refused."""
        store = self._stores.active()
        try:
            return int(store.client.delete(*keys))
        except redis.RedisError as error:
            self._stores.note(store, error)
            raise

    def entry_count(self) -> int | None:
        """Data entries in the store (a SCAN: for the status page, not the hot path); None when
        the store cannot say right now."""
        store = self._stores.active()
        try:
            return len(_scan(store.client, _prefixes(self._kind_names)))
        except redis.RedisError as error:
            self._stores.note(store, error)
            return None

    def clear(self) -> int:
        """Delete every entry, negative entry, failure record and fill lock; returns how many.

        Statistics, budgets and provider health live in the same namespace but are not cache
        records, so they stay (an operator's flush must not reset the fleet's credit count).
        """
        client = self._stores.active().client
        names = _scan(client, _prefixes((*self._kind_names, *_VERDICT_RECORDS, "lock")))
        chunks = (names[i : i + _DELETE_CHUNK] for i in range(0, len(names), _DELETE_CHUNK))
        return sum(int(client.delete(*chunk)) for chunk in chunks)

    # ---- reading ------------------------------------------------------------------------

    def _read_anywhere(self, keys: Sequence[CacheKey]) -> tuple[Store, dict[CacheKey, _View]]:
        store = self._stores.active()
        try:
            return store, self._read(store, keys)
        except redis.RedisError as error:
            store = self._stores.failed(store, error)
            return store, self._read(store, keys)

    @staticmethod
    def _read(store: Store, keys: Sequence[CacheKey]) -> dict[CacheKey, _View]:
        """One MGET for each key's entry, negative entry and recent failure record."""
        names = [name for key in keys for name in (key.redis_key, key.missing_key, key.failure_key)]
        blobs = iter(retry_idempotent(lambda: store.client.mget(names)) if names else [])
        return {
            key: _View(
                decode_entry(next(blobs), key), _decode_missing(next(blobs)), _decode_failure(next(blobs))
            )
            for key in keys
        }

    # ---- filling ------------------------------------------------------------------------

    def _fill(self, store: Store, keys: list[CacheKey], fetch_many: FetchMany) -> dict[CacheKey, Outcome]:
        """Fill keys this thread leads in its process: lead where the fleet lock is free, else wait."""
        results: dict[CacheKey, Outcome] = {}
        seen_held: set[CacheKey] = set()
        deadline = time.monotonic() + self._wait_timeout
        pending = list(keys)
        try:
            while pending:
                try:
                    results.update(self._fill_round(store, pending, fetch_many, seen_held, deadline))
                except redis.RedisError as error:
                    store = self._stores.failed(store, error)
                pending = [key for key in pending if key not in results]
        finally:
            for key in keys:
                self._flights.finish(key, results.get(key) or _lost(key))
        return results

    def _fill_round(
        self,
        store: Store,
        pending: list[CacheKey],
        fetch_many: FetchMany,
        seen_held: set[CacheKey],
        deadline: float,
    ) -> dict[CacheKey, Outcome]:
        by_lock = {key.lock_key: key for key in pending}
        taken, held = self._locks.acquire(store.client, by_lock)
        results: dict[CacheKey, Outcome] = {}
        if taken:
            leases = {by_lock[lease.key]: lease for lease in taken}
            self._stats.incr(counters.LOCK_TAKEOVERS, sum(key in seen_held for key in leases))
            results.update(self._lead(store, leases, fetch_many))
        if held:
            waiting = [by_lock[name] for name in held]
            seen_held.update(waiting)
            results.update(self._await_fills(store, waiting, max(held.values()), deadline))
        return results

    def _lead(
        self,
        store: Store,
        leases: dict[CacheKey, Lease],
        fetch_many: FetchMany,
        replacing: dict[CacheKey, float] | None = None,
    ) -> dict[CacheKey, Outcome]:
        """Holding the locks: re-check, fetch what is still needed, write, release, publish.

        Without ``replacing`` this is a cold fill, and whatever another worker settled meanwhile
        (an entry, a verdict, a failure) is taken as the answer. With it, this is a refresh of
        stale copies fetched at the given times: a newer copy, a verdict or a recent failure
        means there is nothing to do now.
        """
        try:
            now = time.time()
            views = self._read(store, list(leases))
            if replacing is None:
                results = _settled(views, now)
                to_fetch = [key for key in leases if key not in results]
            else:
                results = {}
                to_fetch = [key for key in leases if not _refreshed(key, views[key], replacing[key], now)]
            self._stats.incr(counters.MISSES if replacing is None else counters.REFRESHES, len(to_fetch))
            outcomes = fetch_many(to_fetch) if to_fetch else {}
            if replacing is not None:
                outcomes = {key: _as_failed_refresh(outcome) for key, outcome in outcomes.items()}
            self._write(store, outcomes)
            results.update({key: _served(outcome, MISS) for key, outcome in outcomes.items()})
            return results
        finally:
            self._release(store, leases, time.time())

    def _write(self, store: Store, outcomes: dict[CacheKey, Fetched]) -> None:
        """Entries, verdicts and failure records; best effort, the answer is served regardless."""
        if not outcomes:
            return

        def write() -> None:  # built afresh for a retry: a failed pipeline has lost its commands
            pipe = store.client.pipeline(transaction=False)
            for key, outcome in outcomes.items():
                if isinstance(outcome, Entry):
                    pipe.set(key.redis_key, encode_entry(outcome), ex=key.kind.keep_for(outcome, time.time()))
                    pipe.delete(key.failure_key)
                elif isinstance(outcome, Missing):
                    pipe.set(key.missing_key, json.dumps({"message": outcome.message}), ex=self._negative_ttl)
                elif isinstance(outcome, Failed) and self._failure_ttl:
                    pipe.set(key.failure_key, _encode_failure(outcome), ex=self._failure_ttl)
            pipe.execute()

        try:
            self._make_room(store, len(outcomes), self._evictable)
            retry_idempotent(write)  # SET and DEL may safely run twice
        except redis.RedisError as error:
            self._stores.note(store, error)
            log.debug("could not write %d cache entries: %s", len(outcomes), error)

    def _release(self, store: Store, leases: dict[CacheKey, Lease], written_at: float) -> None:
        try:
            self._locks.release(leases.values())
        except redis.RedisError as error:
            self._stores.trouble.record(error)
            log.debug("could not release fill locks (they expire by themselves): %s", error)
        try:
            self._notifier.publish(store.client, [key.redis_key for key in leases], written_at)
        except redis.RedisError as error:
            self._stores.trouble.record(error)

    @staticmethod
    def _make_room(store: Store, incoming: int, evictable: tuple[bytes, ...]) -> None:
        """Keep the embedded store within ``CACHE_MAX_SIZE`` (Redis uses its maxmemory policy).

        Victims are random cache records only: statistics, budgets, health and fill locks stay.
        """
        if not store.max_entries:
            return
        excess = store.client.dbsize() + incoming - store.max_entries
        for _ in range(max(0, excess)):
            for _attempt in range(_EVICTION_TRIES):
                victim = store.client.randomkey()
                if victim is None:
                    return
                if victim.startswith(evictable):
                    store.client.delete(victim)
                    break

    def _await_fills(
        self, store: Store, keys: list[CacheKey], holder_left: float, deadline: float
    ) -> dict[CacheKey, Outcome]:
        """Wait until a fill lands (woken by push), the holder lets go, or the deadline.

        A push can be missed (the listener is resubscribing after an outage, or its connection
        died silently), so the store is also re-read now and then: never sleep to the lock's end.
        A holder can also finish without settling a key (its write was refused): once its lock is
        gone, the keys left unsettled go back to ``_fill`` to compete for the lock again.
        """
        until = min(time.monotonic() + holder_left + 0.05, deadline)
        with self._notifier.waiting_for([key.redis_key for key in keys]) as waiter:
            settled = _settled(self._read(store, keys))
            while len(settled) < len(keys) and (left := until - time.monotonic()) > 0:
                poll = SUBSCRIBED_POLL if self._notifier.subscribed else UNSUBSCRIBED_POLL
                waiter.event.wait(min(left, poll))
                waiter.event.clear()
                rest = [key for key in keys if key not in settled]
                settled.update(_settled(self._read(store, rest)))
                if waiter.written_at is not None and len(settled) == len(keys):
                    self._stats.observe(counters.FILL_WAKEUP, max(0.0, time.time() - waiter.written_at))
                if self._any_lock_released(store, [key for key in rest if key not in settled]):
                    break
        if time.monotonic() >= deadline:
            for key in keys:
                settled.setdefault(key, _timed_out(key))
        self._stats.incr(counters.COALESCED_WAITS, len(settled))
        return settled

    @staticmethod
    def _any_lock_released(store: Store, keys: list[CacheKey]) -> bool:
        if not keys:
            return False
        held = retry_idempotent(lambda: store.client.exists(*(key.lock_key for key in keys)))
        return int(held) < len(keys)

    def _wait_in_process(self, flights: dict[CacheKey, Any]) -> dict[CacheKey, Outcome]:
        results: dict[CacheKey, Outcome] = {}
        for key, flight in flights.items():
            self._stats.incr(counters.COALESCED_WAITS)
            try:
                outcome = flight.result(timeout=self._wait_timeout)
            except FutureTimeout:
                outcome = _timed_out(key)
            results[key] = Served(outcome.entry, COALESCED) if isinstance(outcome, Served) else outcome
        return results

    # ---- stale-while-revalidate ---------------------------------------------------------

    def _refresh_hot(
        self, store: Store, results: dict[CacheKey, Outcome], fetch_many: FetchMany, now: float
    ) -> None:
        """Refresh-ahead for fresh hits on hot keys that are close to going stale."""
        due = {
            key: outcome.entry.fetched_at
            for key, outcome in results.items()
            if isinstance(outcome, Served)
            and outcome.cache == HIT
            and self._ahead.due(key, outcome.entry, now)
        }
        if due:
            self._revalidate(store, due, fetch_many)

    def _revalidate(self, store: Store, replacing: dict[CacheKey, float], fetch_many: FetchMany) -> None:
        """Start one background refresh for the keys whose fill lock is free fleet-wide."""
        by_lock = {key.lock_key: key for key in replacing}
        try:
            taken, _ = self._locks.acquire(store.client, by_lock)
        except redis.RedisError as error:
            self._stores.note(store, error)
            return
        if taken:
            leases = {by_lock[lease.key]: lease for lease in taken}
            # In the reader's context: what the refresh spends upstream is charged to that client.
            context = contextvars.copy_context()
            self._refresher.submit(context.run, self._refresh, store, leases, replacing, fetch_many)

    def _refresh(
        self,
        store: Store,
        leases: dict[CacheKey, Lease],
        replacing: dict[CacheKey, float],
        fetch_many: FetchMany,
    ) -> None:
        try:
            self._lead(store, leases, fetch_many, replacing)
        except Exception:  # a background task has nobody to report to but the log
            log.exception("background refresh of %d keys failed", len(leases))


def _prefixes(records: Sequence[str]) -> tuple[bytes, ...]:
    return tuple(f"{NAMESPACE}:{record}:".encode() for record in records)


def _scan(client: redis.Redis, prefixes: tuple[bytes, ...]) -> list[bytes]:
    """Names in the namespace that start with one of ``prefixes`` (SCAN, never KEYS)."""
    return [
        name for name in client.scan_iter(match=f"{NAMESPACE}:*", count=1000) if name.startswith(prefixes)
    ]


def _settled(views: dict[CacheKey, _View], now: float | None = None) -> dict[CacheKey, Outcome]:
    """What another worker's fill left: an entry (fresh at ``now``, if given), a verdict or a failure."""
    settled: dict[CacheKey, Outcome] = {}
    for key, view in views.items():
        if view.entry is not None and (now is None or key.kind.is_fresh(view.entry, now)):
            settled[key] = Served(view.entry, COALESCED)
        elif view.missing is not None:
            settled[key] = view.missing
        elif view.failure is not None:
            settled[key] = view.failure
    return settled


def _refreshed(key: CacheKey, view: _View, replacing: float, now: float) -> bool:
    """Whether a refresh of the copy fetched at ``replacing`` has nothing to do right now."""
    if view.missing is not None or view.failure is not None:
        return True
    return view.entry is not None and key.kind.is_fresh(view.entry, now) and view.entry.fetched_at > replacing


def _as_failed_refresh(outcome: Fetched) -> Fetched:
    """A refresh that gets "not found" failed: the stale copy stays (docs/api.md, "Providers,
    fallback and demo data").

    A known instrument that suddenly "does not exist" is far more often a provider glitch (such
    as Finnhub's all-zero quote) than a delisting, so it is recorded as a brief failure, not a
    negative entry.
    """
    if isinstance(outcome, Missing):
        return Failed(f"refresh got not-found: {outcome.message}")
    return outcome


def _served(outcome: Fetched, cache: str) -> Outcome:
    return Served(outcome, cache) if isinstance(outcome, Entry) else outcome


def _lost(key: CacheKey) -> Failed:
    return Failed(f"the fetch for {key.subject} did not complete")


def _timed_out(key: CacheKey) -> Failed:
    return Failed(f"timed out waiting for another worker to fetch {key.subject}")


def _encode_failure(failure: Failed) -> str:
    return json.dumps({"reason": failure.reason, "retry_after": failure.retry_after})


def _decode_failure(blob: bytes | None) -> Failed | None:
    if blob is None:
        return None
    try:
        data = json.loads(blob)
        return Failed(str(data["reason"]), retry_after=_whole_or_none(data.get("retry_after")))
    except (ValueError, KeyError, TypeError):
        return None


def _decode_missing(blob: bytes | None) -> Missing | None:
    """Any negative entry counts, whatever its body: it only exists to say "not found"."""
    if blob is None:
        return None
    try:
        return Missing(str(json.loads(blob)["message"]))
    except (ValueError, KeyError, TypeError):
        return Missing("not found")


def _whole_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
