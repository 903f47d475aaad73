"""Deterministic demo data: looks like a market, identical in every worker, instance and run.

Every number is a pure function of (ticker, exchange, date, minute), seeded through blake2b,
never ``hash()`` (randomised per process), so a fleet without API keys serves one consistent
market. The price model:

* a daily close level: the company's table price at ``ANCHOR``, a per-ticker drift, a few slow
  sine waves, two octaves of hashed value noise and a hashed daily wiggle. Closed form, so any
  day costs the same and a 20-year history needs no cumulative walk;
* each session's open gaps from the previous close; a minute path (Brownian bridge, seeded by
  ticker and date) runs from that open to that close over 09:15-15:30 IST, with U-shaped volume.

Quotes and the latest sessions' bars read the minute path; older daily bars take their high and
low from a cheap hashed range. Every price goes through the same float → tick rounding, so the
latest daily close is exactly the quote's price and the one before it the previous close. A BSE
listing is the NSE one scaled by a tiny per-day basis, with a fraction of the volume.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import groupby
from typing import NamedTuple

from quantpulse import companies
from quantpulse.market import (
    IST,
    SESSION_OPEN,
    is_trading_day,
    last_trading_day,
    market_state,
    months_before,
    utc_now,
)
from quantpulse.models import Bar, History, Profile, Quote
from quantpulse.periods import INTRADAY_BARS_PER_SESSION, Period, bar_date, normalise_bars
from quantpulse.providers.base import QuoteOutcome, price_move
from quantpulse.symbols import Instrument

CURRENCY = "INR"
TICK = Decimal("0.05")  # NSE tick size
SESSION_MINUTES = 375  # 09:15-15:30
ANCHOR = date(2026, 1, 1)  # the day the level equals the table price (before noise)
MAX_YEARS = 20
DAILY_VOLATILITY = 0.013
DAILY_WIGGLE = 0.006
OPENING_GAP = 0.004
TURNOVER = 0.0008  # share of the outstanding shares traded on an average day
WAVES = ((0.03, 0.7), (0.06, 2.3), (0.12, 5.9))  # log amplitude, period in years
PRIMARY_EXCHANGE = "NSE"
BSE_BASIS = 0.0004
BSE_VOLUME_SHARE = 0.08
PATH_DETAIL_SESSIONS = 5  # recent sessions whose daily bars come from the minute path
_SQRT3 = math.sqrt(3)
_BUCKETS: dict[str, Callable[[date], object]] = {
    "1day": lambda day: day,
    "1week": lambda day: day.isocalendar()[:2],
    "1month": lambda day: (day.year, day.month),
}


class DemoProvider:
    """Demo data for any well-formed ticker, flagged as demo by the service."""

    name = "demo"

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """One clock reading for the whole batch, so its quotes describe the same minute."""
        now = self._clock()
        return {instrument: _quote(instrument, now) for instrument in instruments}

    def history(self, instrument: Instrument, period: Period) -> History:
        now = self._clock()
        bars = _intraday_bars if period.intraday else _daily_bars
        return History(period.interval, normalise_bars(bars(instrument, period, now), period))

    def profile(self, instrument: Instrument) -> Profile:
        """Table facts; an unknown ticker keeps its ticker as name rather than an invented one."""
        company = companies.lookup(instrument.ticker)
        if company is None:
            return Profile(instrument.ticker, None, None, None, None, None, None, CURRENCY)
        price = _quote(instrument, self._clock()).price
        return Profile(
            name=company.name,
            description=company.description,
            sector=company.sector,
            industry=company.industry,
            market_cap=price * company.shares,
            employees=company.employees,
            website=company.website,
            currency=CURRENCY,
        )


class _Ohlcv(NamedTuple):
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True)
class _Shape:
    """Per-ticker parameters of the price model (exchange-independent)."""

    base_price: float
    daily_volume: float
    drift: float
    waves: tuple[tuple[float, float, float], ...]  # amplitude, period in years, phase


@dataclass(frozen=True)
class _Session:
    """One session's minute path: price after each minute, volume traded up to it."""

    prices: tuple[float, ...]
    volume_to: tuple[int, ...]

    def bar(self, start: int, end: int) -> _Ohlcv:
        window = self.prices[start : end + 1]
        volume = self.volume_to[end] - self.volume_to[start]
        return _Ohlcv(window[0], max(window), min(window), window[-1], volume)


