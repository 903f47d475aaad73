"""Get-or-fetch over the store: per-type TTLs, JSON entries, in-process coalescing.

Every data type goes through ``get_or_fetch_many``: a single quote is a batch of one, so the
single and batch routes share one cache path. Entries are JSON with the value, where it came
from and when we fetched it, so ``redis-cli`` shows them and ``age_seconds`` tells the truth.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from quantpulse.cache import stats as counters
from quantpulse.cache.coalesce import LocalFlights
from quantpulse.cache.stats import Stats
from quantpulse.cache.store import NAMESPACE, Store
from quantpulse.errors import QuantPulseError, ServiceUnavailable
from quantpulse.models import decode, to_primitive
from quantpulse.symbols import Instrument

log = logging.getLogger(__name__)

T = TypeVar("T")

HIT = "hit"
MISS = "miss"
STALE = "stale"
COALESCED = "coalesced"


@dataclass(frozen=True)
class Kind:
    """A cached data type: its key prefix, model class and fresh TTL."""

    name: str
    model: type
    ttl: int


@dataclass(frozen=True)
class CacheKey:
    kind: Kind
    instrument: Instrument
    variant: str = ""

    @property
    def redis_key(self) -> str:
        tail = f":{self.variant}" if self.variant else ""
        return f"{NAMESPACE}:{self.kind.name}:{self.instrument.exchange}:{self.instrument.ticker}{tail}"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """What a fetch produced: the value, its source and our fetch time (epoch seconds)."""

    value: T
    source: str
    fetched_at: float
    fallback_reason: str | None = None


@dataclass(frozen=True)
class Served(Generic[T]):
    """An entry as served to one request, with the truth about how it was obtained."""

    entry: Entry[T]
    cache: str

    @property
    def value(self) -> T:
        return self.entry.value

    @property
    def fetched_at(self) -> datetime:
        return datetime.fromtimestamp(self.entry.fetched_at, UTC)

    def age_seconds(self, now: float | None = None) -> float:
        return round(max(0.0, (now or time.time()) - self.entry.fetched_at), 1)


Outcome = Entry[Any] | QuantPulseError
FetchMany = Callable[[list[CacheKey]], dict[CacheKey, Outcome]]


class CacheEngine:
    """The one get-or-fetch every data type uses."""

    def __init__(self, store: Store, stats: Stats, *, wait_timeout: float) -> None:
        self._store = store
        self._stats = stats
        self._wait_timeout = wait_timeout
        self._flights = LocalFlights()

    @property
    def backend(self) -> str:
        return self._store.backend

    def get_or_fetch(self, key: CacheKey, fetch: Callable[[], Entry[T]]) -> Served[T]:
        """One key; raises what the fetch raised (to every coalesced caller alike)."""
        outcome = self.get_or_fetch_many([key], lambda keys: {key: _capture(fetch)})[key]
        if isinstance(outcome, QuantPulseError):
            raise outcome
        return outcome

    def get_or_fetch_many(
        self, keys: Sequence[CacheKey], fetch_many: FetchMany
    ) -> dict[CacheKey, Served[Any] | QuantPulseError]:
        """Answer hits from one MGET, fetch the misses in one call, wait for keys in flight."""
        results: dict[CacheKey, Served[Any] | QuantPulseError] = {}
        misses = []
        for key, entry in zip(keys, self._read_many(keys), strict=True):
            if entry is not None and self._is_fresh(entry, key):
                results[key] = Served(entry, HIT)
            else:
                misses.append(key)
        self._stats.incr(counters.HITS, len(results))
        leading, waiting = self._flights.claim(misses)
        results.update(self._lead(leading, fetch_many))
        results.update(self._wait(waiting))
        return results

    def peek(self, key: CacheKey) -> Entry[Any] | None:
        """The cached entry, fresh or not, without fetching or counting anything."""
        return self._read_many([key])[0]

    def delete(self, keys: Sequence[CacheKey]) -> int:
        return int(self._store.client.delete(*[key.redis_key for key in keys]))

    def entry_count(self) -> int:
        return sum(1 for _ in self._store.client.scan_iter(match=f"{NAMESPACE}:*", count=1000))

    def _lead(
        self, keys: list[CacheKey], fetch_many: FetchMany
    ) -> dict[CacheKey, Served[Any] | QuantPulseError]:
        if not keys:
            return {}
        self._stats.incr(counters.MISSES, len(keys))
        outcomes: dict[CacheKey, Outcome] = {}
        try:
            outcomes = fetch_many(keys)
        finally:
            for key in keys:
                self._flights.finish(key, outcomes.get(key) or _lost(key))
        for key, outcome in outcomes.items():
            if isinstance(outcome, Entry):
                self._write(key, outcome)
        return {key: _served(outcome, MISS) for key, outcome in outcomes.items()}

    def _wait(self, flights: dict[CacheKey, Any]) -> dict[CacheKey, Served[Any] | QuantPulseError]:
        results: dict[CacheKey, Served[Any] | QuantPulseError] = {}
        for key, flight in flights.items():
            self._stats.incr(counters.COALESCED_WAITS)
            try:
                results[key] = _served(flight.result(timeout=self._wait_timeout), COALESCED)
            except FutureTimeout:
                results[key] = ServiceUnavailable("Timed out waiting for the upstream answer.")
            except QuantPulseError as error:
                results[key] = error
        return results

    def _read_many(self, keys: Sequence[CacheKey]) -> list[Entry[Any] | None]:
        blobs = self._store.client.mget([key.redis_key for key in keys]) if keys else []
        return [_decode_entry(blob, key) for blob, key in zip(blobs, keys, strict=True)]

    def _write(self, key: CacheKey, entry: Entry[Any]) -> None:
        client = self._store.client
        if self._store.max_entries and client.dbsize() >= self._store.max_entries:
            victim = client.randomkey()
            if victim is not None:
                client.delete(victim)
        client.set(key.redis_key, _encode_entry(entry), ex=key.kind.ttl)

    @staticmethod
    def _is_fresh(entry: Entry[Any], key: CacheKey) -> bool:
        return time.time() - entry.fetched_at < key.kind.ttl


def _served(outcome: Any, cache: str) -> Served[Any] | QuantPulseError:
    return outcome if isinstance(outcome, QuantPulseError) else Served(outcome, cache)


def _capture(fetch: Callable[[], Entry[T]]) -> Outcome:
    try:
        return fetch()
    except QuantPulseError as error:
        return error


def _lost(key: CacheKey) -> ServiceUnavailable:
    return ServiceUnavailable(f"The fetch for {key.instrument} did not complete.")


def _encode_entry(entry: Entry[Any]) -> str:
    return json.dumps(
        {
            "source": entry.source,
            "fetched_at": entry.fetched_at,
            "fallback_reason": entry.fallback_reason,
            "value": to_primitive(entry.value),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _decode_entry(blob: bytes | None, key: CacheKey) -> Entry[Any] | None:
    """A blob that does not decode is treated as a miss and overwritten, never served."""
    if blob is None:
        return None
    try:
        data = json.loads(blob)
        return Entry(
            value=decode(key.kind.model, data["value"]),
            source=data["source"],
            fetched_at=float(data["fetched_at"]),
            fallback_reason=data.get("fallback_reason"),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring undecodable cache entry %s", key.redis_key)
        return None
