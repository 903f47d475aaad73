"""Refresh-ahead: hot keys are refreshed shortly before they go stale, while the budget allows.

A front end polling every few seconds reads the same keys over and over; refreshing those in
the last part of their TTL means its reads almost never find a stale or missing entry. Keys
that nobody keeps reading are left to expire, and nothing is refreshed ahead when the
providers' budget is tight (the credits are kept for real misses).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from quantpulse.cache.entry import CacheKey, Entry

RETRY_INTERVAL = 2.0  # seconds between two refresh-ahead attempts for one key in one process


class RefreshAhead:
    def __init__(
        self,
        *,
        fraction: float,
        hot_reads: int,
        allowed: Callable[[], bool],
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fraction = fraction
        self._hot_reads = hot_reads
        self._allowed = allowed
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._reads: Counter[CacheKey] = Counter()
        self._window_started = clock()
        self._attempted: dict[CacheKey, float] = {}

    def due(self, key: CacheKey, entry: Entry[object], now: float) -> bool:
        """Count this read; true when the key is hot, near its TTL, and not tried just now."""
        if not self._fraction:
            return False
        tick = self._clock()
        with self._lock:
            if tick - self._window_started > self._window:
                self._reads.clear()
                self._attempted.clear()
                self._window_started = tick
            self._reads[key] += 1
            if (
                self._reads[key] < self._hot_reads
                or key.kind.fresh_until(entry) - now > key.kind.ttl * self._fraction
            ):
                return False
            if tick - self._attempted.get(key, -RETRY_INTERVAL) < RETRY_INTERVAL:
                return False
            self._attempted[key] = tick
        return self._allowed()
