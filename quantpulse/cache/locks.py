"""Fill locks: one filler per cache key across every worker and instance sharing the store.

A lock is a key holding its owner's token with an expiry; only that token releases or extends it
(Lua, so check-and-act is atomic). Each acquisition is a ``Lease`` of its own, so the same key
held on two stores, or re-taken after a take-over, is never confused with another. A keeper
thread extends live leases, so a slow fill keeps its lock while a dead owner's lock expires within
``ttl`` and is taken over; a fill that hangs past ``max_hold`` is no longer extended either.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from quantpulse.infra.store import retry_idempotent

log = logging.getLogger(__name__)

# Returns -1 when the lock is ours (taken now, or by this same request before a lost reply: a
# retried acquire that finds its own token counts as acquired), else the holder's milliseconds.
_ACQUIRE = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return -1 end
if not holder then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
return redis.call('pttl', KEYS[1])
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


@dataclass(frozen=True, eq=False)
class Lease:
    """One lock this process took: where, which key, with which token, and when."""

    client: redis.Redis = field(repr=False)
    key: str
    token: str
    taken_at: float


class FillLocks:
    """Acquire, release and keep alive the fill locks of this process."""

    def __init__(
        self, ttl_seconds: float, *, max_hold: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._max_hold = max_hold
        self._clock = clock
        self._held: set[Lease] = set()
        self._guard = threading.Lock()
        self._keeper: threading.Thread | None = None

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_ms / 1000

    def acquire(self, client: redis.Redis, lock_keys: Iterable[str]) -> tuple[list[Lease], dict[str, float]]:
        """Try every lock once: the leases taken, and the others with their holder's seconds left."""
        keys = list(lock_keys)
        token = secrets.token_hex(8)

        def attempt() -> list[int]:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.eval(_ACQUIRE, 1, key, token, self._ttl_ms)
            return pipe.execute()

        taken: list[Lease] = []
        held: dict[str, float] = {}
        now = self._clock()
        for key, answer in zip(keys, retry_idempotent(attempt), strict=True):
            if answer == -1:
                taken.append(Lease(client, key, token, now))
            else:
                held[key] = max(0, int(answer)) / 1000
        if taken:
            self._remember(taken)
        return taken, held

    def release(self, leases: Iterable[Lease]) -> None:
        """Release these leases; a lock that expired and was taken over by another stays theirs."""
        leases = list(leases)
        with self._guard:
            self._held.difference_update(leases)
        for lease in leases:
            retry_idempotent(lambda lease=lease: lease.client.eval(_RELEASE, 1, lease.key, lease.token))

    def _remember(self, leases: list[Lease]) -> None:
        with self._guard:
            self._held.update(leases)
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._keep_alive, name="fill-lock-keeper", daemon=True)
                self._keeper.start()

    def _keep_alive(self) -> None:
        """Every third of the TTL, extend leases younger than ``max_hold``; stop when none are held."""
        while True:
            time.sleep(self._ttl_ms / 3000)
            for lease in self._due():
                try:
                    lease.client.eval(_EXTEND, 1, lease.key, lease.token, self._ttl_ms)
                except redis.RedisError as error:
                    log.debug("could not extend %s: %s", lease.key, error)
            with self._guard:
                if not self._held:
                    self._keeper = None
                    return

    def _due(self) -> list[Lease]:
        """Leases to extend now; a hung fill's lease is let go so a waiter can take over."""
        now = self._clock()
        with self._guard:
            hung = {lease for lease in self._held if now - lease.taken_at > self._max_hold}
            for lease in hung:
                log.warning(
                    "fill of %s hung for %.0f s; letting its lock expire", lease.key, now - lease.taken_at
                )
            self._held -= hung
            return list(self._held)
