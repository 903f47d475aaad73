"""The gate every upstream request passes: health and budget before, accounting after.

A request that a provider is known to refuse (cooldown, disabled key, plan) or that the
fleet's budget cannot pay for is never sent: the provider raises a ``skipped`` ProviderError
and the chain moves on (next provider, stale copy, demo). After an answer, the guard counts it,
teaches provider health, and lets the provider's own credit headers correct the budget.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis

from quantpulse.errors import ProviderError, budget_unreachable, over_budget
from quantpulse.infra.counters import Stats
from quantpulse.infra.store import Stores
from quantpulse.upstream.budget import CreditBudget
from quantpulse.upstream.health import ProviderHealth

T = TypeVar("T")


class UpstreamGuard:
    def __init__(
        self,
        stores: Stores,
        stats: Stats,
        budget: CreditBudget,
        health: ProviderHealth,
        credits_headers: Mapping[str, tuple[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
        on_spend: Callable[[str, int], object] = lambda provider, credits: None,
    ) -> None:
        """``credits_headers``: per provider, the answer header that says how many credits are
        left and which budget window it describes. ``on_spend`` hears the credits of every call
        let through (usage charges them to the client that caused it)."""
        self._stores = stores
        self._stats = stats
        self._budget = budget
        self._health = health
        self._credits_headers = dict(credits_headers or {})
        self._clock = clock
        self._on_spend = on_spend

    def admit(
        self, provider: str, endpoint: str, exchange: str | None, cost: int, *, partial: bool = False
    ) -> int:
        """Charge ``cost`` and return it, or raise a ``skipped`` ProviderError if it must not be sent.

        With ``partial`` (a batch), as many credits as are left are granted, at least one.
        """
        now = self._clock()
        blocked = self._on_store(
            lambda client: self._health.blocked(client, provider, endpoint, exchange, now)
        )
        if blocked is not None:
            raise blocked
        granted = self._reserve(provider, cost, now, partial=partial)
        self._on_spend(provider, granted)
        return granted

    def _reserve(self, provider: str, cost: int, now: float, *, partial: bool) -> int:
        if not self._budget.limited(provider):
            return cost
        reservation = self._on_shared(
            provider, lambda client: self._budget.reserve(client, provider, cost, now, partial=partial)
        )
        if not reservation.granted:
            raise over_budget(provider, reservation.retry_after)
        return reservation.granted

    def upstream_call(
        self,
        provider: str,
        endpoint: str,
        error: ProviderError | None,
        *,
        exchange: str | None = None,
        headers: Mapping[str, str] | None = None,
        seconds: float = 0.0,
    ) -> None:
        """After every upstream answer: count it, learn from it, correct the budget from its headers."""
        self._stats.upstream_call(provider, endpoint, error, seconds)
        now = self._clock()
        self._on_store(lambda client: self._health.observe(client, provider, endpoint, exchange, error, now))
        header, window = self._credits_headers.get(provider, ("", ""))
        left = (headers or {}).get(header)
        if left is not None and left.isdigit() and self._budget.limited(provider):
            with contextlib.suppress(ProviderError):  # a correction can wait for the next answer
                self._on_shared(
                    provider, lambda client: self._budget.correct(client, provider, window, int(left), now)
                )

    def learn(self, provider: str, endpoint: str, exchange: str | None, error: ProviderError) -> None:
        """A failure reported inside a successful answer (one item of a batch)."""
        now = self._clock()
        self._on_store(lambda client: self._health.observe(client, provider, endpoint, exchange, error, now))

    def has_headroom(self, share: float = 0.5) -> bool:
        """True while every budgeted window still has more than ``share`` of its credits left."""
        now = self._clock()
        for provider in self._budget.providers():
            try:
                left = self._on_shared(provider, lambda client, p=provider: self._budget.left(client, p, now))
            except ProviderError:
                return False
            limits = self._budget.limits(provider)
            if any(left[name] <= limits[name] * share for name in left):
                return False
        return True

    def status(self, provider: str) -> dict[str, Any]:
        now = self._clock()
        health = self._on_store(lambda client: self._health.state(client, provider, now))
        return {**health, "budget": self._budget_left(provider, now)}

    def _budget_left(self, provider: str, now: float) -> dict[str, int | None] | None:
        if not self._budget.limited(provider):
            return None
        try:
            left = self._on_shared(provider, lambda client: self._budget.left(client, provider, now))
        except ProviderError:
            return {"minute_left": None, "day_left": None}
        return {"minute_left": left.get("minute"), "day_left": left.get("day")}

    def _on_store(self, action: Callable[[redis.Redis], T]) -> T:
        """Health may live on the fallback store for a while: a per-process view beats none."""
        store = self._stores.active()
        try:
            return action(store.client)
        except redis.RedisError as error:
            return action(self._stores.failed(store, error).client)

    def _on_shared(self, provider: str, action: Callable[[redis.Redis], T]) -> T:
        """Budgets live only in the shared store: a per-process budget would multiply the plan
        by the number of processes, so while it is unreachable the provider fails closed."""
        if self._stores.shared_down:
            raise budget_unreachable(provider)
        try:
            return action(self._stores.primary.client)
        except redis.RedisError as error:
            self._stores.note(self._stores.primary, error)
            raise budget_unreachable(provider) from error
