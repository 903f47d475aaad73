"""Per-worker memory for hot answers: fresh entries for about a second, with their rendered JSON.

A front end polling hot symbols makes most reads of the same few keys; serving those from the
worker's own memory skips the Redis round trip, and keeping each entry's rendered body (see
``api/rendering.py``) skips the response schema. Only fresh entries are kept, and freshness is
re-checked on every read, so nothing is served that the shared cache would not serve. The cost:
after an admin cache drop, other workers may serve their copy for up to ``NEAR_CACHE_TTL``.

Rendered bodies are kept apart, keyed by entry and fetch time (an entry never changes), for as
long as the entry may be served, so a stale or shared entry is rendered once per worker too.
Backed by flask-caching's SimpleCache, in process only; values are shared, never pickled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask_caching.backends import SimpleCache

from quantpulse.cache.entry import CacheKey, Entry


@dataclass(frozen=True)
class Rendered:
    """An answer's JSON body around its per-request part: ``head + service_info + tail``."""

    head: bytes
    tail: bytes


class _SameObject:
    """SimpleCache pickles every value to hand out copies; ours are immutable, so share them."""

    @staticmethod
    def dumps(value: Any) -> Any:
        return value

    @staticmethod
    def loads(value: Any) -> Any:
        return value


def _shared_cache(max_entries: int, timeout: int) -> SimpleCache:
    cache = SimpleCache(threshold=max_entries, default_timeout=timeout)
    cache.serializer = _SameObject()
    return cache


class HotAnswers:
    def __init__(self, seconds: int, max_entries: int = 2000) -> None:
        self._seconds = seconds
        self._entries = _shared_cache(max_entries, max(seconds, 1))
        self._bodies = _shared_cache(max_entries, 60)

    def get(self, key: CacheKey, now: float) -> Entry[Any] | None:
        """A fresh entry this worker saw within the last ``seconds``."""
        if not self._seconds:
            return None
        entry = self._entries.get(key.redis_key)
        return entry if entry is not None and key.kind.is_fresh(entry, now) else None

    def put(self, key: CacheKey, entry: Entry[Any]) -> None:
        if self._seconds and key.kind.is_fresh(entry, time.time()):
            self._entries.set(key.redis_key, entry, timeout=self._seconds)

    def rendered(self, key: CacheKey, entry: Entry[Any], render: Callable[[], Rendered]) -> Rendered:
        """The entry's body, rendered at most once while it may be served."""
        name = f"{key.redis_key}@{entry.fetched_at}"
        body = self._bodies.get(name)
        if body is None:
            body = render()
            self._bodies.set(name, body, timeout=key.kind.lifetime or None)
        return body

    def drop(self, redis_keys: Iterable[str]) -> None:
        self._entries.delete_many(*redis_keys)

    def clear(self) -> None:
        self._entries.clear()


Renderers = Mapping[str, Callable[[Any], Rendered]]
