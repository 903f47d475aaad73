"""What QuantPulse knows about each live provider, in one place: its names, key, budget windows,
the header by which it reports the credits left, and how to build its adapter.

The composition root builds providers, budgets and the guard from these; the status page, the
metrics and the CLI name and describe providers from them. Adding a provider is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from quantpulse.config import Settings
from quantpulse.market import MarketCalendar
from quantpulse.providers.base import Provider, UpstreamGate
from quantpulse.providers.finnhub import Finnhub
from quantpulse.providers.twelvedata import TwelveData


@dataclass(frozen=True)
class BudgetLimit:
    """One fixed window of a plan: ``limit`` credits per ``seconds``; unset means no limit."""

    name: str
    seconds: float
    limit: int | None


@dataclass(frozen=True)
class ProviderDescriptor:
    name: str  # in modes, store keys, statistics and metrics
    title: str  # as the status page names it
    key_variable: str
    credits_header: str  # how many credits the answer says are left ...
    credits_window: str  # ... in which of our budget windows
    api_key: Callable[[Settings], str | None]
    limits: Callable[[Settings], tuple[BudgetLimit, ...]]
    build: Callable[[Settings, UpstreamGate], Provider]

    def configured(self, settings: Settings) -> bool:
        """Its key is set and the mode includes it (``auto`` or its own)."""
        return bool(self.api_key(settings)) and self.used_by(settings.stock_provider)

    def used_by(self, mode: str) -> bool:
        return mode in ("auto", self.name)


def pooled_session(pool_size: int) -> requests.Session:
    """Keep-alive connections to a provider, enough for one batch fanned out in parallel."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _twelvedata(settings: Settings, gate: UpstreamGate) -> Provider:
    return TwelveData(
        session=pooled_session(settings.batch_concurrency),
        base_url=settings.twelvedata_base_url,
        api_key=settings.twelvedata_api_key or "",
        timeout=settings.provider_timeout,
        gate=gate,
    )


def _finnhub(settings: Settings, gate: UpstreamGate) -> Provider:
    return Finnhub(
        session=pooled_session(settings.batch_concurrency),
        base_url=settings.finnhub_base_url,
        api_key=settings.finnhub_api_key or "",
        executor=ThreadPoolExecutor(settings.batch_concurrency, thread_name_prefix="finnhub"),
        market=MarketCalendar.from_settings(settings),
        timeout=settings.provider_timeout,
        gate=gate,
    )


# In the order ``auto`` asks them: Twelve Data first, Finnhub as the fallback.
LIVE_PROVIDERS: tuple[ProviderDescriptor, ...] = (
    ProviderDescriptor(
        name="twelvedata",
        title="TwelveData",
        key_variable="TWELVEDATA_API_KEY",
        credits_header="api-credits-left",
        credits_window="minute",
        api_key=lambda s: s.twelvedata_api_key,
        limits=lambda s: (
            BudgetLimit("minute", s.quota_minute_seconds, s.twelvedata_credits_per_minute),
            BudgetLimit("day", s.quota_minute_seconds * 1440, s.twelvedata_credits_per_day),
        ),
        build=_twelvedata,
    ),
    ProviderDescriptor(
        name="finnhub",
        title="Finnhub",
        key_variable="FINNHUB_API_KEY",
        credits_header="X-Ratelimit-Remaining",
        credits_window="minute",
        api_key=lambda s: s.finnhub_api_key,
        limits=lambda s: (
            BudgetLimit("second", s.quota_minute_seconds / 60, s.finnhub_calls_per_second),
            BudgetLimit("minute", s.quota_minute_seconds, s.finnhub_calls_per_minute),
        ),
        build=_finnhub,
    ),
)
BY_NAME = {descriptor.name: descriptor for descriptor in LIVE_PROVIDERS}
