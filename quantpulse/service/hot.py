"""Per-worker memory for hot answers: entries for about a second, with their rendered JSON.

A front end polling hot symbols makes most reads of the same few keys; serving those from the
worker's own memory skips the Redis round trip, and keeping each entry's rendered body (see
``api/rendering.py``) skips the response schema. An answer is kept as it was served (a hit, or
stale while its refresh runs) and never past the point where the shared cache would stop
serving it that way; the service drops a kept answer as soon as a fill of its key lands anywhere
in the fleet. The cost: after an admin cache drop, or with pub/sub down, other workers may serve
their copy for up to ``NEAR_CACHE_TTL``.

Each key's body is kept with the fetch time it was rendered for, as long as the entry may be
served, so a stale or shared entry is rendered once per worker too; a newer entry replaces it.
The storage (a bounded in-process cache) is handed in by the composition root.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from quantpulse.cache.entry import CacheKey, Entry


@dataclass(frozen=True)
class Rendered:
    """An answer's JSON body around its per-request part: ``head + service_info + tail``."""

    head: bytes
    tail: bytes


class Kept(NamedTuple):
    """An entry and the answer made of it, ready to send again, with both of its limits worked
    out once: kept until ``until`` (this worker's clock), servable as it is until ``serve_until``
    (epoch seconds, as the entry's fetch time: the end of its TTL, or of its stale window).

    With no entry, it only records that a fill of the key landed (``drop``), until ``until``.
    """

    entry: Entry[Any] | None
    answer: Any
    until: float
    serve_until: float


class LocalCache(Protocol):
    """What hot answers need of an in-process cache (flask-caching's SimpleCache has it)."""

    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...
    def delete_many(self, *keys: str) -> Any: ...
    def clear(self) -> Any: ...


class HotAnswers:
    def __init__(
        self,
        seconds: float,
        entries: LocalCache,
        bodies: LocalCache,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._entries = entries
        self._bodies = bodies
        self._clock = clock

    def get(self, key: CacheKey, now: float) -> Kept | None:
        """What this worker kept within the last ``seconds`` (timed here, to the millisecond:
        the cache's own expiry counts whole seconds), if it may still be served as it is."""
        if not self._seconds:
            return None
        kept = self._entries.get(key.redis_key)
        if kept is None or now >= kept.serve_until or self._clock() >= kept.until:
            return None
        return kept

    def put(
        self, key: CacheKey, entry: Entry[Any], answer: Any, serve_until: float, *, refreshing: bool = False
    ) -> None:
        """Keep ``answer`` unless a newer one is kept already. ``refreshing``: its entry is being
        refreshed (a stale answer), so it is not kept if a fill of the key landed just now: read
        before that fill, it would be outdated already."""
        if not self._seconds or time.time() >= serve_until:
            return
        name = key.redis_key
        kept = self._entries.get(name)
        if kept is not None and self._clock() < kept.until:
            landed = kept.entry is None
            if (landed and refreshing) or (not landed and kept.entry.fetched_at > entry.fetched_at):
                return
        kept = Kept(entry, answer, self._clock() + self._seconds, serve_until)
        self._entries.set(name, kept, timeout=int(self._seconds) + 1)

    def rendered(self, key: CacheKey, entry: Entry[Any], render: Callable[[], Rendered]) -> Rendered:
        """The entry's body, rendered at most once while it may be served."""
        kept = self._bodies.get(key.redis_key)
        if kept is not None and kept[0] == entry.fetched_at:
            return kept[1]
        body = render()
        if kept is None or kept[0] < entry.fetched_at:
            self._bodies.set(
                key.redis_key, (entry.fetched_at, body), timeout=key.kind.keep_for(entry, time.time())
            )
        return body

    def drop(self, redis_keys: Iterable[str]) -> None:
        """Forget the kept answers of these keys: a fill landed, or an admin dropped them. (Their
        bodies stay: each is tied to its entry's fetch time, and a newer entry renders anew.)"""
        if self._seconds:
            landed = Kept(None, None, self._clock() + self._seconds, 0.0)
            for name in redis_keys:
                self._entries.set(name, landed, timeout=int(self._seconds) + 1)

    def clear(self) -> None:
        self._entries.clear()
        self._bodies.clear()


Renderers = Mapping[str, Callable[[Any], Rendered]]
