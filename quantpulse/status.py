"""The service-status document (API.md, "Status body"), assembled from the live collaborators.

Counters come from the shared store, so every instance reports the same fleet-wide numbers;
``stats_scope`` says ``process`` when the store was unreachable and only local numbers show.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from quantpulse.cache import stats as counters
from quantpulse.cache.store import BACKEND_REDIS, ERROR_KINDS
from quantpulse.errors import FailureKind
from quantpulse.periods import SUPPORTED_PERIODS
from quantpulse.service import StockService
from quantpulse.upstream.guard import UpstreamGuard
from quantpulse.upstream.health import STATE_DISABLED, STATE_OK

LIVE_PROVIDERS = {"twelvedata": "TwelveData", "finnhub": "Finnhub"}
ENDPOINTS = {
    "quote": "/stock/{symbol}",
    "historical": "/stock/{symbol}/historical?period=1mo",
    "profile": "/stock/{symbol}/profile",
    "batch": "POST /stock/quotes",
    "status": "/stock/service/status",
    "clear_cache": "DELETE /stock/{symbol}/cache",
    "health": "/health",
    "ready": "/health/ready",
}


def service_status(
    service: StockService, guard: UpstreamGuard, *, store_problem: str | None
) -> dict[str, Any]:
    configured = {provider.name for provider in service.chain.providers}
    health = {name: guard.status(name) for name in LIVE_PROVIDERS}
    usable = {name for name in configured if health[name]["state"] == STATE_OK}
    counts, last_errors, shared = service.stats.snapshot()
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": {
            "service": "StockService",
            "status": "operational" if store_problem is None and usable else "degraded",
            "provider_status": _provider_status(service, configured, usable, health, counts, last_errors),
            "cache_stats": _cache_stats(service, counts, shared, store_problem),
            "supported_periods": list(SUPPORTED_PERIODS),
        },
        "endpoints": ENDPOINTS,
    }


def _provider_status(
    service: StockService,
    configured: set[str],
    usable: set[str],
    health: dict[str, dict[str, Any]],
    counts: Counter[str],
    last_errors: dict[str, str],
) -> dict[str, Any]:
    providers: dict[str, Any] = {
        name: {
            "configured": name in configured,
            "state": health[name]["state"] if name in configured else STATE_DISABLED,
            "cooldown_until": _iso(health[name]["cooldown_until"]),
            "budget": health[name]["budget"],
            "calls": counts[counters.calls_counter(name)],
            "failures": counts[counters.failures_counter(name)],
            "failures_by_kind": {
                kind.value: counts[counters.failures_counter(name, kind)] for kind in FailureKind
            },
            "last_error": last_errors.get(name),
        }
        for name in LIVE_PROVIDERS
    }
    providers["demo"] = {"served": counts[counters.DEMO_SERVED]}
    primary, fallback = LIVE_PROVIDERS
    return {
        "mode": service.settings.stock_provider,
        "primary_available": primary in usable,
        "fallback_available": fallback in usable,
        "primary_provider": LIVE_PROVIDERS[primary],
        "fallback_provider": LIVE_PROVIDERS[fallback],
        "demo_allowed": service.chain.allow_demo,
        "providers": providers,
    }


def _cache_stats(
    service: StockService, counts: Counter[str], shared: bool, store_problem: str | None
) -> dict[str, Any]:
    hits, stale, misses = counts[counters.HITS], counts[counters.STALE_SERVED], counts[counters.MISSES]
    served = hits + stale + misses
    settings = service.settings
    return {
        "backend": service.cache.backend,
        # Fleet-wide only when the counters came from a store the whole fleet shares.
        "stats_scope": "fleet" if shared and service.cache.backend == BACKEND_REDIS else "process",
        "store_problem": store_problem,
        "total_entries": service.cache.entry_count(),
        "hits": hits,
        "misses": misses,
        "stale_served": stale,
        "coalesced_waits": counts[counters.COALESCED_WAITS],
        "lock_takeovers": counts[counters.LOCK_TAKEOVERS],
        "redis_errors": {kind: counts[counters.redis_errors_counter(kind)] for kind in ERROR_KINDS},
        "background_refreshes": counts[counters.REFRESHES],
        "hit_rate": round((hits + stale) / served, 4) if served else 0.0,
        "cache_settings": {
            "stock_quote": settings.quote_ttl,
            "historical_data": settings.historical_ttl,
            "company_profile": settings.profile_ttl,
        },
        "stale_windows": {
            "stock_quote": settings.quote_stale_ttl,
            "historical_data": settings.historical_stale_ttl,
            "company_profile": settings.profile_stale_ttl,
        },
        "negative_ttl": settings.negative_ttl,
    }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
