"""Cache and upstream counters, fleet-wide: counted in memory, flushed to the store twice a second.

The hot path only bumps an in-process Counter (no round trip); a flusher thread adds the deltas
to one Redis hash with ``HINCRBY``, so every instance reads the same numbers and operators can
``redis-cli HGETALL qp:v1:stats``. Deltas that fail to flush (store down) are kept and retried.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import Counter

import redis

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.infra.background import Background, every
from quantpulse.infra.namespace import LAST_ERRORS_KEY, STATS_KEY
from quantpulse.infra.store import RedisTrouble, retry_idempotent

log = logging.getLogger(__name__)

HITS = "cache:hits"
MISSES = "cache:misses"
STALE_SERVED = "cache:stale_served"
COALESCED_WAITS = "cache:coalesced_waits"
LOCK_TAKEOVERS = "cache:lock_takeovers"
REFRESHES = "cache:background_refreshes"
DEMO_SERVED = "demo:served"
STREAM_PUSHES = "streams:pushes"  # quote and error events sent to live streams
FLUSH_INTERVAL = 0.5
# Histogram buckets (seconds): counted per bucket in the shared hash, cumulated when exported.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUND_NAMES = [str(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
# From a fill's write to a waiter in another worker settling on it (the wake-up's cost).
FILL_WAKEUP = "cache:fill_wakeup"


def request_counter(endpoint: str, status: int) -> str:
    return f"http:requests:{endpoint}:{status}"


def http_latency(endpoint: str) -> str:
    return f"http:latency:{endpoint}"


def upstream_latency(provider: str) -> str:
    return f"upstream:{provider}:latency"


def bucket_name(histogram: str, seconds: float) -> str:
    """The one bucket a sample falls in (the smallest upper bound at or above it)."""
    return f"{histogram}:bucket:{_BOUND_NAMES[bisect.bisect_left(LATENCY_BUCKETS, seconds)]}"


def redis_errors_counter(kind: str) -> str:
    return f"redis:errors:{kind}"


def calls_counter(provider: str) -> str:
    return f"upstream:{provider}:calls"


def failures_counter(provider: str, kind: FailureKind | None = None) -> str:
    suffix = f":{kind.value}" if kind else ""
    return f"upstream:{provider}:failures{suffix}"


class Stats:
    """Thread-safe counters plus each provider's last error (which never holds a key)."""

    def __init__(self, client: redis.Redis, trouble: RedisTrouble | None = None) -> None:
        self._client = client
        self._trouble = trouble
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._pending_errors: dict[str, str] = {}
        self._flusher = Background("stats-flusher", every(FLUSH_INTERVAL, self.flush, "stats flush"))

    def incr(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._pending[name] += amount
            self._flusher.ensure()

    def observe(self, histogram: str, seconds: float) -> None:
        """One latency sample: its bucket, the count and the sum (in microseconds)."""
        with self._lock:
            self._observe(histogram, seconds)
        self._flusher.ensure()

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered HTTP request: its count by endpoint and status, and its latency."""
        with self._lock:
            self._pending[request_counter(endpoint, status)] += 1
            self._observe(http_latency(endpoint), seconds)
        self._flusher.ensure()

    def _observe(self, histogram: str, seconds: float) -> None:
        self._pending[bucket_name(histogram, seconds)] += 1
        self._pending[f"{histogram}:count"] += 1
        self._pending[f"{histogram}:sum_us"] += int(seconds * 1_000_000)

    def upstream_call(
        self, provider: str, endpoint: str, error: ProviderError | None, seconds: float = 0.0
    ) -> None:
        """Every HTTP request sent, retries included, with how long it took."""
        with self._lock:
            self._observe(upstream_latency(provider), seconds)
            self._pending[calls_counter(provider)] += 1
            if error is not None:
                self._pending[failures_counter(provider)] += 1
                self._pending[failures_counter(provider, error.kind)] += 1
                self._pending_errors[provider] = f"{endpoint}: {error.kind.value}: {error.message}"[:300]
        self._flusher.ensure()

    def flush(self) -> bool:
        """Add the pending deltas to the shared hash; keep them if the store does not answer."""
        with self._lock:
            counts, errors = self._pending, self._pending_errors
            self._pending, self._pending_errors = Counter(), {}
        if self._trouble is not None:
            counts.update({redis_errors_counter(k): n for k, n in self._trouble.take().items()})
        if not counts and not errors:
            return True
        try:
            pipe = self._client.pipeline(transaction=False)
            for name, amount in counts.items():
                pipe.hincrby(STATS_KEY, name, amount)
            if errors:
                pipe.hset(LAST_ERRORS_KEY, mapping=errors)
            pipe.execute()
        except redis.RedisError:
            with self._lock:
                self._pending.update(counts)
                self._pending_errors = {**errors, **self._pending_errors}
            return False
        return True

    def snapshot(self) -> tuple[Counter[str], dict[str, str], bool]:
        """Fleet-wide counters and last errors, and whether they came from the shared store.

        This process's unflushed deltas are flushed first; when the store is down, only this
        process's own pending numbers can be shown.
        """
        if self.flush():
            try:
                counts = retry_idempotent(lambda: self._client.hgetall(STATS_KEY))
                errors = retry_idempotent(lambda: self._client.hgetall(LAST_ERRORS_KEY))
                return (
                    Counter({k.decode(): int(v) for k, v in counts.items()}),
                    {k.decode(): v.decode() for k, v in errors.items()},
                    True,
                )
            except redis.RedisError:
                pass
        with self._lock:
            return Counter(self._pending), dict(self._pending_errors), False
