"""The key-value store behind the cache: Redis when ``REDIS_URL`` is set, else embedded.

Both are driven through the redis-py API, so the cache code is the same on either. The embedded
store is a fakeredis server living in this process: fine for ``make run`` and development, but
per process, so it neither shares entries nor coalesces across gunicorn workers.

When Redis stops answering, ``Stores`` routes work to a small embedded fallback for a few seconds
at a time, so requests keep getting answers (per-process caching and coalescing) and the shared
store is tried again by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import fakeredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from quantpulse.config import Settings

log = logging.getLogger(__name__)

BACKEND_REDIS = "redis"
BACKEND_EMBEDDED = "embedded"
FALLBACK_MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Store:
    """A redis-py client and which kind of server answers it."""

    client: redis.Redis
    backend: str
    max_entries: int | None = None


def connect_redis(settings: Settings) -> Store:
    """A pooled client; the pool is created lazily, so each gunicorn worker gets its own."""
    url = settings.redis_url or ""
    # Heroku Redis presents a self-signed chain over rediss://: encrypt, but do not verify it.
    tls = {"ssl_cert_reqs": None} if url.startswith("rediss://") else {}
    client = redis.Redis.from_url(
        url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
        # redis-py retries 10 times with backoff by default; a request must not wait that long,
        # it goes to the in-process fallback instead and the shared store is retried later.
        retry=Retry(NoBackoff(), 0),
        **tls,
    )
    return Store(client=client, backend=BACKEND_REDIS)


def embedded_store(max_entries: int) -> Store:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return Store(client=client, backend=BACKEND_EMBEDDED, max_entries=max_entries)


class Stores:
    """The shared store, and where work goes while it is unreachable."""

    def __init__(self, primary: Store, *, fallback: Store | None = None, retry_after: float = 2.0):
        self.primary = primary
        self._fallback = fallback
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def backend(self) -> str:
        return self.primary.backend

    def active(self) -> Store:
        """The primary, unless it failed less than ``retry_after`` seconds ago."""
        if self._fallback is None or time.monotonic() >= self._down_until:
            return self.primary
        return self._fallback

    def mark_down(self, store: Store, error: Exception) -> Store:
        """Record that ``store`` failed and return where to carry on; re-raise if nowhere."""
        if store is not self.primary or self._fallback is None:
            raise error
        self.note_failure(store, error)
        return self._fallback

    def note_failure(self, store: Store, error: Exception) -> None:
        """Send work to the fallback for ``retry_after`` seconds, if ``store`` is the shared one."""
        if store is not self.primary or self._fallback is None:
            return
        with self._lock:
            if time.monotonic() >= self._down_until:
                log.warning("shared store unreachable (%s); using the in-process fallback", error)
            self._down_until = time.monotonic() + self._retry_after

    def problem(self) -> str | None:
        """Why the shared store cannot be used right now, or None when it answers a PING."""
        try:
            self.primary.client.ping()
        except redis.RedisError as error:
            return f"{self.primary.backend} store unreachable: {type(error).__name__}"
        return None


def connect_stores(settings: Settings) -> Stores:
    if not settings.redis_url:
        log.warning(
            "REDIS_URL is not set: using the EMBEDDED in-process store (max %d entries). "
            "Each worker caches and coalesces on its own; set REDIS_URL for a fleet.",
            settings.cache_max_size,
        )
        return Stores(embedded_store(settings.cache_max_size))
    return Stores(connect_redis(settings), fallback=embedded_store(FALLBACK_MAX_ENTRIES))
