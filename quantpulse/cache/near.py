"""A per-worker near cache: fresh entries kept in process memory for about a second.

A front end polling hot symbols makes most reads of the same few keys; serving those from the
worker's own memory skips the Redis round trip. Only fresh entries are kept, and freshness is
re-checked on every read, so the near cache never serves anything the shared cache would not.
The cost: after an admin cache drop, other workers may serve their copy for up to a second.

Backed by flask-caching's SimpleCache, in process only; entries are frozen, so they are shared
rather than pickled per read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flask_caching.backends import SimpleCache

from quantpulse.cache.entry import CacheKey, Entry


class _SameObject:
    """SimpleCache pickles every value to hand out copies; entries are immutable, so share them."""

    @staticmethod
    def dumps(value: Any) -> Any:
        return value

    @staticmethod
    def loads(value: Any) -> Any:
        return value


class NearCache:
    def __init__(self, seconds: int, max_entries: int = 2000) -> None:
        self._seconds = seconds
        self._cache = SimpleCache(threshold=max_entries, default_timeout=max(seconds, 1))
        self._cache.serializer = _SameObject()

    def get(self, key: CacheKey, now: float) -> Entry[Any] | None:
        if not self._seconds:
            return None
        entry = self._cache.get(key.redis_key)
        return entry if entry is not None and key.kind.is_fresh(entry, now) else None

    def put(self, key: CacheKey, entry: Entry[Any]) -> None:
        if self._seconds and key.kind.is_fresh(entry, time.time()):
            self._cache.set(key.redis_key, entry, timeout=self._seconds)

    def drop(self, redis_keys: Iterable[str]) -> None:
        self._cache.delete_many(*redis_keys)
