"""Open live-quote streams, fleet-wide: each client's slots (``STREAM_MAX_PER_CLIENT``) and the
counts the status page and ``/metrics`` show, in the shared store.

A stream holds a lease in two sorted sets (its client's and the fleet's), scored by when it
expires; each worker renews its streams' leases in one pipeline every ``LEASE / 3`` seconds, so a
worker that dies without closing them frees its slots within ``LEASE``. The instruments each
worker watches are leased the same way. Nothing here is on a request's hot path; a store that
refuses a command costs a stream nothing (it is let in, and counted as Redis trouble).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from quantpulse.infra.background import Background, every
from quantpulse.infra.namespace import NAMESPACE
from quantpulse.infra.store import Stores

log = logging.getLogger(__name__)

LEASE = 60.0  # seconds a stream's slot outlives its worker's last renewal
OPEN_KEY = f"{NAMESPACE}:streams:open"
WATCHING_KEY = f"{NAMESPACE}:streams:watching"

# KEYS: the client's slots, the fleet's streams. ARGV: now, lease end, limit, stream id, seconds
# the client's set is kept. Drops the client's lapsed leases, then takes a slot if one is free.
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return 1
"""


def client_key(client: str) -> str:
    return f"{NAMESPACE}:streams:client:{client}"


@dataclass(frozen=True)
class Slot:
    """One open stream's lease: ``stream`` names it in the store."""

    client: str
    stream: str


@dataclass(frozen=True)
class FleetStreams:
    """What the fleet's streams add up to; ``None`` where the store could not say."""

    open: int | None
    instruments: int | None


class StreamRegistry:
    def __init__(
        self,
        stores: Stores,
        max_per_client: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stores = stores
        self._max = max_per_client
        self._clock = clock
        self._watched: Callable[[], list[str]] = list
        self._worker = secrets.token_hex(4)
        self._guard = threading.Lock()
        self._held: set[Slot] = set()
        self._keeper = Background("stream-leases", every(LEASE / 3, self.renew, "stream lease renewal"))

    def open(self, client: str) -> Slot | None:
        """A slot for one more stream of ``client``, or None when it holds its maximum already."""
        slot = Slot(client, f"{self._worker}:{secrets.token_hex(6)}")
        now = self._clock()
        store = self._stores.active()
        try:
            taken = store.client.eval(
                _OPEN,
                2,
                client_key(client),
                OPEN_KEY,
                now,
                now + LEASE,
                self._max,
                slot.stream,
                int(LEASE * 2),
            )
        except redis.RedisError as error:
            self._stores.note(store, error)
            taken = 1  # the limit cannot be checked: a stream is cheap, refusing it is not
        if not taken:
            return None
        with self._guard:
            self._held.add(slot)
        self._keeper.ensure()
        return slot

    def close(self, slot: Slot) -> None:
        with self._guard:
            self._held.discard(slot)
        store = self._stores.active()
        try:
            pipe = store.client.pipeline(transaction=False)
            pipe.zrem(client_key(slot.client), slot.stream)
            pipe.zrem(OPEN_KEY, slot.stream)
            pipe.execute()
        except redis.RedisError as error:
            self._stores.note(store, error)  # the lease lapses by itself

    def fleet(self) -> FleetStreams:
        """Open streams and distinct watched instruments across the fleet (for status, not hot);
        unknown while this worker has the shared store marked down (its fallback knows nothing
        of the fleet)."""
        if self._stores.shared_down:
            return FleetStreams(None, None)
        now = self._clock()
        store = self._stores.active()
        try:
            pipe = store.client.pipeline(transaction=False)
            pipe.zremrangebyscore(OPEN_KEY, "-inf", now)
            pipe.zcard(OPEN_KEY)
            pipe.zremrangebyscore(WATCHING_KEY, "-inf", now)
            pipe.zrange(WATCHING_KEY, 0, -1)
            _, streams, _, watching = pipe.execute()
        except redis.RedisError as error:
            self._stores.note(store, error)
            return FleetStreams(None, None)
        names = {member.decode().partition("|")[2] for member in watching}
        return FleetStreams(int(streams), len(names))

    def follow(self, watched: Callable[[], list[str]]) -> None:
        """Where renewals learn what this worker watches (the hub's own record, so a
        ``watching`` and an ``unwatched`` that crossed on the way are put right)."""
        self._watched = watched

    def watching(self, names: list[str]) -> None:
        """This worker's streams started watching these instruments."""
        self._write(names, [])

    def unwatched(self, names: list[str]) -> None:
        """Nobody in this worker watches these any more."""
        self._write([], names)

    def renew(self) -> None:
        """Extend this worker's leases: its streams and the instruments it watches."""
        with self._guard:
            held = list(self._held)
        self._write(self._watched(), [], held)

    def _write(self, watching: list[str], unwatched: list[str], held: Sequence[Slot] = ()) -> None:
        until = self._clock() + LEASE
        store = self._stores.active()
        try:
            pipe = store.client.pipeline(transaction=False)
            # XX GT: only extend; a slot that a close removed meanwhile must not come back.
            for slot in held:
                pipe.zadd(client_key(slot.client), {slot.stream: until}, xx=True, gt=True)
                pipe.expire(client_key(slot.client), int(LEASE * 2))
            if held:
                pipe.zadd(OPEN_KEY, {slot.stream: until for slot in held}, xx=True, gt=True)
            if watching:
                pipe.zadd(WATCHING_KEY, {f"{self._worker}|{name}": until for name in watching})
            if unwatched:
                pipe.zrem(WATCHING_KEY, *(f"{self._worker}|{name}" for name in unwatched))
            pipe.execute()
        except redis.RedisError as error:
            self._stores.note(store, error)
