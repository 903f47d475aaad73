"""The key-value store behind the cache: Redis when ``REDIS_URL`` is set, else embedded.

Both are driven through the redis-py API, so the cache code is the same on either. The embedded
store is a fakeredis server living in this process: fine for ``make run`` and development, but
per process, so it neither shares entries nor coalesces across gunicorn workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import fakeredis
import redis

from quantpulse.config import Settings

log = logging.getLogger(__name__)

NAMESPACE = "qp:v1"
BACKEND_REDIS = "redis"
BACKEND_EMBEDDED = "embedded"


@dataclass(frozen=True)
class Store:
    """A redis-py client and which kind of server answers it."""

    client: redis.Redis
    backend: str
    max_entries: int | None = None


def connect_store(settings: Settings) -> Store:
    if not settings.redis_url:
        log.warning(
            "REDIS_URL is not set: using the EMBEDDED in-process store (max %d entries). "
            "Each worker caches and coalesces on its own; set REDIS_URL for a fleet.",
            settings.cache_max_size,
        )
        return embedded_store(settings.cache_max_size)
    # Heroku Redis presents a self-signed chain over rediss://: encrypt, but do not verify it.
    tls = {"ssl_cert_reqs": None} if settings.redis_url.startswith("rediss://") else {}
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        **tls,
    )
    return Store(client=client, backend=BACKEND_REDIS)


def embedded_store(max_entries: int) -> Store:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return Store(client=client, backend=BACKEND_EMBEDDED, max_entries=max_entries)


def store_problem(store: Store) -> str | None:
    """Why the store cannot be used right now, or None when it answers a PING."""
    try:
        store.client.ping()
    except redis.RedisError as error:
        return f"{store.backend} store unreachable: {type(error).__name__}"
    return None