def _quote(instrument: Instrument, now: datetime) -> Quote:
    """Company name from the table, else the ticker: API.md's last resort, never an invention."""
    day, minute = _latest_minute(now)
    today = _session(instrument, day).bar(0, minute)
    price = _tick(today.close)
    previous_close = _tick(_day(instrument, _previous_session(day)).close)
    change, percent = price_move(price, previous_close, None, None)
    return Quote(
        symbol=instrument.ticker,
        exchange=instrument.exchange,
        company_name=companies.company_name(instrument.ticker) or instrument.ticker,
        currency=CURRENCY,
        price=price,
        previous_close=previous_close,
        change=change,
        change_percent=percent,
        open=_tick(today.open),
        high=_tick(today.high),
        low=_tick(today.low),
        volume=today.volume,
        market_state=market_state(now),
        last_trade_at=(_session_start(day) + timedelta(minutes=minute)).astimezone(UTC),
    )


def _intraday_bars(instrument: Instrument, period: Period, now: datetime) -> Iterator[Bar]:
    width = SESSION_MINUTES // INTRADAY_BARS_PER_SESSION[period.interval]
    latest, minute = _latest_minute(now)
    for day in _sessions_back(latest, period.sessions or 1):
        session = _session(instrument, day)
        last = minute if day == latest else SESSION_MINUTES
        for start in range(0, max(last, 1), width):
            moment = _session_start(day) + timedelta(minutes=start)
            yield _bar(bar_date(moment, intraday=True), session.bar(start, min(start + width, last)))


def _daily_bars(instrument: Instrument, period: Period, now: datetime) -> Iterator[Bar]:
    """Daily bars grouped into the period's interval; each labelled with its first session.

    The latest sessions come from the minute path, so they match the intraday bars and the
    quote; older ones are closed form, which keeps a 20-year history cheap.
    """
    latest, minute = _latest_minute(now)
    today = now.astimezone(IST).date()
    start = period.start_date(today) or months_before(today, MAX_YEARS * 12)
    detailed = _sessions_back(latest, PATH_DETAIL_SESSIONS)[0]
    daily = []
    for day in filter(is_trading_day, _days(start, latest)):
        if day < detailed:
            daily.append((day, _closed_form_bar(instrument, day)))
        else:
            last = minute if day == latest else SESSION_MINUTES
            daily.append((day, _session(instrument, day).bar(0, last)))
    for _, group in groupby(daily, key=lambda item: _BUCKETS[period.interval](item[0])):
        members = list(group)
        label = bar_date(_session_start(members[0][0]), intraday=False)
        yield _bar(label, _merge([bar for _, bar in members]))


class _Day(NamedTuple):
    """Closed-form facts of one session of one listing, shared by paths and daily bars."""

    open: float
    close: float
    volume: float
    up: float
    down: float


def _day(instrument: Instrument, day: date) -> _Day:
    ticker = instrument.ticker
    gap, activity, basis = _normals(f"{ticker}|session|{day.toordinal()}", 3)
    up, down = _uniforms(f"{ticker}|range|{day.toordinal()}", 2)
    factor = 1.0 if instrument.exchange == PRIMARY_EXCHANGE else 1 + BSE_BASIS * basis
    volume = _shape(ticker).daily_volume * math.exp(0.35 * activity)
    if instrument.exchange != PRIMARY_EXCHANGE:
        volume *= BSE_VOLUME_SHARE
    open_ = _level(ticker, _previous_session(day)) * math.exp(OPENING_GAP * gap)
    return _Day(open_ * factor, _level(ticker, day) * factor, volume, up, down)


@lru_cache(maxsize=256)
def _session(instrument: Instrument, day: date) -> _Session:
    """A Brownian bridge from the day's open to its close; endpoints set exactly, not recomputed."""
    facts = _day(instrument, day)
    rng = random.Random(_seed(f"{instrument.ticker}|{day.isoformat()}|path"))
    step = DAILY_VOLATILITY / math.sqrt(SESSION_MINUTES)
    walk = [0.0]
    for _ in range(SESSION_MINUTES):
        walk.append(walk[-1] + rng.gauss(0, step))
    log_open = math.log(facts.open)
    drift = math.log(facts.close) - log_open - walk[-1]
    path = [math.exp(log_open + w + drift * i / SESSION_MINUTES) for i, w in enumerate(walk)]
    path[0], path[-1] = facts.open, facts.close
    return _Session(tuple(path), _volume_curve(rng, facts.volume))


def _volume_curve(rng: random.Random, total: float) -> tuple[int, ...]:
    """Cumulative volume, heavier near the open and the close, as on a real exchange."""
    weights = [0.0]
    for minute in range(1, SESSION_MINUTES + 1):
        u_shape = 1 + 2 * (2 * minute / SESSION_MINUTES - 1) ** 2
        weights.append(weights[-1] + u_shape * rng.uniform(0.5, 1.5))
    return tuple(int(total * w / weights[-1]) for w in weights)


