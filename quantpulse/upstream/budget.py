"""A credit budget per provider, shared by the whole fleet through the store.

Twelve Data's free plan gives 8 credits a minute and 800 a day (a batch of N symbols costs N, a
profile 10); Finnhub allows 60 calls a minute and 30 a second. Each limit is a fixed window,
counted in a field of one hash per provider and window kind; a Lua script checks every window
and reserves the cost in all of them at once, so concurrent workers can never overspend between
a check and a charge. The hashes have no expiry (ended windows are pruned by the script), so a
``volatile-lru`` Redis that is full evicts cache entries, never a count of credits spent.

A request sent just before a window ends may reach the provider just after, and count there in
the next window. So a request sent within ``edge`` of the end is charged to both windows: every
provider window then holds at most its limit, as long as requests arrive within ``edge``.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from quantpulse.infra.namespace import NAMESPACE
from quantpulse.infra.store import retry_idempotent

# Each window kind of a provider is one hash without expiry (so no eviction policy can drop a
# count and hand out a plan twice): field = window number, value = credits charged in it.
# The previous release counted each window in a string key of its own (``<hash>:<number>``, with
# an expiry); while a rolling deploy runs both releases, this one also reads and charges those,
# so the two share one budget. (Drop the ``legacy`` half once no worker of that release is left.)
# KEYS: per window, the hash and the legacy key. ARGV: cost, partial (1: grant what fits), then
# per window its limit, number and the legacy key's expiry (ms). Ended windows are pruned as new
# ones are charged. Returns {granted, refusing window (0: none)}.
_USED = """
local function used(hash, legacy, number)
  local counted = tonumber(redis.call('hget', hash, number) or '0')
  local previous_release = tonumber(redis.call('get', legacy) or '0')
  if previous_release > counted then return previous_release end
  return counted
end
"""
_RESERVE = (
    _USED
    + """
local cost = tonumber(ARGV[1])
local grant = cost
local refused = 0
local windows = #KEYS / 2
for i = 1, windows do
  local left = tonumber(ARGV[3 * i]) - used(KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i + 1])
  if left < grant then grant = left; refused = i end
end
if grant < 1 or (ARGV[2] ~= '1' and grant < cost) then return {0, refused} end
for i = 1, windows do
  local hash, legacy, number = KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i + 1]
  redis.call('hset', hash, number, used(hash, legacy, number) + grant)
  redis.call('incrby', legacy, grant)
  redis.call('pexpire', legacy, ARGV[3 * i + 2])
  for _, field in ipairs(redis.call('hkeys', hash)) do
    if tonumber(field) < tonumber(number) - 1 then redis.call('hdel', hash, field) end
  end
end
return {grant, 0}
"""
)
# Raise a window's count to what the provider says is used; never lower it.
_CORRECT = """
local used = tonumber(ARGV[2])
if used > tonumber(redis.call('hget', KEYS[1], ARGV[1]) or '0') then
  redis.call('hset', KEYS[1], ARGV[1], used)
end
return 0
"""
# What is used in one window, this release's count or the previous release's, whichever is more.
_READ = (
    _USED
    + """
return used(KEYS[1], KEYS[2], ARGV[1])
"""
)


@dataclass(frozen=True)
class Window:
    """A fixed window of ``seconds`` allowing ``limit`` credits."""

    name: str
    seconds: float
    limit: int

    @property
    def edge(self) -> float:
        """How late a request may reach the provider and still be counted right: a second, or a
        quarter of a shorter window (Finnhub's second, a compressed test minute)."""
        return min(1.0, self.seconds / 4)

    def key(self, provider: str) -> str:
        """The hash of this window kind: ``qp:v1:budget:twelvedata:minute``."""
        return f"{NAMESPACE}:budget:{provider}:{self.name}"

    def legacy_key(self, provider: str, number: int) -> str:
        """Where the previous release counted window ``number``."""
        return f"{self.key(provider)}:{number}"

    def legacy_expiry_ms(self) -> int:
        return int(self.seconds * 2000)

    def number(self, now: float) -> int:
        """Which window ``now`` falls in (its field in the hash)."""
        return int(now // self.seconds)

    def numbers(self, now: float) -> list[int]:
        """The windows a request sent ``now`` may be counted in by the provider."""
        first, late = self.number(now), self.number(now + self.edge)
        return [first] if late == first else [first, late]

    def resets_in(self, now: float) -> float:
        return (self.number(now) + 1) * self.seconds - now


@dataclass(frozen=True)
class Reservation:
    granted: int
    refused_by: Window | None = None
    retry_after: int | None = None


class CreditBudget:
    """The windows of each provider; a provider without windows has no budget."""

    def __init__(self, windows: dict[str, tuple[Window, ...]]) -> None:
        self._windows = {provider: ws for provider, ws in windows.items() if ws}

    def limited(self, provider: str) -> bool:
        return provider in self._windows

    def providers(self) -> tuple[str, ...]:
        return tuple(self._windows)

    def limits(self, provider: str) -> dict[str, int]:
        return {window.name: window.limit for window in self._windows.get(provider, ())}

    def reserve(
        self, client: redis.Redis, provider: str, cost: int, now: float, *, partial: bool = False
    ) -> Reservation:
        """Charge ``cost`` (or, with ``partial``, as much of it as fits) to every window."""
        windows = self._windows.get(provider)
        if not windows:
            return Reservation(cost)
        args: list[float | int] = [cost, int(partial)]
        keys: list[str] = []
        owners: list[Window] = []
        for window in windows:
            for number in window.numbers(now):
                keys += [window.key(provider), window.legacy_key(provider, number)]
                owners.append(window)
                args += [window.limit, number, window.legacy_expiry_ms()]
        granted, refused = client.eval(_RESERVE, len(keys), *keys, *args)
        if granted:
            return Reservation(int(granted))
        window = owners[int(refused) - 1] if refused else owners[0]
        return Reservation(0, window, max(1, round(window.resets_in(now) + window.edge)))

    def left(self, client: redis.Redis, provider: str, now: float) -> dict[str, int]:
        windows = self._windows.get(provider, ())
        if not windows:
            return {}

        def read() -> list[int]:
            pipe = client.pipeline(transaction=False)
            for window in windows:
                number = window.number(now)
                pipe.eval(_READ, 2, window.key(provider), window.legacy_key(provider, number), number)
            return pipe.execute()

        used = retry_idempotent(read)
        return {w.name: max(0, w.limit - int(u or 0)) for w, u in zip(windows, used, strict=True)}

    def correct(self, client: redis.Redis, provider: str, window_name: str, left: int, now: float) -> None:
        """The provider reported ``left`` credits in a window: trust it when it says fewer."""
        for window in self._windows.get(provider, ()):
            if window.name == window_name:
                used = max(0, window.limit - left)
                client.eval(_CORRECT, 1, window.key(provider), window.number(now), used)
