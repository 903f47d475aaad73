"""Cache and upstream counters, read by the status endpoint.

Counted in process memory for now, so each worker reports its own numbers; the fleet-wide
version keeps them in the shared store (issue #4). Counter names are the ones operators will see.
"""

from __future__ import annotations

import threading
from collections import Counter

from quantpulse.errors import FailureKind, ProviderError

HITS = "cache:hits"
MISSES = "cache:misses"
STALE_SERVED = "cache:stale_served"
COALESCED_WAITS = "cache:coalesced_waits"
LOCK_TAKEOVERS = "cache:lock_takeovers"
DEMO_SERVED = "demo:served"


def calls_counter(provider: str) -> str:
    return f"upstream:{provider}:calls"


def failures_counter(provider: str, kind: FailureKind | None = None) -> str:
    suffix = f":{kind.value}" if kind else ""
    return f"upstream:{provider}:failures{suffix}"


class Stats:
    """Thread-safe counters plus each provider's last error (which never holds a key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last_errors: dict[str, str] = {}

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def upstream_call(self, provider: str, endpoint: str, error: ProviderError | None) -> None:
        """UpstreamObserver: every HTTP request sent, retries included."""
        with self._lock:
            self._counts[calls_counter(provider)] += 1
            if error is not None:
                self._counts[failures_counter(provider)] += 1
                self._counts[failures_counter(provider, error.kind)] += 1
                self._last_errors[provider] = f"{endpoint}: {error.kind.value}: {error.message}"[:300]

    def count(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def last_error(self, provider: str) -> str | None:
        with self._lock:
            return self._last_errors.get(provider)
