"""Deterministic demo data: looks like a market, identical in every worker, instance and run.

Every number is a pure function of (ticker, exchange, date, minute), seeded through blake2b,
never ``hash()`` (randomised per process), so a fleet without API keys serves one consistent
market. The price model:

* a session's close: the table price at ``ANCHOR`` moved by a per-ticker drift, six sine waves
  from weeks to years long (random-walk-like swings) and a hashed daily wiggle. Closed form, so
  any day costs the same and a 20-year history needs no cumulative walk;
* its open gaps from the previous close; a minute path (a Brownian bridge seeded by ticker and
  date) runs from that open to that close over 09:15-15:30 IST, with U-shaped volume.

Quotes and the latest sessions' daily bars read the minute path, so they agree with the intraday
bars; older daily bars take their high and low from a hashed range. Every price goes through one
float -> tick rounding, so the latest daily close is exactly the quote's price and the close
before it the quote's previous close. A BSE listing is the NSE one scaled by a tiny per-day
basis, with a fraction of the volume.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from calendar import monthrange
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import groupby
from typing import NamedTuple

import quantpulse.companies as companies
from quantpulse.market import (
    IST,
    SESSION_OPEN,
    MarketCalendar,
    is_trading_day,
    last_trading_day,
    months_before,
    utc_now,
)
from quantpulse.models import MARKET_OPEN, Bar, History, Profile, Quote
from quantpulse.periods import INTRADAY_BARS_PER_SESSION, Period, bar_date, normalise_bars
from quantpulse.providers.base import QuoteOutcome, price_move
from quantpulse.symbols import Instrument

CURRENCY = "INR"
TICK = Decimal("0.05")  # NSE tick size
SESSION_MINUTES = 375  # 09:15-15:30
ANCHOR = date(2026, 1, 1)  # where the trend passes through the table price
MAX_YEARS = 20
DAILY_VOLATILITY = 0.013
DAILY_WIGGLE = 0.006
OPENING_GAP = 0.004
TURNOVER = 0.0008  # share of the outstanding shares traded on an average day
# Slow waves in the log price (log amplitude, period in years); longer waves swing further, as
# a random walk would, and each ticker stretches the periods and shifts the phases its own way.
WAVES = ((0.02, 0.06), (0.035, 0.17), (0.055, 0.45), (0.08, 1.2), (0.12, 3.1), (0.18, 7.5))
PRIMARY_EXCHANGE = "NSE"
BSE_BASIS = 0.0004
BSE_VOLUME_SHARE = 0.08
PATH_DETAIL_SESSIONS = 5  # recent sessions whose daily bars come from the minute path
_ANCHOR_ORDINAL = ANCHOR.toordinal()
_TRIANGULAR_SCALE = math.sqrt(6) / 65536
_BUCKETS: dict[str, Callable[[date], object]] = {
    "1day": lambda day: day,
    "1week": lambda day: day.isocalendar()[:2],
    "1month": lambda day: (day.year, day.month),
}


class DemoProvider:
    """Demo data for any well-formed ticker, flagged as demo by the service."""

    name = "demo"
    profile_has_market_cap = True

    def __init__(self, clock: Callable[[], datetime] = utc_now, market: MarketCalendar | None = None) -> None:
        """``market``: the clock the quotes follow (the service's ``MARKET_HOURS``)."""
        self._clock = clock
        self._market = market or MarketCalendar()

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """One clock reading for the whole batch, so its quotes describe the same minute."""
        now = self._clock()
        return {instrument: _quote(instrument, now, self._market) for instrument in instruments}

    def history(self, instrument: Instrument, period: Period) -> History:
        now = self._clock()
        bars = _intraday_bars if period.intraday else _daily_bars
        return History(period.interval, normalise_bars(bars(instrument, period, now), period))

    def profile(self, instrument: Instrument) -> Profile:
        """Table facts, the market cap at the demo price; an unknown ticker gets no invented facts."""
        company = companies.lookup(instrument.ticker)
        if company is None:
            return Profile(instrument.ticker, None, None, None, None, None, None, CURRENCY)
        price = _quote(instrument, self._clock(), self._market).price
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
    """Per-ticker parameters of the price model; both exchanges share them."""

    base_price: float
    daily_volume: float
    drift: float
    waves: tuple[tuple[float, float, float], ...]  # log amplitude, radians per year, phase

    def close(self, day: date, wiggle: float) -> float:
        """A session's close on the primary book in closed form: no walk to accumulate."""
        years = (day.toordinal() - _ANCHOR_ORDINAL) / 365.25
        log_level = self.drift * years + DAILY_WIGGLE * wiggle
        for amplitude, frequency, phase in self.waves:
            log_level += amplitude * (math.sin(frequency * years + phase) - math.sin(phase))
        return self.base_price * math.exp(log_level)


@dataclass(frozen=True)
class _Session:
    """One session's minute path: price after each minute, volume traded up to it."""

    prices: tuple[float, ...]
    volume_to: tuple[int, ...]

    def bar(self, start: int, end: int) -> _Ohlcv:
        window = self.prices[start : end + 1]
        volume = self.volume_to[end] - self.volume_to[start]
        return _Ohlcv(window[0], max(window), min(window), window[-1], volume)


def _quote(instrument: Instrument, now: datetime, market: MarketCalendar) -> Quote:
    """Company name from the table, else the ticker: docs/api.md's last resort, never an invention."""
    day, minute, traded_at = _quote_moment(now, market, instrument.exchange)
    today = _session(instrument, day).bar(0, minute)
    price = _tick(today.close)
    (previous,) = _closed_form(instrument, [_previous_session(day)])
    previous_close = _tick(previous.close)
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
        market_state=market.state(now, instrument.exchange),
        last_trade_at=traded_at,
    )


