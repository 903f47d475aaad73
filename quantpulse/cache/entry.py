"""What the cache stores and how it is named: kinds, keys, entries and their JSON codec.

Entries are JSON with the value, where it came from and when we fetched it, so ``redis-cli``
shows them, ``age_seconds`` tells the truth and no worker ever unpickles bytes from Redis.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from quantpulse.infra.namespace import NAMESPACE
from quantpulse.models import decode, to_primitive

log = logging.getLogger(__name__)

T = TypeVar("T")

FILLS_CHANNEL = f"{NAMESPACE}:fills"

HIT = "hit"
MISS = "miss"
STALE = "stale"
COALESCED = "coalesced"


@dataclass(frozen=True)
class Kind:
    """A cached data type: key prefix, model class, fresh TTL and the stale window after it.

    ``freshness`` says when an entry stops being fresh, when that is not simply ``ttl`` after
    its fetch (quotes fetched after a settled market close stay fresh until the next open).
    """

    name: str
    model: type
    ttl: int
    stale_ttl: int = 0
    freshness: Callable[[Entry[Any]], float] | None = field(default=None, compare=False)

    def fresh_until(self, entry: Entry[Any]) -> float:
        """Epoch seconds."""
        return self.freshness(entry) if self.freshness else entry.fetched_at + self.ttl

    def servable_until(self, entry: Entry[Any]) -> float:
        """Fresh, then stale: epoch seconds."""
        return self.fresh_until(entry) + self.stale_ttl

    def is_fresh(self, entry: Entry[Any], now: float) -> bool:
        return now < self.fresh_until(entry)

    def is_servable(self, entry: Entry[Any], now: float) -> bool:
        """Fresh, or stale but still inside the stale window."""
        return now < self.servable_until(entry)

    def keep_for(self, entry: Entry[Any], now: float) -> int:
        """Whole seconds the store keeps the entry from ``now``: fresh, then stale."""
        return max(1, math.ceil(self.servable_until(entry) - now))


@dataclass(frozen=True)
class CacheKey:
    """One cached thing: a kind, the subject it is about (``NSE:RELIANCE``) and a variant (a
    history period). The engine knows nothing else about what a subject is."""

    kind: Kind
    subject: str
    variant: str = ""

    @property
    def _suffix(self) -> str:
        tail = f":{self.variant}" if self.variant else ""
        return f"{self.kind.name}:{self.subject}{tail}"

    @functools.cached_property
    def redis_key(self) -> str:
        """Worked out once per key: the hot path reads it on every hit."""
        return f"{NAMESPACE}:{self._suffix}"

    @property
    def lock_key(self) -> str:
        return f"{NAMESPACE}:lock:{self._suffix}"

    @property
    def failure_key(self) -> str:
        return f"{NAMESPACE}:fail:{self._suffix}"

    @property
    def missing_key(self) -> str:
        """One negative entry per subject: a subject that does not exist has no data of any kind."""
        return f"{NAMESPACE}:missing:{self.subject}"


@dataclass(frozen=True)
class Missing:
    """A verdict that the subject does not exist; cached briefly as a negative entry."""

    message: str


@dataclass(frozen=True)
class Failed:
    """Nothing could be fetched just now; shared briefly so the fleet does not stampede."""

    reason: str
    retry_after: int | None = None
    notes: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # as for Entry


@dataclass(frozen=True)
class Entry(Generic[T]):
    """What a fetch produced: the value, its source and our fetch time (epoch seconds)."""

    value: T
    source: str
    fetched_at: float
    fallback_reason: str | None = None
    # What the fetcher tells its caller about this fetch; never stored, so not on cached reads.
    notes: tuple[Any, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Served(Generic[T]):
    """An entry as served to one request, with the truth about how it was obtained."""

    entry: Entry[T]
    cache: str

    @property
    def value(self) -> T:
        return self.entry.value


def encode_entry(entry: Entry[Any]) -> str:
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


def decode_entry(blob: bytes | str | None, key: CacheKey) -> Entry[Any] | None:
    """A blob that does not decode is treated as a miss and overwritten, never served.

    Whatever is in Redis (an entry written by another release under the same namespace, a hand
    edit) must never turn a read into a 500.
    """
    if blob is None:
        return None
    try:
        data = json.loads(blob)
        reason = data.get("fallback_reason")
        if not isinstance(data["source"], str) or not isinstance(reason, str | None):
            raise TypeError("source and fallback_reason must be text")
        return Entry(
            value=decode(key.kind.model, data["value"]),
            source=data["source"],
            fetched_at=float(data["fetched_at"]),
            fallback_reason=reason,
        )
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError):
        log.warning("ignoring undecodable cache entry %s", key.redis_key)
        return None
