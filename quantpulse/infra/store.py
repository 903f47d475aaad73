"""The key-value store behind the cache: Redis when ``REDIS_URL`` is set, else embedded.

Both are driven through the redis-py API, so the cache code is the same on either. The embedded
store is a fakeredis server living in this process: fine for ``make run`` and development, but
per process, so it neither shares entries nor coalesces across gunicorn workers.

Managed Redis plans are small (Heroku mini: 20 connections, 25 MB, ``noeviction``), so a worker
opens at most ``REDIS_MAX_CONNECTIONS``: one pub/sub connection plus a bounded command pool. When
Redis stops answering, ``Stores`` routes work to a small embedded fallback and probes the shared
store again a few times a second, so the fleet shares one cache again as soon as it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, LifoQueue
from typing import Any, TypeVar

import fakeredis
import redis
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from quantpulse.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKEND_REDIS = "redis"
BACKEND_EMBEDDED = "embedded"
FALLBACK_MAX_ENTRIES = 1000
PROBE_INTERVAL = 0.25  # seconds between two checks of a shared store that failed
PROBE_PATIENCE = 0.05  # seconds a request waits for another thread's probe verdict
EPISODE_QUIET = 30.0  # seconds without an error of a kind before the next one is a new episode

# The kinds of Redis trouble operators see (docs/redis-plans.md).
REFUSED, OOM, TIMEOUT, CONNECTION = "refused", "oom", "timeout", "connection"
ERROR_KINDS = (REFUSED, OOM, TIMEOUT, CONNECTION)


class PoolExhausted(redis.ConnectionError):
    """No pooled connection came free within ``REDIS_POOL_TIMEOUT``: local contention, not an outage."""


class _BoundedWaitQueue(LifoQueue):  # type: ignore[type-arg]
    """The pool's free-connection queue; a wait that runs out says so with its own error."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, timeout)
        except Empty:
            raise PoolExhausted("no pooled Redis connection came free in time") from None


def error_kind(error: redis.RedisError) -> str:
    """Sort a Redis error into the kinds counted in status and ``/metrics``."""
    if isinstance(error, redis.OutOfMemoryError):
        return OOM
    if isinstance(error, redis.TimeoutError | PoolExhausted):
        return TIMEOUT
    # Redis says this only in words; redis-py maps the words to a plain ConnectionError.
    if isinstance(error, redis.ConnectionError) and "max number of clients" in str(error):
        return REFUSED
    return CONNECTION


