"""The composition root: every collaborator built once, from settings, and handed in.

Nothing here is built at import; ``create_app`` calls ``build_components`` after gunicorn has
forked (no preload), so each worker has its own pools, threads and Redis connections.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from quantpulse.cache.ahead import RefreshAhead
from quantpulse.cache.engine import CacheEngine
from quantpulse.cache.locks import FillLocks
from quantpulse.cache.near import NearCache
from quantpulse.config import Settings
from quantpulse.infra.counters import Stats
from quantpulse.infra.store import Stores
from quantpulse.provider_chain import ProviderChain
from quantpulse.providers.base import Provider, UpstreamGate
from quantpulse.providers.demo import DemoProvider
from quantpulse.providers.finnhub import Finnhub
from quantpulse.providers.twelvedata import TwelveData
from quantpulse.service import Kinds, StockService
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


def build_components(settings: Settings, stores: Stores) -> Components:
    stats = Stats(stores.primary.client, stores.trouble)
    guard = build_guard(settings, stores, stats)
    kinds = Kinds.from_settings(settings)
    cache = CacheEngine(
        kinds.all(),
        stores,
        stats,
        FillLocks(settings.lock_ttl, max_hold=longest_fill(settings)),
        ThreadPoolExecutor(2, thread_name_prefix="refresh"),
        NearCache(settings.near_cache_ttl),
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
        demo=DemoProvider(),
        cache=cache,
        stats=stats,
    )
    return Components(service=service, stores=stores, guard=guard)


def build_guard(settings: Settings, stores: Stores, stats: Stats) -> UpstreamGuard:
    fingerprints = {
        "twelvedata": key_fingerprint(settings.twelvedata_api_key),
        "finnhub": key_fingerprint(settings.finnhub_api_key),
    }
    health = ProviderHealth(
        fingerprints,
        HealthSettings(
            plan_cooldown=settings.plan_cooldown,
            circuit_failures=settings.circuit_failures,
            circuit_cooldown=settings.circuit_cooldown,
            probe_ttl=int(settings.provider_timeout * 2) + 1,
        ),
    )
    return UpstreamGuard(stores, stats, CreditBudget(budget_windows(settings)), health)


def budget_windows(settings: Settings) -> dict[str, tuple[Window, ...]]:
    """The limits that are set; an unset variable means no budget of that kind."""
    minute = settings.quota_minute_seconds
    limits = {
        "twelvedata": (
            ("minute", minute, settings.twelvedata_credits_per_minute),
            ("day", minute * 1440, settings.twelvedata_credits_per_day),
        ),
        "finnhub": (
            ("second", minute / 60, settings.finnhub_calls_per_second),
            ("minute", minute, settings.finnhub_calls_per_minute),
        ),
    }
    return {
        provider: tuple(Window(name, seconds, limit) for name, seconds, limit in windows if limit)
        for provider, windows in limits.items()
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
    """The live providers of the configured mode (docs/api.md, "Providers, fallback and demo data")."""
    mode = settings.stock_provider
    common = {"timeout": settings.provider_timeout, "gate": gate}
    live: dict[str, Provider] = {}
    if settings.twelvedata_api_key and mode in ("auto", "twelvedata"):
        live["twelvedata"] = TwelveData(
            session=pooled_session(settings.batch_concurrency),
            base_url=settings.twelvedata_base_url,
            api_key=settings.twelvedata_api_key,
            **common,
        )
    if settings.finnhub_api_key and mode in ("auto", "finnhub"):
        live["finnhub"] = Finnhub(
            session=pooled_session(settings.batch_concurrency),
            base_url=settings.finnhub_base_url,
            api_key=settings.finnhub_api_key,
            executor=ThreadPoolExecutor(settings.batch_concurrency, thread_name_prefix="finnhub"),
            **common,
        )
    idle_reason = {
        "auto": "no live provider configured",
        "demo": "STOCK_PROVIDER=demo",
    }.get(mode, f"{mode} is not configured (set {mode.upper()}_API_KEY)")
    return ProviderChain(live.values(), allow_demo=mode in ("auto", "demo"), idle_reason=idle_reason)


def pooled_session(pool_size: int) -> requests.Session:
    """Keep-alive connections to a provider, enough for one batch fanned out in parallel."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
