"""Quotes, history and profiles: the cache first, then the provider chain, then demo data.

Demo data is produced here, after the cache, and never written under an instrument's key, so
it can never come back later as stale real data (docs/api.md, "Providers, fallback and demo data").
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import redis

import quantpulse.companies as companies
from quantpulse.cache.engine import CacheEngine, Fetched, FetchMany, Outcome
from quantpulse.cache.entry import HIT, MISS, STALE, CacheKey, Entry, Failed, Kind, Missing, Served
from quantpulse.config import Settings
from quantpulse.errors import (
    BadRequest,
    Fallback,
    ProviderError,
    ProvidersExhausted,
    QuantPulseError,
    ServiceUnavailable,
    SymbolNotFound,
)
from quantpulse.infra import counters
from quantpulse.infra.counters import Stats
from quantpulse.market import MarketCalendar
from quantpulse.models import History, Profile, Quote
from quantpulse.periods import PERIODS, Period
from quantpulse.providers.base import Provider
from quantpulse.service.chain import ProviderCall, ProviderChain, one_by_one
from quantpulse.service.hot import HotAnswers, Kept, Rendered, Renderers
from quantpulse.symbols import Instrument, ParsedSymbol, parse_symbol

T = TypeVar("T")
MAX_BATCH_INSTRUMENTS = 20
TARGETS_KEPT = 4096  # request spellings resolved to cache keys, per worker
FRESHNESS_KEPT = 4096  # quote entries whose freshness limit is remembered, per worker
DEMO_SOURCE = "demo"
MIN_RECHECK = 1.0  # seconds: the soonest a live stream reads a refreshing or failing quote again


@dataclass(frozen=True)
class Kinds:
    """The cached data types with their TTLs from settings."""

    quote: Kind
    history: Kind
    profile: Kind

    @classmethod
    def from_settings(cls, settings: Settings, market: MarketCalendar) -> Kinds:
        """Quotes are fresh as the market calendar says (until the next open, once a close has
        settled); the other kinds for their TTL."""

        # Asked on every hit of a hot key (refresh-ahead) and the same for every read of an entry:
        # worked out once per entry (12 µs while the market is shut), then remembered.
        @functools.lru_cache(maxsize=FRESHNESS_KEPT)
        def fresh_until(fetched_at: float, exchange: str) -> float:
            return market.fresh_until(fetched_at, settings.quote_ttl, exchange)

        def quote_fresh_until(entry: Entry[Quote]) -> float:
            return fresh_until(entry.fetched_at, entry.value.exchange)

        return cls(
            quote=Kind("quote", Quote, settings.quote_ttl, settings.quote_stale_ttl, quote_fresh_until),
            history=Kind("history", History, settings.historical_ttl, settings.historical_stale_ttl),
            profile=Kind("profile", Profile, settings.profile_ttl, settings.profile_stale_ttl),
        )

    def all(self) -> tuple[Kind, ...]:
        return (self.quote, self.history, self.profile)


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What a route returns, flat: the data and the truth about how it was served.

    ``cache`` is ``hit``, ``miss``, ``stale`` or ``coalesced``; ``fetched_at`` is when we got the
    data from its source (epoch seconds). The HTTP layer needs nothing from the cache to render it.
    """

    instrument: Instrument
    value: T
    source: str
    cache: str
    fetched_at: float
    fallback_reason: str | None = None
    period: Period | None = None
    # The body without ``service_info``, when the service kept one for this entry.
    rendered: Rendered | None = field(default=None, compare=False, repr=False)
    # Why other providers did not answer, as data; known for what this process fetched just now.
    fallbacks: tuple[Fallback, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of(
        cls,
        instrument: Instrument,
        served: Served[T],
        period: Period | None,
        rendered: Rendered | None = None,
    ) -> Answer[T]:
        entry = served.entry
        return cls(
            instrument,
            entry.value,
            entry.source,
            served.cache,
            entry.fetched_at,
            entry.fallback_reason,
            period,
            rendered,
            entry.notes,
        )

    @property
    def is_demo(self) -> bool:
        return self.source == DEMO_SOURCE

    @property
    def cached(self) -> bool:
        """True when this answer caused no upstream call (never for demo data)."""
        return self.cache != MISS and not self.is_demo

    @property
    def stale(self) -> bool:
        return self.cache == STALE

    @property
    def service_info(self) -> Answer[T]:
        """The answer is flat; responses render its serving fields as one ``service_info`` object."""
        return self

    @property
    def fetched_at_utc(self) -> datetime:
        return datetime.fromtimestamp(self.fetched_at, UTC)

    def age_seconds(self, now: float | None = None) -> float:
        return round(max(0.0, (now or time.time()) - self.fetched_at), 1)


@dataclass(frozen=True)
class Source(Generic[T]):
    """Where one kind's data comes from when no cache has it: the providers, then demo data.

    ``complete`` finishes a fetched entry before it is cached (once per fill, never per read).
    """

    kind: Kind
    call: ProviderCall[T]
    demo: Callable[[Instrument], T]
    complete: Callable[[Instrument, Entry[T]], Entry[T]] | None = None
    period: Period | None = None


@dataclass(frozen=True)
class _Target:
    """A request's cache key, resolved once per spelling, and how to refresh it ahead."""

    key: CacheKey
    fetch_many: FetchMany


@dataclass(frozen=True)
class Watched:
    """A live stream's view of one instrument: its quote (or error) now, and when to look again
    (epoch seconds)."""

    outcome: Answer[Quote] | QuantPulseError
    recheck_at: float


@dataclass(frozen=True)
class BatchResult:
    """Per requested string: a served quote or the error the single route would have given."""

    quotes: dict[str, Answer[Quote]]
    errors: dict[str, QuantPulseError]

    @property
    def total_requested(self) -> int:
        return len(self.quotes) + len(self.errors)


class StockService:
    def __init__(
        self,
        *,
        settings: Settings,
        kinds: Kinds,
        chain: ProviderChain,
        demo: Provider,
        cache: CacheEngine,
        stats: Stats,
        hot: HotAnswers,
        render: Renderers,
    ) -> None:
        """``hot`` keeps served answers and their bodies per worker; ``render`` (by kind name,
        from the HTTP layer) renders an answer's body once, to be kept with its entry."""
        self.settings = settings
        self.chain = chain
        self.cache = cache
        self.stats = stats
        self.kinds = kinds
        self._demo = demo
        self._hot = hot
        self._render = render
        # Spellings seen recently (``reliance``, ``RELIANCE.NS``...) and what they resolve to.
        self._targets = functools.lru_cache(maxsize=TARGETS_KEPT)(self._target)
        cache.on_fill(hot.drop)  # a newer entry landed somewhere: the kept answer is outdated

    def instrument(self, parsed: ParsedSymbol) -> Instrument:
        return parsed.resolve(self.settings.default_exchange)

    def quote(self, parsed: ParsedSymbol) -> Answer[Quote]:
        return _single_outcome(self._quotes([self.instrument(parsed)]))

    def history(self, parsed: ParsedSymbol, period: Period) -> Answer[History]:
        return _single_outcome(self._serve(self._source("history", period), [self.instrument(parsed)]))

    def profile(self, parsed: ParsedSymbol) -> Answer[Profile]:
        return _single_outcome(self._serve(self._source("profile"), [self.instrument(parsed)]))

    def cached(self, kind: str, raw_symbol: str, variant: str = "") -> Answer[Any] | None:
        """An answer this worker already holds (fresh, or stale while its refresh runs), counted
        as what it is.

        For the HTTP layer's shortest path: ``None`` (not held, or input that is not plainly
        valid) sends the caller the whole way, through ``quote``, ``history`` or ``profile``,
        which also give bad input its error.
        """
        target = self._targets(kind, raw_symbol, variant)
        if target is None:
            return None
        kept = self._hot.get(target.key, time.time())
        return None if kept is None else self._kept_answer(target.key, kept, target.fetch_many)

    def quotes(self, raw_symbols: Sequence[str]) -> BatchResult:
        """Every distinct string gets an answer; names of one instrument share one fetch."""
        errors: dict[str, QuantPulseError] = {}
        wanted: dict[str, Instrument] = {}
        for raw in dict.fromkeys(raw_symbols):
            try:
                wanted[raw] = self.instrument(parse_symbol(raw))
            except QuantPulseError as error:
                errors[raw] = error
        instruments = list(dict.fromkeys(wanted.values()))
        if len(instruments) > MAX_BATCH_INSTRUMENTS:
            raise BadRequest(
                f"{len(instruments)} instruments requested; at most {MAX_BATCH_INSTRUMENTS} per batch.",
                hint="Split the list into several requests.",
            )
        outcomes = self._quotes(instruments)
        quotes = {}
        for raw, instrument in wanted.items():
            outcome = outcomes[instrument]
            if isinstance(outcome, QuantPulseError):
                errors[raw] = outcome
            else:
                quotes[raw] = outcome
        return BatchResult(quotes=quotes, errors=errors)

    def watch(self, instruments: Sequence[Instrument]) -> dict[Instrument, Watched]:
        """Quotes for live streams, read as ``GET /stock/{symbol}`` reads them (one fill for the
        fleet, a stale copy served while one refresh runs) but not counted as client reads.

        Each comes with when it is worth reading again: when it goes stale (its refresh starts
        then, once for the fleet), or when a verdict or shared failure runs out. A landed fill
        is heard sooner (``watch_key``).
        """
        self.cache.fills_heard()  # listening before the first read, so no landed fill is missed
        source: Source[Quote] = self._source("quote")
        keys = {CacheKey(source.kind, _subject(i)): i for i in instruments}
        outcomes = self.cache.get_or_fetch_many(list(keys), self._fetcher(keys, source), counted=False)
        now = time.time()
        return {
            keys[key]: Watched(
                self._answer(key, keys[key], outcome, source, counted=False),
                self._recheck_at(key, outcome, now),
            )
            for key, outcome in outcomes.items()
        }

    def watch_key(self, instrument: Instrument) -> str:
        """The store key whose fills (``CacheEngine.on_fill``) bring this instrument's new quote."""
        return CacheKey(self.kinds.quote, _subject(instrument)).redis_key

    def forget(self, instrument: Instrument) -> int:
        """Drop every cached entry of one instrument, its negative entry too; returns how many existed."""
        subject = _subject(instrument)
        keys = [CacheKey(self.kinds.quote, subject), CacheKey(self.kinds.profile, subject)]
        keys += [CacheKey(self.kinds.history, subject, name) for name in PERIODS]
        self._hot.drop(key.redis_key for key in keys)
        try:
            return self.cache.delete([key.redis_key for key in keys] + [keys[0].missing_key])
        except redis.RedisError:
            raise ServiceUnavailable(
                "The shared cache refused the request; nothing was dropped.", retry_after=5
            ) from None

    @property
    def backend(self) -> str:
        """Which store the cache uses: ``redis`` or ``embedded``."""
        return self.cache.backend

    def entry_count(self) -> int | None:
        return self.cache.entry_count()

    def clear(self) -> int:
        """Drop every cached entry, verdict, failure record and fill lock; returns how many."""
        self._hot.clear()
        return self.cache.clear()

    def _quotes(self, instruments: list[Instrument]) -> dict[Instrument, Answer[Quote] | QuantPulseError]:
        return self._serve(self._source("quote"), instruments)

    def _source(self, kind: str, period: Period | None = None) -> Source[Any]:
        """What the providers are asked for one kind (and one period, for history)."""
        if kind == "quote":
            return Source(
                self.kinds.quote,
                lambda provider, pending: provider.quotes(pending),
                lambda i: self._demo.quotes([i])[i],
                self._with_company_name,
            )
        if kind == "profile":
            return Source(
                self.kinds.profile,
                one_by_one(lambda provider, i: provider.profile(i)),
                self._demo.profile,
                self._with_market_cap,
            )
        if period is None:
            raise ValueError("history needs a period")
        return Source(
            self.kinds.history,
            one_by_one(lambda provider, i: provider.history(i, period)),
            lambda i: self._demo.history(i, period),
            period=period,
        )

    def _target(self, kind: str, raw_symbol: str, variant: str) -> _Target | None:
        """The cache key of a plainly valid request; ``None`` for anything the full path
        must judge (a bad symbol, an unknown period)."""
        period = PERIODS.get(variant) if kind == "history" else None
        known = kind in (known_kind.name for known_kind in self.kinds.all())
        if not known or (period is None and variant) or (kind == "history" and period is None):
            return None
        try:
            instrument = self.instrument(parse_symbol(raw_symbol))
        except QuantPulseError:
            return None
        source = self._source(kind, period)
        key = CacheKey(source.kind, _subject(instrument), variant)
        return _Target(key, self._fetcher({key: instrument}, source))

    def _fetcher(self, keys: dict[CacheKey, Instrument], source: Source[T]) -> FetchMany:
        """How the cache fills these keys: one provider-chain call for all of them."""

        def fetch_many(pending: list[CacheKey]) -> dict[CacheKey, Fetched]:
            fetched = self.chain.fetch([keys[key] for key in pending], source.call)
            return {
                key: _for_cache(_completed(keys[key], fetched[keys[key]], source.complete)) for key in pending
            }

        return fetch_many

    def _serve(
        self, source: Source[T], instruments: list[Instrument]
    ) -> dict[Instrument, Answer[T] | QuantPulseError]:
        """This worker's hot answers, then the cache, then providers, then demo."""
        variant = source.period.name if source.period else ""
        keys = {CacheKey(source.kind, _subject(i), variant): i for i in instruments}
        fetch_many = self._fetcher(keys, source)
        now = time.time()
        answers: dict[Instrument, Answer[T] | QuantPulseError] = {}
        cold = []
        for key, instrument in keys.items():
            kept = self._hot.get(key, now)
            if kept is None:
                cold.append(key)
            else:
                answers[instrument] = self._kept_answer(key, kept, fetch_many)
        if cold:
            outcomes = self.cache.get_or_fetch_many(cold, fetch_many)
            for key in cold:
                answers[keys[key]] = self._answer(key, keys[key], outcomes[key], source)
        return answers

    def _kept_answer(self, key: CacheKey, kept: Kept, fetch_many: FetchMany) -> Answer[Any]:
        """A kept answer served again, counted as what it is."""
        if kept.answer.cache == STALE:
            self.cache.near_stale()
        else:
            self.cache.near_hit(key, kept.entry, fetch_many)
        return kept.answer

    def _keep(self, key: CacheKey, served: Served[T], answer: Answer[T]) -> None:
        """Kept for this worker's next reads as they will see it: a fresh entry as a hit until
        its TTL ends; a stale one as stale until its stale window ends, and only while fills from
        other processes are heard (the refresh landing takes it back at once). What this fetch
        fell back from was news once: a kept copy says nothing of it."""
        entry = served.entry
        refreshing = served.cache == STALE
        if refreshing and not self.cache.fills_heard():
            return
        kind = key.kind
        cache, until = (STALE, kind.servable_until(entry)) if refreshing else (HIT, kind.fresh_until(entry))
        answer = dataclasses.replace(answer, cache=cache, fallbacks=())
        self._hot.put(key, entry, answer, until, refreshing=refreshing)

    def _recheck_at(self, key: CacheKey, outcome: Outcome, now: float) -> float:
        """When a watched quote is worth reading again (``watch``)."""
        if isinstance(outcome, Served) and outcome.cache != STALE:
            return key.kind.fresh_until(outcome.entry)
        if isinstance(outcome, Missing):
            return now + self.settings.negative_ttl
        if isinstance(outcome, Failed) and self.chain.allow_demo:
            return now + key.kind.ttl  # demo data moves once a minute at most
        # A refresh is running (its fill is heard at once), or a failure is shared for a while.
        return now + max(self.settings.failure_ttl, MIN_RECHECK)

    def _answer(
        self,
        key: CacheKey,
        instrument: Instrument,
        outcome: Outcome,
        source: Source[T],
        *,
        counted: bool = True,
    ) -> Answer[T] | QuantPulseError:
        """What the cache settled, in the service's terms; demo data where a failure may be
        (``counted``: in the demo statistics, unless the service read it for itself)."""
        if isinstance(outcome, Served):
            answer = self._served(key, instrument, outcome, source.period)
            self._keep(key, outcome, answer)
            return answer
        if isinstance(outcome, Missing):
            return SymbolNotFound.of(instrument)
        if not self.chain.allow_demo:
            return ProvidersExhausted(
                outcome.reason, retry_after=outcome.retry_after, fallbacks=outcome.notes
            )
        if counted:
            self.stats.incr(counters.DEMO_SERVED)
        # Demo data changes every minute and is never kept: the route renders it if it sends it.
        return Answer(
            instrument,
            source.demo(instrument),
            DEMO_SOURCE,
            MISS,
            time.time(),
            outcome.reason,
            source.period,
            fallbacks=outcome.notes,
        )

    def _served(
        self, key: CacheKey, instrument: Instrument, served: Served[T], period: Period | None
    ) -> Answer[T]:
        """An answer from a cached entry, with the body kept for that entry (rendered once)."""
        render = self._render[key.kind.name]
        body = self._hot.rendered(key, served.entry, lambda: render(Answer.of(instrument, served, period)))
        return Answer.of(instrument, served, period, body)

    def _with_company_name(self, instrument: Instrument, entry: Entry[Quote]) -> Entry[Quote]:
        """Fill a missing name from a cached profile or the built-in table, never upstream.

        Done once per fetch, before caching, so cached reads never pay for it.
        """
        quote = entry.value
        if quote.company_name:
            return entry
        profile = self.cache.peek(CacheKey(self.kinds.profile, _subject(instrument)))
        name = (profile and profile.value.name) or companies.company_name(quote.symbol) or quote.symbol
        return dataclasses.replace(entry, value=dataclasses.replace(quote, company_name=name))

    def _with_market_cap(self, instrument: Instrument, entry: Entry[Profile]) -> Entry[Profile]:
        """Twelve Data's profile has no market cap: ask the other live providers that have one.

        Inside the same fill (one per profile key) and through the same gate, so within the
        budgets; a failure or an empty answer leaves it null until the next refresh.
        """
        for provider in self.chain.providers:
            if entry.value.market_cap is not None:
                break
            if provider.name == entry.source or not provider.profile_has_market_cap:
                continue
            try:
                market_cap = provider.profile(instrument).market_cap
            except ProviderError:
                continue
            entry = dataclasses.replace(entry, value=dataclasses.replace(entry.value, market_cap=market_cap))
        return entry


def _completed(
    instrument: Instrument, outcome: Any, complete: Callable[[Instrument, Any], Any] | None
) -> Any:
    if complete is None or not isinstance(outcome, Entry):
        return outcome
    return complete(instrument, outcome)


def _single_outcome(outcomes: dict[Instrument, Answer[T] | QuantPulseError]) -> Answer[T]:
    """The one instrument's answer, or its error raised for the error handler."""
    ((_, outcome),) = outcomes.items()
    if isinstance(outcome, QuantPulseError):
        raise outcome
    return outcome


def _subject(instrument: Instrument) -> str:
    """What the cache keys an instrument by: ``NSE:RELIANCE``."""
    return f"{instrument.exchange}:{instrument.ticker}"


def _for_cache(outcome: Entry[Any] | QuantPulseError) -> Fetched:
    """A fetch outcome in the cache's terms: an entry, a verdict or a failure."""
    if isinstance(outcome, SymbolNotFound):
        return Missing(outcome.message)
    if isinstance(outcome, ProvidersExhausted):
        return Failed(outcome.reason, outcome.retry_after, notes=outcome.fallbacks)
    return outcome