def _intraday_bars(instrument: Instrument, period: Period, now: datetime) -> Iterator[Bar]:
    width = SESSION_MINUTES // INTRADAY_BARS_PER_SESSION[period.interval]
    latest, minute = _latest_minute(now)
    for day in _sessions_back(latest, period.sessions or 1):
        session = _session(instrument, day)
        last = _minutes_traded(day, latest, minute)
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
    recent = _sessions_back(latest, PATH_DETAIL_SESSIONS)
    daily = _closed_form_bars(instrument, start, recent[0] - timedelta(days=1))
    for day in recent:
        if day >= start:
            last = _minutes_traded(day, latest, minute)
            daily.append((day, _session(instrument, day).bar(0, last)))
    bucket = _BUCKETS[period.interval]
    for _, group in groupby(daily, key=lambda pair: bucket(pair[0])):
        members = list(group)
        label = bar_date(_session_start(members[0][0]), intraday=False)
        yield _bar(label, _merge([bar for _, bar in members]))


def _closed_form_bars(instrument: Instrument, first: date, last: date) -> list[tuple[date, _Ohlcv]]:
    """The sessions from ``first`` to ``last``, computed and kept a calendar month at a time."""
    bars = []
    for index in range(first.year * 12 + first.month - 1, last.year * 12 + last.month):
        year, month = divmod(index, 12)
        month_bars = _closed_form_month(instrument, year, month + 1)
        bars.extend(pair for pair in month_bars if first <= pair[0] <= last)
    return bars


@lru_cache(maxsize=1024)
def _closed_form_month(instrument: Instrument, year: int, month: int) -> tuple[tuple[date, _Ohlcv], ...]:
    """Cached because long histories revisit the same months; demo data never enters the store."""
    days = [date(year, month, n) for n in range(1, monthrange(year, month)[1] + 1)]
    sessions = [day for day in days if is_trading_day(day)]
    return tuple(zip(sessions, _closed_form(instrument, sessions), strict=True))


def _closed_form(instrument: Instrument, days: Sequence[date]) -> list[_Ohlcv]:
    """Bars of consecutive sessions: a hash and a few sines per day, O(1) whatever the date.

    Each open gaps from the session before, so the loop carries the previous close along.
    """
    ticker = instrument.ticker
    shape = _shape(ticker)
    primary = instrument.exchange == PRIMARY_EXCHANGE
    previous = _previous_session(days[0])
    previous_close = shape.close(previous, _draws(ticker, previous)[0])
    bars = []
    for day in days:
        wiggle, gap, activity, basis, high_reach, low_reach = _draws(ticker, day)
        close = shape.close(day, wiggle)
        open_ = previous_close * math.exp(OPENING_GAP * gap)
        previous_close = close
        factor = 1.0 if primary else 1 + BSE_BASIS * basis
        high = max(open_, close) * factor * (1 + abs(high_reach) * DAILY_VOLATILITY / 2)
        low = min(open_, close) * factor * (1 - abs(low_reach) * DAILY_VOLATILITY / 2)
        volume = shape.daily_volume * math.exp(0.35 * activity) * (1.0 if primary else BSE_VOLUME_SHARE)
        bars.append(_Ohlcv(open_ * factor, high, low, close * factor, int(volume)))
    return bars


@lru_cache(maxsize=128)
def _session(instrument: Instrument, day: date) -> _Session:
    """A Brownian bridge from the day's open to its close; endpoints set exactly, not recomputed."""
    (day_bar,) = _closed_form(instrument, [day])
    rng = random.Random(_seed(f"{instrument.ticker}|{day.toordinal()}|path"))
    step = DAILY_VOLATILITY / math.sqrt(SESSION_MINUTES)
    walk = [0.0]
    for _ in range(SESSION_MINUTES):
        walk.append(walk[-1] + rng.gauss(0, step))
    log_open = math.log(day_bar.open)
    drift = math.log(day_bar.close) - log_open - walk[-1]
    path = [math.exp(log_open + w + drift * i / SESSION_MINUTES) for i, w in enumerate(walk)]
    path[0], path[-1] = day_bar.open, day_bar.close
    return _Session(tuple(path), _volume_curve(rng, day_bar.volume))


