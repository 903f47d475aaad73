"""Per-client rate limits (Flask-Limiter), counted in the shared store so every instance agrees.

The client is the address the platform's router saw: behind Heroku or Render, ``ProxyFix``
trusts the last ``PROXY_FIX_HOPS`` entries of ``X-Forwarded-For`` (and no more, so a client
cannot pick its own identity). Health checks and CORS preflights are never limited.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, g, request
from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from quantpulse.access.keys import Principal
from quantpulse.config import Settings
from quantpulse.infra.namespace import NAMESPACE
from quantpulse.infra.store import BACKEND_REDIS, RedisTrouble, Stores

_LIMITER_RETRY_AFTER = "X-Limiter-Retry-After"


def register_client_limits(app: Flask, settings: Settings, stores: Stores) -> Limiter | None:
    """Counted on the worker's own command pool, so the limiter adds no Redis connections."""
    if settings.proxy_fix_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_fix_hops, x_proto=settings.proxy_fix_hops
        )
    if not settings.rate_limit and not settings.keys_enabled:
        return None
    shared = stores.backend == BACKEND_REDIS and settings.redis_url
    tiers = dict(settings.api_tiers)
    _count_swallowed_errors(logging.getLogger("flask-limiter"), stores.trouble)
    pool = {"connection_pool": stores.primary.client.connection_pool} if shared else {}
    _retry_after_only_when_limited(app)  # registered first, so it runs after the limiter's hook
    _headers_for_the_tightest_limit(app)
    return Limiter(
        _client,
        app=app,
        # Anonymous clients: RATE_LIMIT, per route. A keyed client: its tier's limits, across
        # all routes (one budget per key, fleet-wide).
        default_limits=[settings.rate_limit] if settings.rate_limit else [],
        default_limits_exempt_when=lambda: _exempt() or _principal() is not None,
        application_limits=[lambda: tiers.get(_tier()) or tiers["free"]] if settings.keys_enabled else [],
        application_limits_exempt_when=lambda: _exempt() or _principal() is None,
        storage_uri=settings.redis_url if shared else "memory://",
        storage_options=pool,
        key_prefix=f"{NAMESPACE}:ratelimit",
        # A sliding-window counter is nearly as fair as a moving window at a third of its Redis
        # work per request (the benchmark measured the moving window's cost).
        strategy="sliding-window-counter",
        headers_enabled=True,
        header_name_mapping={HeaderNames.RETRY_AFTER: _LIMITER_RETRY_AFTER},
        # A Redis error must not become a 500, and must affect only its own request: that one
        # request goes unlimited (counted as Redis trouble). Flask-Limiter's in-memory fallback
        # would instead switch the whole worker to per-process limits for up to half a minute.
        swallow_errors=True,
        in_memory_fallback_enabled=False,
    )


def _retry_after_only_when_limited(app: Flask) -> None:
    """Flask-Limiter sets Retry-After on every answer it limits, overwriting a 503's own (the
    known cooldown) with its window's reset. It writes to a header of its own instead; only a
    429 turns that into Retry-After."""

    @app.after_request
    def move_retry_after(response: Response) -> Response:
        limiter_says = response.headers.pop(_LIMITER_RETRY_AFTER, None)
        if response.status_code == 429 and limiter_says is not None:
            response.headers.setdefault("Retry-After", limiter_says)  # a 429 of ours says its own
        return response


def _headers_for_the_tightest_limit(app: Flask) -> None:
    """Flask-Limiter describes the limit of the shortest window unless one is breached; a tier
    has several (``60/minute;2000/day``), and a client wants the one it will hit first: the
    headers say the limit with the fewest requests left."""

    @app.after_request
    def tightest(response: Response) -> Response:
        limiter = next(iter(app.extensions.get("limiter", ())), None)
        limits = limiter.current_limits if limiter else []
        if len(limits) < 2 or any(limit.breached for limit in limits):
            return response  # one limit, or a 429: Flask-Limiter names the one that was hit
        try:
            tightest = min(limits, key=lambda limit: limit.remaining)
            headers = {
                "X-RateLimit-Limit": str(tightest.limit.amount),
                "X-RateLimit-Remaining": str(tightest.remaining),
                "X-RateLimit-Reset": str(int(tightest.reset_at)),
            }
        except redis.RedisError:
            return response  # the limiter's own headers stand; never a 5xx for a header
        if "X-RateLimit-Remaining" in response.headers:
            response.headers.update(headers)
        return response


class _SwallowedStoreErrors(logging.Filter):
    """Flask-Limiter logs every Redis error it swallows, with a traceback, once per request.
    They are Redis trouble like any other: counted by kind and logged once per episode."""

    def __init__(self, trouble: RedisTrouble) -> None:
        super().__init__()
        self._trouble = trouble

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, redis.RedisError):
            self._trouble.record(error)
            return False
        return True


def _count_swallowed_errors(logger: logging.Logger, trouble: RedisTrouble) -> None:
    """One filter per process: an app built again (tests, the CLI) replaces the previous one."""
    for old in [f for f in logger.filters if isinstance(f, _SwallowedStoreErrors)]:
        logger.removeFilter(old)
    logger.addFilter(_SwallowedStoreErrors(trouble))


def _principal() -> Principal | None:
    """The client a valid API key identified (``api/keys.py``), if any."""
    return g.get("principal")


def _tier() -> str:
    """The keyed client's tier (a tier no longer configured counts as ``free``)."""
    principal = _principal()
    return principal.tier if principal else "free"


def _client() -> str:
    """Whom a limit counts: the key's id (never the key) for a keyed client, else the address."""
    principal = _principal()
    return f"key:{principal.key_id}" if principal else get_remote_address()


def _exempt() -> bool:
    return request.method == "OPTIONS" or (request.blueprint or "") == "health"
