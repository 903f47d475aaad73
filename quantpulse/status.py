"""The service-status document (API.md, "Status body"), assembled from the live collaborators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quantpulse.cache import stats as counters
from quantpulse.errors import FailureKind
from quantpulse.periods import SUPPORTED_PERIODS
from quantpulse.service import StockService

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


def service_status(service: StockService, *, store_ok: bool) -> dict[str, Any]:
    configured = {provider.name for provider in service.chain.providers}
    live_usable = bool(configured)
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": {
            "service": "StockService",
            "status": "operational" if store_ok and live_usable else "degraded",
            "provider_status": _provider_status(service, configured),
            "cache_stats": _cache_stats(service),
            "supported_periods": list(SUPPORTED_PERIODS),
        },
        "endpoints": ENDPOINTS,
    }


def _provider_status(service: StockService, configured: set[str]) -> dict[str, Any]:
    stats = service.stats
    providers: dict[str, Any] = {
        name: {
            "configured": name in configured,
            "state": "ok" if name in configured else "disabled",
            "calls": stats.count(counters.calls_counter(name)),
            "failures": stats.count(counters.failures_counter(name)),
            "failures_by_kind": {
                kind.value: stats.count(counters.failures_counter(name, kind)) for kind in FailureKind
            },
            "last_error": stats.last_error(name),
        }
        for name in LIVE_PROVIDERS
    }
    providers["demo"] = {"served": stats.count(counters.DEMO_SERVED)}
    primary, fallback = LIVE_PROVIDERS
    return {
        "mode": service.settings.stock_provider,
        "primary_available": primary in configured,
        "fallback_available": fallback in configured,
        "primary_provider": LIVE_PROVIDERS[primary],
        "fallback_provider": LIVE_PROVIDERS[fallback],
        "demo_allowed": service.chain.allow_demo,
        "providers": providers,
    }


def _cache_stats(service: StockService) -> dict[str, Any]:
    stats = service.stats
    hits, stale, misses = (
        stats.count(name) for name in (counters.HITS, counters.STALE_SERVED, counters.MISSES)
    )
    served = hits + stale + misses
    settings = service.settings
    return {
        "backend": service.cache.backend,
        # Counters are kept per worker process for now; fleet-wide counting is issue #4.
        "stats_scope": "process",
        "total_entries": service.cache.entry_count(),
        "hits": hits,
        "misses": misses,
        "stale_served": stale,
        "coalesced_waits": stats.count(counters.COALESCED_WAITS),
        "lock_takeovers": stats.count(counters.LOCK_TAKEOVERS),
        "hit_rate": round((hits + stale) / served, 4) if served else 0.0,
        "cache_settings": {
            "stock_quote": settings.quote_ttl,
            "historical_data": settings.historical_ttl,
            "company_profile": settings.profile_ttl,
        },
    }
