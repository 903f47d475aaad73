"""Which source serves a request: live providers in order, one verdict, honest reasons.

Order and modes follow docs/api.md: ``auto`` asks Twelve Data, then Finnhub, then allows demo;
a forced provider never falls back to demo. A not-found answer from a live provider is a
verdict (404, nobody else asked); a plan, auth, rate-limit or transient failure is not, and
the next provider is asked. What failed on the way is kept as the ``fallback_reason``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from quantpulse.cache.entry import Entry
from quantpulse.errors import Fallback, ProviderError, ProvidersExhausted, QuantPulseError, SymbolNotFound
from quantpulse.providers.base import Provider
from quantpulse.symbols import Instrument

T = TypeVar("T")
ProviderCall = Callable[[Provider, list[Instrument]], dict[Instrument, T | ProviderError]]


class ProviderChain:
    """The live providers of the configured mode, and whether demo data may stand in."""

    def __init__(self, providers: Sequence[Provider], *, allow_demo: bool, idle_reason: str):
        self.providers = tuple(providers)
        self.allow_demo = allow_demo
        self._idle_reason = idle_reason

    def fetch(
        self, instruments: Sequence[Instrument], call: ProviderCall[T]
    ) -> dict[Instrument, Entry[T] | QuantPulseError]:
        """Ask each provider for what is still unanswered; never raises for one instrument."""
        pending = list(instruments)
        failures: dict[Instrument, list[ProviderError]] = defaultdict(list)
        results: dict[Instrument, Entry[T] | QuantPulseError] = {}
        for provider in self.providers:
            if not pending:
                break
            outcomes = call(provider, pending)
            still_pending = []
            for instrument in pending:
                outcome = outcomes[instrument]
                if not isinstance(outcome, ProviderError):
                    tried = tuple(failure.fallback for failure in failures[instrument])
                    reason = _reason(tried) or None
                    results[instrument] = Entry(outcome, provider.name, time.time(), reason, notes=tried)
                elif outcome.is_verdict:
                    results[instrument] = SymbolNotFound.of(instrument)
                else:
                    failures[instrument].append(outcome)
                    still_pending.append(instrument)
            pending = still_pending
        for instrument in pending:
            results[instrument] = self._exhausted(failures[instrument])
        return results

    def _exhausted(self, failures: list[ProviderError]) -> ProvidersExhausted:
        waits = [f.retry_after for f in failures if f.retry_after]
        tried = tuple(failure.fallback for failure in failures)
        return ProvidersExhausted(
            _reason(tried) or self._idle_reason, retry_after=min(waits) if waits else None, fallbacks=tried
        )


def _reason(tried: tuple[Fallback, ...]) -> str:
    return "; ".join(str(fallback) for fallback in tried)


def one_by_one(op: Callable[[Provider, Instrument], T]) -> ProviderCall[T]:
    """A ProviderCall for operations that providers serve one instrument at a time."""

    def call(provider: Provider, instruments: list[Instrument]) -> dict[Instrument, T | ProviderError]:
        outcomes: dict[Instrument, T | ProviderError] = {}
        for instrument in instruments:
            try:
                outcomes[instrument] = op(provider, instrument)
            except ProviderError as error:
                outcomes[instrument] = error
        return outcomes

    return call