class RedisTrouble:
    """Counts Redis errors by kind and logs each kind once per episode, not once per request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._last_seen: dict[str, float] = {}

    def record(self, error: redis.RedisError) -> str:
        kind = error_kind(error)
        now = self._clock()
        with self._lock:
            self._pending[kind] += 1
            new_episode = now - self._last_seen.get(kind, float("-inf")) > EPISODE_QUIET
            self._last_seen[kind] = now
        if new_episode:
            log.warning("Redis trouble (%s): %s; answers are still served", kind, error)
        return kind

    def take(self) -> Counter[str]:
        """The counts since the last call (the statistics flusher adds them to the shared hash)."""
        with self._lock:
            taken, self._pending = self._pending, Counter()
        return taken


@dataclass(frozen=True)
class Store:
    """A redis-py client and which kind of server answers it.

    ``pubsub`` is the client for the worker's one subscriber connection (its own pool of one, so
    it never takes a command connection).
    """

    client: redis.Redis
    backend: str
    max_entries: int | None = None
    pubsub: redis.Redis | None = None

    @property
    def subscriber(self) -> redis.Redis:
        return self.pubsub or self.client


def connect_redis(settings: Settings) -> Store:
    """Pools are created lazily, after gunicorn forks, so each worker has its own."""
    url = settings.redis_url or ""
    # Heroku Redis presents a self-signed chain over rediss://: encrypt, but do not verify it.
    tls: dict[str, Any] = {"ssl_cert_reqs": None} if url.startswith("rediss://") else {}
    common: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
        # redis-py would retry 10 times with backoff; retries are ours (idempotent commands
        # only, see ``retry_idempotent``), so a request never waits on a dead store for long.
        "retry": Retry(NoBackoff(), 0),
        # redis-py skips its check for dead pooled connections (after a restart or failover)
        # while maintenance notifications (a Redis Cloud feature) are "auto"; the platforms we
        # target send none, and the check is what saves a command from a dead connection.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        **tls,
    }
    commands = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections - 1,
        timeout=settings.redis_pool_timeout,
        queue_class=_BoundedWaitQueue,
        **common,
    )
    subscriber = redis.ConnectionPool.from_url(url, max_connections=1, **common)
    return Store(
        client=redis.Redis(connection_pool=commands),
        backend=BACKEND_REDIS,
        pubsub=redis.Redis(connection_pool=subscriber),
    )


def embedded_store(max_entries: int) -> Store:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return Store(client=client, backend=BACKEND_EMBEDDED, max_entries=max_entries)


BROKEN_RETRIES = 3  # the default command pool (REDIS_MAX_CONNECTIONS 4, minus pub/sub)


def retry_idempotent(action: Callable[[], T]) -> T:
    """Run ``action`` again if its connection broke (a failover, a proxy reset).

    Only for commands that may safely run twice; never on a timeout, where the first attempt may
    still be running. A broken connection is dropped, but after a failover every pooled one is
    broken: the retries may each meet another before a fresh one is opened, so there are as many
    as a worker's command pool can hold (``BROKEN_RETRIES``).
    """
    for _ in range(BROKEN_RETRIES):
        try:
            return action()
        except redis.ConnectionError as error:
            if isinstance(error, PoolExhausted) or error_kind(error) == REFUSED:
                raise
    return action()


class Stores:
    """The shared store, and where work goes while it is unreachable."""

    def __init__(
        self,
        primary: Store,
        *,
        fallback: Store | None = None,
        trouble: RedisTrouble | None = None,
        probe_interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.trouble = trouble or RedisTrouble()
        self._fallback = fallback
        self._probe_interval = probe_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self._down = False
        self._next_probe = 0.0

    @property
    def backend(self) -> str:
        return self.primary.backend

    @property
    def shared_down(self) -> bool:
        """True while this worker has the shared store marked unreachable."""
        return self._down

    def active(self) -> Store:
        """The primary, unless it failed and has not answered a probe since."""
        if self._fallback is None or not self._down or self._probe():
            return self.primary
        return self._fallback

    def failed(self, store: Store, error: redis.RedisError) -> Store:
        """Note ``error`` on ``store`` and return where this request carries on; re-raised when
        there is nowhere else to go (the embedded store has no fallback)."""
        self.note(store, error)
        if store is not self.primary or self._fallback is None:
            raise error
        return self._fallback

    def note(self, store: Store, error: redis.RedisError) -> None:
        """Count ``error``, and send the worker to the fallback if the shared store is unreachable.

        A full pool, a refused new connection (``maxclients``) or a refused write (OOM) affects
        just the request that met it, which is served as if the store were down: the worker's
        other connections still work. For best-effort work (writes, releases): never raises.
        """
        kind = self.trouble.record(error)
        if store is not self.primary or self._fallback is None:
            return
        if not isinstance(error, PoolExhausted) and kind in (CONNECTION, TIMEOUT):
            with self._lock:
                if not self._down:
                    log.warning("shared store unreachable (%s); using the in-process fallback", error)
                self._down = True
                self._next_probe = self._clock() + self._probe_interval

    def _probe(self) -> bool:
        """At most one PING per interval per worker; True (and back to normal) once it answers.

        Requests that arrive while a probe is under way wait briefly for its verdict (a store
        that is back answers in a millisecond) rather than fill on the fallback beside it; a
        store that hangs costs them no more than ``PROBE_PATIENCE``.
        """
        if not self._probe_due():
            return not self._down
        if not self._probing.acquire(timeout=PROBE_PATIENCE):
            return not self._down
        try:
            if not self._probe_due():
                return not self._down
            self.primary.client.ping()
        except redis.RedisError as error:
            self.trouble.record(error)
            with self._lock:
                self._next_probe = self._clock() + self._probe_interval
            return False
        finally:
            self._probing.release()
        with self._lock:
            self._down = False
        log.info("shared store answers again; back from the in-process fallback")
        return True

    def _probe_due(self) -> bool:
        with self._lock:
            return self._down and self._clock() >= self._next_probe

    def problem(self) -> str | None:
        """Why the shared store cannot be used right now, or None when it answers a PING.

        A refused client (``maxclients``) or a full pool is an answer too: the store is up, only
        busy, and routing traffic away from this instance would not help it.
        """
        try:
            self.primary.client.ping()
        except redis.RedisError as error:
            kind = self.trouble.record(error)
            if isinstance(error, PoolExhausted) or kind == REFUSED:
                return None
            return f"{self.primary.backend} store unreachable: {type(error).__name__}"
        with self._lock:
            self._down = False
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