@lru_cache(maxsize=32768)
def _level(ticker: str, day: date) -> float:
    """The closing price of a session on the primary book, in closed form."""
    shape = _shape(ticker)
    years = (day - ANCHOR).days / 365.25
    log_level = shape.drift * years
    for amplitude, period, phase in shape.waves:
        log_level += amplitude * (math.sin(2 * math.pi * years / period + phase) - math.sin(phase))
    log_level += _value_noise(ticker, day, 7, 0.03) + _value_noise(ticker, day, 41, 0.07)
    log_level += DAILY_WIGGLE * _draws(ticker, day, 1)[0]
    return shape.base_price * math.exp(log_level)


def _value_noise(ticker: str, day: date, span: int, amplitude: float) -> float:
    """Smoothly interpolated random knots every ``span`` days: wandering trends, not jitter."""
    knot, offset = divmod(day.toordinal(), span)
    t = offset / span
    weight = t * t * (3 - 2 * t)
    before, after = _knot(ticker, span, knot), _knot(ticker, span, knot + 1)
    return amplitude * (before + (after - before) * weight)


@lru_cache(maxsize=8192)
def _knot(ticker: str, span: int, knot: int) -> float:
    return _draws(f"{ticker}|{span}", knot, 1)[0]


@lru_cache(maxsize=4096)
def _shape(ticker: str) -> _Shape:
    """Table price and share count when known; otherwise a plausible INR 50-5000 stock."""
    company = companies.lookup(ticker)
    size, liquidity, drift, *phases = _uniforms(f"{ticker}|shape", 3 + len(WAVES))
    if company is None:
        base_price, daily_volume = 50 * 100**size, 1e5 * 50**liquidity
    else:
        base_price, daily_volume = float(company.price), company.shares * TURNOVER
    waves = tuple(
        (amplitude, years, phase * 2 * math.pi)
        for (amplitude, years), phase in zip(WAVES, phases, strict=True)
    )
    return _Shape(base_price, daily_volume, 0.06 + 0.10 * drift, waves)


def _basis(instrument: Instrument, day: date) -> float:
    """BSE trades within a few paise (a few rupees on dear stocks) of NSE."""
    if instrument.exchange == PRIMARY_EXCHANGE:
        return 1.0
    return 1 + BSE_BASIS * _draws(f"{instrument.ticker}|{instrument.exchange}", day, 1)[0]


def _draws(key: str, when: object, count: int) -> tuple[float, ...]:
    """Roughly standard-normal numbers (Irwin-Hall: a sum of four uniforms) for a key and a date."""
    words = _words(f"{key}|{when}", 4 * count)
    return tuple((sum(words[i : i + 4]) / 65536 - 2) * _SQRT3 for i in range(0, 4 * count, 4))


def _uniforms(key: str, count: int) -> tuple[float, ...]:
    return tuple(word / 65536 for word in _words(key, count))


def _words(key: str, count: int) -> tuple[int, ...]:
    """Up to 32 16-bit numbers from blake2b: the same in every process, unlike ``hash()``."""
    digest = hashlib.blake2b(key.encode(), digest_size=2 * count).digest()
    return struct.unpack(f"<{count}H", digest)


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest())


def _latest_minute(now: datetime) -> tuple[date, int]:
    """The session a quote shows and its minute: live in hours, else the last complete close."""
    local = now.astimezone(IST)
    day = local.date()
    elapsed = (local - _session_start(day)).total_seconds() // 60
    if not is_trading_day(day) or elapsed < 0:
        return _previous_session(day), SESSION_MINUTES
    return day, int(min(elapsed, SESSION_MINUTES))


def _previous_session(day: date) -> date:
    return last_trading_day(day - timedelta(days=1))


def _sessions_back(latest: date, count: int) -> list[date]:
    """The ``count`` sessions ending with ``latest``, oldest first."""
    days = [latest]
    while len(days) < count:
        days.append(_previous_session(days[-1]))
    return days[::-1]


def _days(start: date, end: date) -> Iterator[date]:
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)


def _session_start(day: date) -> datetime:
    return datetime.combine(day, SESSION_OPEN, IST)


def _merge(bars: Sequence[_Ohlcv]) -> _Ohlcv:
    return _Ohlcv(
        bars[0].open,
        max(bar.high for bar in bars),
        min(bar.low for bar in bars),
        bars[-1].close,
        sum(bar.volume for bar in bars),
    )


def _bar(label: str, ohlcv: _Ohlcv) -> Bar:
    return Bar(label, *(_tick(price) for price in ohlcv[:4]), ohlcv.volume)


def _tick(price: float) -> Decimal:
    """Round to the NSE tick; monotonic, so rounded bars keep low <= open, close <= high."""
    return round(price / float(TICK)) * TICK
