"""The composition root: every collaborator built once, from settings, and handed in.

Nothing here is built at import; ``create_app`` calls ``build_components`` after gunicorn has
forked (no preload), so each worker has its own pools, threads and Redis connections.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flask_caching.backends import SimpleCache

from quantpulse.access.keys import KeyStore
from quantpulse.access.usage import UsageRecorder
from quantpulse.api.rendering import RENDERERS
from quantpulse.cache.ahead import RefreshAhead
from quantpulse.cache.engine import CacheEngine
from quantpulse.cache.locks import FillLocks
from quantpulse.config import Settings
from quantpulse.infra.counters import Stats
from quantpulse.infra.store import BACKEND_REDIS, Stores
from quantpulse.market import MarketCalendar
from quantpulse.providers.base import UpstreamGate
from quantpulse.providers.catalog import LIVE_PROVIDERS
from quantpulse.providers.demo import DemoProvider
from quantpulse.service import Kinds, StockService
from quantpulse.service.chain import ProviderChain
from quantpulse.service.hot import HotAnswers
from quantpulse.streaming import LiveQuotes
from quantpulse.streaming.hub import QuoteHub
from quantpulse.streaming.registry import StreamRegistry
from quantpulse.upstream.budget import CreditBudget, Window
from quantpulse.upstream.guard import UpstreamGuard
from quantpulse.upstream.health import HealthSettings, ProviderHealth

HOT_READS = 3  # reads of one key within a minute that make it worth refreshing ahead


@dataclass(frozen=True)
class Components:
    """What the composition root built, kept in ``app.extensions`` for the views and the CLI."""

    service: StockService
    stores: Stores
    guard: UpstreamGuard
    streams: LiveQuotes
    keys: KeyStore | None  # None without the shared store: keys need REDIS_URL
    usage: UsageRecorder | None  # likewise


def build_components(settings: Settings, stores: Stores) -> Components:
    stats = Stats(stores.primary.client, stores.trouble)
    usage = build_usage(settings, stores)
    guard = build_guard(settings, stores, stats, on_spend=usage.charge if usage else _no_usage)
    market = MarketCalendar.from_settings(settings)
    kinds = Kinds.from_settings(settings, market)
    cache = CacheEngine(
        kinds.all(),
        stores,
        stats,
        FillLocks(settings.lock_ttl, max_hold=longest_fill(settings)),
        ThreadPoolExecutor(2, thread_name_prefix="refresh"),
        RefreshAhead(
            fraction=settings.refresh_ahead,
            hot_reads=HOT_READS,
            allowed=guard.has_headroom,
        ),
        negative_ttl=settings.negative_ttl,
        failure_ttl=settings.failure_ttl,
        wait_timeout=fill_wait_timeout(settings),
    )
    service = StockService(
        settings=settings,
        kinds=kinds,
        chain=build_chain(settings, guard),
        demo=DemoProvider(market=market),
        cache=cache,
        stats=stats,
        hot=HotAnswers(settings.near_cache_ttl, local_cache(), local_cache()),
        render=RENDERERS,
    )
    return Components(
        service=service,
        stores=stores,
        guard=guard,
        streams=build_streams(settings, stores, service),
        keys=build_keys(settings, stores),
        usage=usage,
    )


def build_keys(settings: Settings, stores: Stores) -> KeyStore | None:
    """Keys are read from the shared store only (never from a worker's fallback)."""
    if not shared(settings, stores):
        return None
    return KeyStore(lambda: stores.primary.client, [name for name, _ in settings.api_tiers])


def build_usage(settings: Settings, stores: Stores) -> UsageRecorder | None:
    """Usage is counted in the shared store only: a worker's own numbers would mislead."""
    if not shared(settings, stores):
        return None
    return UsageRecorder(lambda: stores.primary.client, settings.usage_retention_days)


def _no_usage(provider: str, credits: int) -> None:
    """Without the shared store nothing is counted per client."""


def shared(settings: Settings, stores: Stores) -> bool:
    return bool(settings.redis_url) and stores.backend == BACKEND_REDIS


def build_streams(settings: Settings, stores: Stores, service: StockService) -> LiveQuotes:
    """The worker's live-quote hub, woken by every fill the fleet writes."""
    registry = StreamRegistry(stores, settings.stream_max_per_client)
    hub = QuoteHub(service, service.stats, registry)
    registry.follow(hub.labels)
    service.cache.on_fill(hub.heard_fill)
    return LiveQuotes(hub, registry, settings.stream_heartbeat, settings.stream_max_per_client)


def local_cache(max_entries: int = 2000) -> SimpleCache:
    """A bounded in-process cache (flask-caching's SimpleCache) that shares its values instead of
    pickling a copy per read: what it holds is immutable."""
    cache = SimpleCache(threshold=max_entries, default_timeout=60)
    cache.serializer = _SameObject()
    return cache


class _SameObject:
    @staticmethod
    def dumps(value: Any) -> Any:
        return value

    @staticmethod
    def loads(value: Any) -> Any:
        return value


def build_guard(
    settings: Settings, stores: Stores, stats: Stats, *, on_spend: Callable[[str, int], object]
) -> UpstreamGuard:
    health = ProviderHealth(
        {p.name: key_fingerprint(p.api_key(settings)) for p in LIVE_PROVIDERS},
        HealthSettings(
            plan_cooldown=settings.plan_cooldown,
            circuit_failures=settings.circuit_failures,
            circuit_cooldown=settings.circuit_cooldown,
            probe_ttl=int(settings.provider_timeout * 2) + 1,
        ),
    )
    credits_headers = {p.name: (p.credits_header, p.credits_window) for p in LIVE_PROVIDERS}
    budget = CreditBudget(budget_windows(settings))
    return UpstreamGuard(stores, stats, budget, health, credits_headers, on_spend=on_spend)


def budget_windows(settings: Settings) -> dict[str, tuple[Window, ...]]:
    """The limits that are set; an unset variable means no budget of that kind."""
    return {
        p.name: tuple(Window(w.name, w.seconds, w.limit) for w in p.limits(settings) if w.limit)
        for p in LIVE_PROVIDERS
    }


def key_fingerprint(api_key: str | None) -> str:
    """Identifies a key in store keys (so a new key clears an auth ban) without revealing it."""
    return hashlib.sha256((api_key or "").encode()).hexdigest()[:12]


def longest_fill(settings: Settings) -> float:
    """How long a live fill may take: two providers, two attempts each, and a profile's market
    cap from Finnhub (two more). A fill still running after that is hung: its lock is let go."""
    return settings.provider_timeout * 6


def fill_wait_timeout(settings: Settings) -> float:
    """Longest a waiter waits for another worker's fill: a full fill, then a take-over's lock."""
    return longest_fill(settings) + settings.lock_ttl


def build_chain(settings: Settings, gate: UpstreamGate) -> ProviderChain:
    """The live providers of the configured mode, in order (docs/api.md, "Providers, fallback and
    demo data")."""
    mode = settings.stock_provider
    live = [p.build(settings, gate) for p in LIVE_PROVIDERS if p.configured(settings)]
    idle_reason = {
        "auto": "no live provider configured",
        "demo": "STOCK_PROVIDER=demo",
    }.get(mode, f"{mode} is not configured (set {mode.upper()}_API_KEY)")
    return ProviderChain(live, allow_demo=mode in ("auto", "demo"), idle_reason=idle_reason)
