"""Fill locks: one filler per cache key across every worker and instance sharing the store.

A lock is ``SET key token NX PX ttl``; only the owner's token releases or extends it (Lua, so
check-and-act is atomic). A keeper thread extends the locks this process holds, so a slow but
live fill keeps its lock while a dead owner's lock expires within ``ttl`` and is taken over.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable

import redis

log = logging.getLogger(__name__)

# Returns -1 when the lock was taken, else the holder's remaining milliseconds.
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
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


class FillLocks:
    """Acquire, release and keep alive the fill locks of this process."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._held: dict[str, tuple[redis.Redis, str]] = {}
        self._guard = threading.Lock()
        self._keeper: threading.Thread | None = None

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_ms / 1000

    def acquire(self, client: redis.Redis, lock_keys: Iterable[str]) -> tuple[list[str], dict[str, float]]:
        """Try every lock once: the ones taken, and the others with their holder's seconds left."""
        keys = list(lock_keys)
        token = secrets.token_hex(8)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.eval(_ACQUIRE, 1, key, token, self._ttl_ms)
        taken, held = [], {}
        for key, answer in zip(keys, pipe.execute(), strict=True):
            if answer == -1:
                taken.append(key)
            else:
                held[key] = max(0, int(answer)) / 1000
        if taken:
            self._remember(client, taken, token)
        return taken, held

    def release(self, lock_keys: Iterable[str]) -> None:
        """Release what this process holds; a lock that expired and was taken over stays."""
        with self._guard:
            owned = [(key, *self._held.pop(key)) for key in lock_keys if key in self._held]
        for key, client, token in owned:
            client.eval(_RELEASE, 1, key, token)

    def _remember(self, client: redis.Redis, keys: list[str], token: str) -> None:
        with self._guard:
            for key in keys:
                self._held[key] = (client, token)
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._keep_alive, name="fill-lock-keeper", daemon=True)
                self._keeper.start()

    def _keep_alive(self) -> None:
        """Extend held locks every third of their TTL; stop when none are held."""
        while True:
            time.sleep(self._ttl_ms / 3000)
            with self._guard:
                held = list(self._held.items())
                if not held:
                    self._keeper = None
                    return
            for key, (client, token) in held:
                try:
                    client.eval(_EXTEND, 1, key, token, self._ttl_ms)
                except redis.RedisError as error:
                    log.debug("could not extend %s: %s", key, error)
