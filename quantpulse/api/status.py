"""The service-status document (docs/api.md, "Service status"), assembled from the live collaborators.

Counters come from the shared store, so every instance reports the same fleet-wide numbers;
``stats_scope`` says ``process`` when the store was unreachable and only local numbers show.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from quantpulse.errors import FailureKind
from quantpulse.infra import counters
from quantpulse.infra.store import BACKEND_REDIS, ERROR_KINDS
from quantpulse.periods import SUPPORTED_PERIODS
from quantpulse.providers import catalog
from quantpulse.service import StockService
from quantpulse.streaming.registry import FleetStreams
from quantpulse.upstream.guard import UpstreamGuard
from quantpulse.upstream.health import STATE_COOLDOWN, STATE_DISABLED, STATE_OK

LIVE_PROVIDERS = {provider.name: provider.title for provider in catalog.LIVE_PROVIDERS}
# Not in the chain of the configured mode (no key, or another mode): by design, not a fault.
# ``disabled`` is kept for a configured key the provider rejected.
STATE_NOT_CONFIGURED = "not_configured"
PROVIDER_STATES = (STATE_OK, STATE_COOLDOWN, STATE_DISABLED, STATE_NOT_CONFIGURED)
ENDPOINTS = {
    "quote": "/stock/{symbol}",
    "historical": "/stock/{symbol}/historical?period=1mo",
    "profile": "/stock/{symbol}/profile",
    "batch": "POST /stock/quotes",
    "status": "/stock/service/status",
    "clear_cache": "DELETE /stock/{symbol}/cache",
    "health": "/health",
    "ready": "/health/ready",
    "stream": "/stock/stream?symbols=A,B",
    "websocket": "/stock/ws",
    "live": "/live?symbols=A,B",
}


def service_status(
    service: StockService, guard: UpstreamGuard, fleet: FleetStreams, *, store_problem: str | None
) -> dict[str, Any]:
    """The status body: ``operational`` needs the store and a usable live provider, or demo by design."""
    health = provider_health(service, guard)
    usable = {name for name, status in health.items() if status["state"] == STATE_OK}
    healthy = store_problem is None and (bool(usable) or demo_only(service))
    counts, last_errors, shared = service.stats.snapshot()
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": {
            "service": "StockService",
            "status": "operational" if healthy else "degraded",
            "provider_status": _provider_status(service, usable, health, counts, last_errors),
            "cache_stats": _cache_stats(service, counts, shared, store_problem),
            "supported_periods": list(SUPPORTED_PERIODS),
            "streams": {
                "open": fleet.open,
                "instruments": fleet.instruments,
                "pushes": counts[counters.STREAM_PUSHES],
            },
        },
        "endpoints": ENDPOINTS,
    }


def provider_health(service: StockService, guard: UpstreamGuard) -> dict[str, dict[str, Any]]:
    """Each live provider's ``state``, ``cooldown_until`` and ``budget``, as status and metrics show them.

    A provider outside the mode's chain is ``not_configured``, whatever the store remembers of
    an earlier configuration.
    """
    configured = {provider.name for provider in service.chain.providers}
    unconfigured = {"state": STATE_NOT_CONFIGURED, "cooldown_until": None}
    return {
        name: guard.status(name) | ({} if name in configured else unconfigured) for name in LIVE_PROVIDERS
    }


def demo_only(service: StockService) -> bool:
    """Demo by design: no live provider configured at all, in a mode that allows demo data."""
    return service.chain.allow_demo and not service.chain.providers


def _provider_status(
    service: StockService,
    usable: set[str],
    health: dict[str, dict[str, Any]],
    counts: Counter[str],
    last_errors: dict[str, str],
) -> dict[str, Any]:
    providers: dict[str, Any] = {
        name: {
            "configured": health[name]["state"] != STATE_NOT_CONFIGURED,
            "state": health[name]["state"],
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
        "demo_only": demo_only(service),
        "demo_allowed": service.chain.allow_demo,
        "providers": providers,
    }


def _cache_stats(
    service: StockService, counts: Counter[str], shared: bool, store_problem: str | None
) -> dict[str, Any]:
    settings = service.settings
    return {
        "backend": service.backend,
        # Fleet-wide only when the counters came from a store the whole fleet shares.
        "stats_scope": "fleet" if shared and service.backend == BACKEND_REDIS else "process",
        "store_problem": store_problem,
        "total_entries": service.entry_count(),
        "hits": counts[counters.HITS],
        "misses": counts[counters.MISSES],
        "stale_served": counts[counters.STALE_SERVED],
        "coalesced_waits": counts[counters.COALESCED_WAITS],
        "lock_takeovers": counts[counters.LOCK_TAKEOVERS],
        "redis_errors": {kind: counts[counters.redis_errors_counter(kind)] for kind in ERROR_KINDS},
        "background_refreshes": counts[counters.REFRESHES],
        "hit_rate": hit_rate(counts),
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


def hit_rate(counts: Counter[str]) -> float:
    """(hits + stale served) / (hits + stale served + misses), fleet-wide."""
    hits, stale, misses = counts[counters.HITS], counts[counters.STALE_SERVED], counts[counters.MISSES]
    served = hits + stale + misses
    return round((hits + stale) / served, 4) if served else 0.0


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