def _volume_curve(rng: random.Random, total: int) -> tuple[int, ...]:
    """Cumulative volume, heavier near the open and the close, as on a real exchange."""
    weights = [0.0]
    for minute in range(1, SESSION_MINUTES + 1):
        u_shape = 1 + 2 * (2 * minute / SESSION_MINUTES - 1) ** 2
        weights.append(weights[-1] + u_shape * rng.uniform(0.5, 1.5))
    return tuple(int(total * w / weights[-1]) for w in weights)


@lru_cache(maxsize=4096)
def _shape(ticker: str) -> _Shape:
    """Table price and share count when known; otherwise a plausible INR 50-5000 stock."""
    company = companies.lookup(ticker)
    size, liquidity, drift, *spread = (word / 65536 for word in _words(f"{ticker}|shape", 3 + 2 * len(WAVES)))
    if company is None:
        base_price, daily_volume = 50 * 100**size, 1e5 * 50**liquidity
    else:
        base_price, daily_volume = float(company.price), company.shares * TURNOVER
    waves = tuple(
        (amplitude, 2 * math.pi / (years * (0.8 + 0.45 * stretch)), 2 * math.pi * phase)
        for (amplitude, years), stretch, phase in zip(WAVES, spread[::2], spread[1::2], strict=True)
    )
    return _Shape(base_price, daily_volume, 0.06 + 0.10 * drift, waves)


def _draws(ticker: str, day: date) -> list[float]:
    """A day's six standard-triangular numbers (mean 0, sd 1): near enough normal, and cheap."""
    words = _words(f"{ticker}|{day.toordinal()}", 12)
    return [(a - b) * _TRIANGULAR_SCALE for a, b in zip(words[:6], words[6:], strict=True)]


def _words(key: str, count: int) -> tuple[int, ...]:
    """Up to 32 16-bit numbers from blake2b: the same in every process, unlike ``hash()``."""
    return struct.unpack(f"<{count}H", hashlib.blake2b(key.encode(), digest_size=2 * count).digest())


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest())


class _QuoteMoment(NamedTuple):
    """Where a quote is on its day's minute path, and when its last trade was."""

    day: date
    minute: int
    traded_at: datetime


def _quote_moment(now: datetime, market: MarketCalendar, exchange: str) -> _QuoteMoment:
    """The live minute of the session in progress (the calendar's, so special sessions move
    too); under ``always_open`` the minute of the day, wrapped onto the path (prices move at any
    hour, for ``make run``), traded this minute; while closed, frozen at the latest close."""
    local = now.astimezone(IST)
    if market.always_open:
        minute = (local.hour * 60 + local.minute) % (SESSION_MINUTES + 1)
        return _QuoteMoment(local.date(), minute, now.astimezone(UTC).replace(second=0, microsecond=0))
    today = market.session(local.date(), exchange)
    if today is not None and market.state(now, exchange) == MARKET_OPEN:
        elapsed = int((local - today[0]).total_seconds() // 60)
        return _QuoteMoment(local.date(), min(elapsed, SESSION_MINUTES), _minutes_after(today[0], elapsed))
    day = market.last_close(now, exchange)
    closed = market.session(day, exchange)
    closes = closed[1] if closed else _session_start(day) + timedelta(minutes=SESSION_MINUTES)
    return _QuoteMoment(day, SESSION_MINUTES, closes.astimezone(UTC))


def _minutes_after(start: datetime, minutes: int) -> datetime:
    return (start + timedelta(minutes=minutes)).astimezone(UTC)


def _latest_minute(now: datetime) -> tuple[date, int]:
    """The session a quote shows and its minute: live in hours, else the last complete close."""
    local = now.astimezone(IST)
    day = local.date()
    elapsed = (local - _session_start(day)).total_seconds() // 60
    if not is_trading_day(day) or elapsed < 0:
        return _previous_session(day), SESSION_MINUTES
    return day, int(min(elapsed, SESSION_MINUTES))


def _minutes_traded(day: date, latest: date, minute: int) -> int:
    """Only the latest session can still be in progress."""
    return minute if day == latest else SESSION_MINUTES


def _previous_session(day: date) -> date:
    return last_trading_day(day - timedelta(days=1))


def _sessions_back(latest: date, count: int) -> list[date]:
    """The ``count`` sessions ending with ``latest``, oldest first."""
    days = [latest]
    while len(days) < count:
        days.append(_previous_session(days[-1]))
    return days[::-1]


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
