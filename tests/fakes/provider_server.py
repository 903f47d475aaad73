"""Fake Twelve Data and Finnhub HTTP server on loopback, for tests and benchmarks.

It speaks the providers' wire shapes and quirks (see tests/fixtures/providers/README.md)
so adapters are exercised over real HTTP, counts every request so caching claims can be
proven, and can be told to fail, stall or rate-limit so retries and failover can be tested.
It can also enforce the free plans' rate limits the way the real APIs answer them, in
compressed time, so a load test can prove the service never overdraws a plan.

Run it standalone for benchmarks (another process steers it over ``/_control``)::

    python -m tests.fakes.provider_server --port 9100 --latency 0.3
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice, takewhile
from time import time as epoch_seconds
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

IST = timezone(timedelta(hours=5, minutes=30), "IST")
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)
SESSION_MINUTES = 375
MAX_BARS = 5000  # Twelve Data's outputsize ceiling; also bounds Finnhub ranges

INTRADAY_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "45min": 45, "1h": 60}
PERIOD_START: dict[str, Callable[[date], date]] = {
    "1day": lambda day: day,
    "1week": lambda day: day - timedelta(days=day.weekday()),
    "1month": lambda day: day.replace(day=1),
}
TD_INTERVALS = frozenset(INTRADAY_MINUTES) | frozenset(PERIOD_START)
FINNHUB_RESOLUTIONS = {
    "1": "1min", "5": "5min", "15": "15min", "30": "30min", "60": "1h",
    "D": "1day", "W": "1week", "M": "1month",
}  # fmt: skip


# --- reference data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Company:
    """One NSE company; prices are the NSE close on the last session."""

    symbol: str
    name: str
    price: float
    sector: str
    industry: str
    employees: int
    website: str
    shares_millions: float
    listed: date
    city: str


@dataclass(frozen=True)
class Exchange:
    """A listing venue, with the names each provider uses for it."""

    code: str
    mic_code: str
    finnhub_suffix: str
    finnhub_name: str
    # BSE trades a little above NSE so tests can tell which listing they got.
    price_offset: float


COMPANIES: dict[str, Company] = {
    company.symbol: company
    for company in (
        Company("RELIANCE", "Reliance Industries Ltd.", 1439.20, "Energy",
                "Oil & Gas Refining & Marketing", 347362, "https://www.ril.com", 13532.47,
                date(1995, 11, 30), "Mumbai"),
        Company("TCS", "Tata Consultancy Services Ltd.", 3466.80, "Technology",
                "Information Technology Services", 607979, "https://www.tcs.com", 3618.09,
                date(2004, 8, 25), "Mumbai"),
        Company("INFY", "Infosys Ltd.", 1618.40, "Technology",
                "Information Technology Services", 323578, "https://www.infosys.com", 4152.10,
                date(1995, 2, 8), "Bengaluru"),
        Company("HDFCBANK", "HDFC Bank Ltd.", 1936.90, "Financial Services",
                "Banks - Regional", 214521, "https://www.hdfcbank.com", 7656.40,
                date(1995, 11, 8), "Mumbai"),
        Company("ICICIBANK", "ICICI Bank Ltd.", 1434.50, "Financial Services",
                "Banks - Regional", 187765, "https://www.icicibank.com", 7133.80,
                date(1997, 9, 17), "Vadodara"),
        Company("SBIN", "State Bank of India", 792.30, "Financial Services",
                "Banks - Regional", 232296, "https://sbi.co.in", 8925.30,
                date(1995, 3, 1), "Mumbai"),
        Company("M&M", "Mahindra & Mahindra Ltd.", 3120.40, "Consumer Cyclical",
                "Auto Manufacturers", 260000, "https://www.mahindra.com", 1243.50,
                date(1995, 11, 8), "Mumbai"),
        Company("BAJAJ-AUTO", "Bajaj Auto Ltd.", 8410.50, "Consumer Cyclical",
                "Auto Manufacturers", 10900, "https://www.bajajauto.com", 279.30,
                date(2008, 5, 26), "Pune"),
        Company("ITC", "ITC Ltd.", 418.65, "Consumer Defensive",
                "Tobacco", 36500, "https://www.itcportal.com", 12512.60,
                date(1995, 11, 8), "Kolkata"),
        Company("NODATA", "No History Test Ltd.", 100.00, "Technology",
                "Software - Application", 12, "https://example.com", 1.00,
                date(2020, 1, 1), "Mumbai"),
    )
}  # fmt: skip
NO_HISTORY_SYMBOLS = frozenset({"NODATA"})
SYNTHETIC_TICKERS = tuple(f"SYN{index:02d}" for index in range(1, 42))


def _synthetic(ticker: str) -> Company:
    """Breadth for load tests: plausible, distinct, well-formed listings beyond the real table."""
    index = int(ticker[3:])
    return Company(ticker, f"Synthetic Industries {index:02d} Ltd.", 100.0 + 37.5 * index, "Industrials",
                   "Conglomerates", 1000 + index, "https://example.com", 100.0 + index, date(2000, 1, 3),
                   "Mumbai")  # fmt: skip


COMPANIES.update({ticker: _synthetic(ticker) for ticker in SYNTHETIC_TICKERS})

EXCHANGES = {
    "NSE": Exchange("NSE", "XNSE", "NS", "NATIONAL STOCK EXCHANGE OF INDIA", 0.0),
    "BSE": Exchange("BSE", "XBOM", "BO", "BSE LTD", 0.5),
}
FINNHUB_SUFFIXES = {exchange.finnhub_suffix: code for code, exchange in EXCHANGES.items()}


@dataclass(frozen=True)
class Listing:
    """A company on one exchange: what a provider symbol resolves to."""

    company: Company
    exchange: Exchange

    @classmethod
    def find(cls, ticker: str, exchange_code: str) -> Listing | None:
        """Exact table match only: ``RELIANCE.NSE`` or ``RELIANCE:NSE`` are unknown here."""
        company = COMPANIES.get(ticker)
        exchange = EXCHANGES.get(exchange_code.upper())
        return cls(company, exchange) if company and exchange else None

    @classmethod
    def from_finnhub(cls, symbol: str) -> Listing | None:
        """Finnhub needs a ``.NS``/``.BO`` suffix; a bare ticker is looked up as US, so unknown."""
        ticker, dot, suffix = symbol.rpartition(".")
        code = FINNHUB_SUFFIXES.get(suffix)
        return cls.find(ticker, code) if dot and code else None


# --- deterministic prices ----------------------------------------------------------------


@dataclass(frozen=True)
class Candle:
    open: float
    high: float
    low: float
    close: float

    def shifted(self, offset: float) -> Candle:
        """Moved by ``offset`` (the BSE premium) and rounded to the paisa."""
        return Candle(*(round(value + offset, 2) for value in self.prices()))

    def prices(self) -> tuple[float, float, float, float]:
        return self.open, self.high, self.low, self.close


@dataclass(frozen=True)
class Bar:
    opened: datetime  # naive: IST wall clock for intraday, the calendar date for 1day and up
    candle: Candle
    volume: int


def _candle(rng: random.Random, anchor: float, close: float | None = None) -> Candle:
    """Random OHLC near ``anchor``; high and low always bracket open and close."""
    open_ = anchor * (1 + rng.uniform(-0.01, 0.01))
    close = anchor * (1 + rng.uniform(-0.01, 0.01)) if close is None else close
    high = max(open_, close) * (1 + rng.uniform(0, 0.006))
    low = min(open_, close) * (1 - rng.uniform(0, 0.006))
    return Candle(open_, high, low, close)


def _last_session_day(now: datetime) -> date:
    """Today once the session has opened, else the previous weekday (holidays are ignored)."""
    day = now.date() if now.time() >= SESSION_OPEN else now.date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _weekdays_back(day: date, earliest: date) -> Iterator[date]:
    while day >= earliest:
        if day.weekday() < 5:
            yield day
        day -= timedelta(days=1)


def bar_opens(
    interval: str,
    now: datetime,
    *,
    until: datetime = datetime.max,
    since: date = date.min,
) -> Iterator[datetime]:
    """Open times of the bars that exist at ``now`` (naive IST), newest first.

    The scan starts at ``until`` so an old range costs no more than a recent one.
    """
    limit = min(now, until)
    days = _weekdays_back(min(_last_session_day(now), limit.date()), since)
    step = INTRADAY_MINUTES.get(interval)
    if step is not None:
        for day in days:
            session = datetime.combine(day, SESSION_OPEN)
            slots = (session + timedelta(minutes=m) for m in range(0, SESSION_MINUTES, step))
            yield from (opened for opened in reversed(list(slots)) if opened <= limit)
        return
    start_of, previous = PERIOD_START[interval], None
    for day in days:
        if (opened := start_of(day)) != previous:
            yield datetime.combine(opened, time())
            previous = opened


def select_bars(
    listing: Listing,
    interval: str,
    now: datetime,
    *,
    start: datetime = datetime.min,
    end: datetime = datetime.max,
    limit: int = MAX_BARS,
) -> list[Bar]:
    """Bars newest first with ``start <= opened <= end``, at most ``limit``, none before listing.

    Each bar is seeded by symbol, interval and open time, so overlapping requests agree.
    """
    company = listing.company
    opens = bar_opens(interval, now, until=end, since=company.listed)
    bars = []
    for opened in islice(takewhile(lambda t: t >= start, opens), limit):
        rng = random.Random(f"{company.symbol}|{interval}|{opened.isoformat()}")
        candle = _candle(rng, company.price).shifted(listing.exchange.price_offset)
        bars.append(Bar(opened, candle, rng.randint(50_000, 12_000_000)))
    return bars


def _epoch(wall: datetime, tz: timezone = IST) -> int:
    return int(wall.replace(tzinfo=tz).timestamp())


def _wall(moment: datetime) -> datetime:
    """Naive IST wall clock; a naive clock value is taken to be IST already."""
    return moment if moment.tzinfo is None else moment.astimezone(IST).replace(tzinfo=None)


@dataclass(frozen=True)
class QuoteSnapshot:
    day: Candle
    previous_close: float
    volume: int
    average_volume: int
    week52_low: float
    week52_high: float
    session: date
    session_opened_at: int
    last_quote_at: int
    is_market_open: bool

    @property
    def change(self) -> float:
        return round(self.day.close - self.previous_close, 2)

    @property
    def percent_change(self) -> float:
        return self.change / self.previous_close * 100


def quote_snapshot(listing: Listing, now: datetime, move: float = 0.0) -> QuoteSnapshot:
    """The latest session's quote; the close is exactly the table price (+ the BSE offset), plus
    whatever a test moved it by (``FakeProviderServer.move_price``)."""
    rng = random.Random(f"{listing.company.symbol}|quote")
    price, offset = listing.company.price, listing.exchange.price_offset
    session = _last_session_day(now)
    last_trade = min(now, datetime.combine(session, SESSION_CLOSE) - timedelta(minutes=1))
    return QuoteSnapshot(
        day=_candle(rng, price, close=price).shifted(offset + move),
        previous_close=round(price * (1 + rng.uniform(-0.015, 0.015)) + offset, 2),
        volume=rng.randint(1_000_000, 12_000_000),
        average_volume=rng.randint(1_000_000, 12_000_000),
        week52_low=round(price * rng.uniform(0.7, 0.9) + offset, 2),
        week52_high=round(price * rng.uniform(1.05, 1.3) + offset, 2),
        session=session,
        session_opened_at=_epoch(datetime.combine(session, SESSION_OPEN)),
        last_quote_at=_epoch(last_trade.replace(second=0, microsecond=0)),
        is_market_open=now.weekday() < 5 and SESSION_OPEN <= now.time() < SESSION_CLOSE,
    )


# --- replies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # JSON-serialisable, or str for a non-JSON page
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def with_headers(self, extra: Mapping[str, str]) -> Reply:
        return replace(self, headers={**self.headers, **extra})

    def payload(self) -> bytes:
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return text.encode()


@dataclass(frozen=True)
class Market:
    """What a route may read: the clock (naive IST) and which symbols have no history."""

    now: datetime
    no_history: frozenset[str]
    moves: Mapping[str, float] = field(default_factory=dict)

    def quote(self, listing: Listing) -> QuoteSnapshot:
        return quote_snapshot(listing, self.now, self.moves.get(listing.company.symbol, 0.0))


Route = Callable[[Mapping[str, str], Market], Reply]

BAD_GATEWAY = Reply(
    502,
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n",
    content_type="text/html",
)


def _not_found(path: str) -> Reply:
    return Reply(404, {"error": "Not Found", "path": path})


# --- plan limits -------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A fixed window that resets at every multiple of ``seconds`` since the epoch, as Twelve
    Data's per-minute budget does; ``limit`` None means counted but not enforced."""

    name: str
    seconds: float
    limit: int | None

    def index(self, now: float) -> int:
        return math.floor(now / self.seconds)


@dataclass(frozen=True)
class Charge:
    """One request against a plan: what it was charged and what its headline window has left."""

    cost: int  # 0 when refused
    limit: int
    left: int
    resets_at: float  # epoch seconds
    refused_by: Window | None = None
    needed: int = 0  # what the refusing window would have reached: the number the provider quotes


class RateLimiter:
    """A provider plan as fixed-window budgets, charged all or nothing.

    A request that would overdraw any window is refused and charged nothing, so a client that
    sends too big a batch loses no credits. Usage is kept per (window length, index), so setting
    the same limits again does not hand out a second budget in the current window. Not locked:
    the server holds its lock around every call.
    """

    def __init__(self) -> None:
        self.windows: tuple[Window, ...] = ()
        self.charged = 0
        self.refused = 0
        self._used: Counter[tuple[float, int]] = Counter()

    @property
    def enforcing(self) -> bool:
        return any(window.limit is not None for window in self.windows)

    def charge(self, cost: int, now: float) -> Charge:
        """Charge ``cost`` at epoch ``now``; only while enforcing. Costing nothing is never refused."""
        slots = {window: (window.seconds, window.index(now)) for window in self.windows}
        enforced = [window for window in self.windows if window.limit is not None]
        headline = enforced[0]  # the window the provider's headers describe
        # Longest window first: when both are spent, "for the day" is the refusal that lasts.
        for window in sorted(enforced, key=lambda window: -window.seconds):
            needed = self._used[slots[window]] + cost
            if cost and needed > window.limit:
                self.refused += 1
                report = self._report(0, headline, slots[headline])
                return replace(report, refused_by=window, needed=needed)
        if cost:
            self.charged += cost
            for slot in slots.values():
                self._used[slot] += cost
        return self._report(cost, headline, slots[headline])

    def used_per_window(self, seconds: float) -> dict[int, int]:
        """Credits charged per window index, for the windows ``seconds`` long."""
        return {index: used for (length, index), used in self._used.items() if length == seconds}

    def _report(self, cost: int, window: Window, slot: tuple[float, int]) -> Charge:
        left = max(0, window.limit - self._used[slot])
        return Charge(cost, window.limit, left, (slot[1] + 1) * window.seconds)


# --- Twelve Data -------------------------------------------------------------------------

TD_PRICING = "https://twelvedata.com/pricing"
# Unless limits are enforced, every request sees a fresh budget, so clients never slow
# themselves down in benchmarks.
TD_CREDIT_BUDGET = 800
# Credits per symbol (T5); unknown symbols in a batch are charged too.
TD_CREDITS_PER_SYMBOL = {"/quote": 1, "/time_series": 1, "/profile": 10}


def _td_error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "status": "error"}


TD_INVALID_KEY = _td_error(
    401,
    "**apikey** parameter is incorrect or not specified. You can get your free API key "
    f"instantly following this link: {TD_PRICING}. If you believe that everything is "
    "correct, you can contact us at https://twelvedata.com/contact/customer",
)
TD_SYMBOL_NOT_FOUND = _td_error(
    404,
    "**symbol** or **figi** parameter is missing or invalid. Please provide a valid symbol "
    "according to API documentation: https://twelvedata.com/docs#reference-data",
)
# Only the window's wording tells the two apart (T6); keyed by ``Window.name``.
TD_OUT_OF_CREDITS = {
    "minute": "You have run out of API credits for the current minute. {used} API credits were used, "
    "with the current limit being {limit}. Wait for the next minute or consider switching to a "
    f"higher tier plan at {TD_PRICING}",
    "day": "You have run out of API credits for the day. {used} API credits were used, with the "
    "current limit being {limit}. Wait for the next day or consider switching to a paid plan at "
    f"{TD_PRICING}",
}


def _td_out_of_credits(window: str, used: int, limit: int) -> dict[str, Any]:
    return _td_error(429, TD_OUT_OF_CREDITS[window].format(used=used, limit=limit))


TD_CREDITS_MINUTE = _td_out_of_credits("minute", 9, 8)
TD_CREDITS_DAY = _td_out_of_credits("day", 812, 800)
TD_PLAN = _td_error(
    404,
    f"This symbol is available starting with Grow plan. Consider upgrading now at {TD_PRICING}",
)
TD_INTERNAL = _td_error(500, "Internal server error. Please try again later or contact support.")
TD_NO_DATA = _td_error(
    400,
    "No data is available on the specified dates. Try setting different start/end dates.",
)


def _td_number(value: float) -> str:
    return f"{value:.5f}"


def _td_reply(body: Any, symbols: int, cost: int = 1) -> Reply:
    """Twelve Data answers errors with HTTP 200 too; credits are charged per symbol."""
    used = symbols * cost
    left = max(0, TD_CREDIT_BUDGET - used)
    return Reply(200, body, {"api-credits-used": str(used), "api-credits-left": str(left)})


def _td_cost(path: str, query: Mapping[str, str]) -> int:
    return TD_CREDITS_PER_SYMBOL.get(path, 0) * len(query.get("symbol", "").split(","))


def _td_over_limit(charge: Charge) -> Reply:
    """The whole request fails as one flat error, even for a batch (T4); 429 rather than 200 (T2)."""
    window = charge.refused_by
    return Reply(429, _td_out_of_credits(window.name, charge.needed, window.limit))


def _td_limit_headers(charge: Charge) -> dict[str, str]:
    """What this request was charged and what the minute has left (refused: 0, unchanged)."""
    return {"api-credits-used": str(charge.cost), "api-credits-left": str(charge.left)}


def _td_instrument(listing: Listing) -> dict[str, str]:
    exchange = listing.exchange
    return {
        "symbol": listing.company.symbol,
        "name": listing.company.name,
        "exchange": exchange.code,
        "mic_code": exchange.mic_code,
    }


def _td_quote_body(listing: Listing, market: Market) -> dict[str, Any]:
    quote = market.quote(listing)
    close, low, high = quote.day.close, quote.week52_low, quote.week52_high
    return {
        **_td_instrument(listing),
        "currency": "INR",
        "datetime": quote.session.isoformat(),
        "timestamp": quote.session_opened_at,
        "last_quote_at": quote.last_quote_at,
        "open": _td_number(quote.day.open),
        "high": _td_number(quote.day.high),
        "low": _td_number(quote.day.low),
        "close": _td_number(close),
        "volume": str(quote.volume),
        "previous_close": _td_number(quote.previous_close),
        "change": _td_number(quote.change),
        "percent_change": _td_number(quote.percent_change),
        "average_volume": str(quote.average_volume),
        "is_market_open": quote.is_market_open,
        "fifty_two_week": {
            "low": _td_number(low),
            "high": _td_number(high),
            "low_change": _td_number(close - low),
            "high_change": _td_number(close - high),
            "low_change_percent": _td_number((close - low) / low * 100),
            "high_change_percent": _td_number((close - high) / high * 100),
            "range": f"{low:.6f} - {high:.6f}",
        },
    }


def _td_quote(query: Mapping[str, str], market: Market) -> Reply:
    """One symbol gives a flat body; ``A,B`` gives a map keyed as sent, errors inside it."""
    sent, exchange = query.get("symbol", ""), query.get("exchange", "NSE")
    symbols = sent.split(",")

    def one(symbol: str, error: dict[str, Any]) -> dict[str, Any]:
        listing = Listing.find(symbol, exchange)
        return _td_quote_body(listing, market) if listing else error

    if len(symbols) == 1:
        return _td_reply(one(sent, TD_SYMBOL_NOT_FOUND), 1)
    meta = {"symbol": sent, "interval": "", "exchange": exchange}
    body = {symbol: one(symbol, {**TD_SYMBOL_NOT_FOUND, "meta": meta}) for symbol in symbols}
    return _td_reply(body, len(symbols)).with_headers({"Is_batch": "true"})


def _td_moment(query: Mapping[str, str], name: str, default: datetime) -> datetime:
    """Parse ``YYYY-MM-DD[ HH:MM:SS]`` in exchange time; a bare end date covers that day."""
    text = query.get(name)
    if not text:
        return default
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"**{name}** parameter is invalid.") from None
    whole_day = name == "end_date" and len(text) == len("YYYY-MM-DD")
    return datetime.combine(moment.date(), time.max) if whole_day else moment


def _td_outputsize(query: Mapping[str, str]) -> int:
    text = query.get("outputsize", "30")
    if not text.isdigit() or not 1 <= int(text) <= MAX_BARS:
        raise ValueError(f"**outputsize** parameter must be between 1 and {MAX_BARS}.")
    return int(text)


def _td_value(bar: Bar, datetime_format: str) -> dict[str, str]:
    open_, high, low, close = map(_td_number, bar.candle.prices())
    return {
        "datetime": bar.opened.strftime(datetime_format),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": str(bar.volume),
    }


def _td_time_series(query: Mapping[str, str], market: Market) -> Reply:
    listing = Listing.find(query.get("symbol", ""), query.get("exchange", "NSE"))
    interval = query.get("interval", "")
    if listing is None:
        return _td_reply(TD_SYMBOL_NOT_FOUND, 1)
    if interval not in TD_INTERVALS:
        return _td_reply(_td_error(400, "**interval** parameter is missing or invalid."), 1)
    try:
        limit = _td_outputsize(query)
        start = _td_moment(query, "start_date", datetime.min)
        end = _td_moment(query, "end_date", datetime.max)
    except ValueError as exc:
        return _td_reply(_td_error(400, str(exc)), 1)
    if listing.company.symbol in market.no_history:
        return _td_reply(TD_NO_DATA, 1)
    bars = select_bars(listing, interval, market.now, start=start, end=end, limit=limit)
    if not bars:
        return _td_reply(TD_NO_DATA, 1)
    shape = "%Y-%m-%d %H:%M:%S" if interval in INTRADAY_MINUTES else "%Y-%m-%d"
    values = [_td_value(bar, shape) for bar in bars]
    meta = {
        "symbol": listing.company.symbol,
        "interval": interval,
        "currency": "INR",
        "exchange_timezone": "Asia/Kolkata",
        "exchange": listing.exchange.code,
        "mic_code": listing.exchange.mic_code,
        "type": "Common Stock",
    }
    return _td_reply({"meta": meta, "values": values, "status": "ok"}, 1)


def _td_profile(query: Mapping[str, str], market: Market) -> Reply:
    listing = Listing.find(query.get("symbol", ""), query.get("exchange", "NSE"))
    if listing is None:
        return _td_reply(TD_SYMBOL_NOT_FOUND, 1, cost=10)
    company = listing.company
    body = {
        **_td_instrument(listing),
        "sector": company.sector,
        "industry": company.industry,
        "employees": company.employees,
        "website": company.website,
        "description": f"{company.name} is an Indian company in the {company.industry} industry.",
        "type": "Common Stock",
        "CEO": "",
        "address": "Registered Office",
        "address2": "",
        "city": company.city,
        "zip": "400001",
        "state": "",
        "country": "India",
        "phone": "91 22 0000 0000",
    }
    return _td_reply(body, 1, cost=10)


# --- Finnhub -----------------------------------------------------------------------------

FH_UNKNOWN_QUOTE = {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
FH_NO_DATA = {"s": "no_data"}


def _fh_error(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


FH_RATE_LIMITED = _fh_error(429, "API limit reached. Please try again later. Remaining Limit: 0")


def _fh_cost(path: str, query: Mapping[str, str]) -> int:
    return 1


def _fh_over_limit(charge: Charge) -> Reply:
    return FH_RATE_LIMITED


def _fh_limit_headers(charge: Charge) -> dict[str, str]:
    """The minute window's state; Reset is rounded up so a client waiting for it is never early."""
    return {
        "X-Ratelimit-Limit": str(charge.limit),
        "X-Ratelimit-Remaining": str(charge.left),
        "X-Ratelimit-Reset": str(math.ceil(charge.resets_at)),
    }


def _fh_rate_headers(reply: Reply, now: datetime) -> dict[str, str]:
    """Finnhub sends its rate-limit headers on every answer; Reset is assumed epoch seconds."""
    next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return {
        "X-Ratelimit-Limit": "60",
        "X-Ratelimit-Remaining": "0" if reply.status == 429 else "59",
        "X-Ratelimit-Reset": str(_epoch(next_minute)),
    }


def _fh_quote(query: Mapping[str, str], market: Market) -> Reply:
    listing = Listing.from_finnhub(query.get("symbol", ""))
    if listing is None:
        return Reply(200, FH_UNKNOWN_QUOTE)
    quote = market.quote(listing)
    day = quote.day
    body = {
        "c": day.close,
        "d": quote.change,
        "dp": round(quote.percent_change, 4),
        "h": day.high,
        "l": day.low,
        "o": day.open,
        "pc": quote.previous_close,
        "t": quote.last_quote_at,
    }
    return Reply(200, body)


def _fh_bar_time(opened: datetime, interval: str) -> int:
    """Intraday bars carry their IST open instant; daily and longer bars 00:00 UTC of the date."""
    return _epoch(opened, IST if interval in INTRADAY_MINUTES else UTC)


def _fh_wall(epoch: str, interval: str) -> datetime:
    """The inverse of ``_fh_bar_time``, so range filtering can be done on wall times."""
    moment = datetime.fromtimestamp(int(epoch), IST if interval in INTRADAY_MINUTES else UTC)
    return moment.replace(tzinfo=None)


def _fh_candle(query: Mapping[str, str], market: Market) -> Reply:
    """Parallel arrays, oldest first, only bars with ``from <= t <= to``."""
    interval = FINNHUB_RESOLUTIONS.get(query.get("resolution", ""))
    if interval is None:
        return _fh_error(422, "Unsupported resolution.")
    try:
        start = _fh_wall(query["from"], interval)
        end = _fh_wall(query["to"], interval)
    except (KeyError, ValueError, OverflowError, OSError):
        return _fh_error(422, "from and to must be UNIX seconds.")
    listing = Listing.from_finnhub(query.get("symbol", ""))
    if listing is None or listing.company.symbol in market.no_history:
        return Reply(200, FH_NO_DATA)
    bars = select_bars(listing, interval, market.now, start=start, end=end)[::-1]
    if not bars:
        return Reply(200, FH_NO_DATA)
    prices = zip(*(bar.candle.prices() for bar in bars), strict=True)
    opens, highs, lows, closes = (list(column) for column in prices)
    body = {
        "c": closes,
        "h": highs,
        "l": lows,
        "o": opens,
        "s": "ok",
        "t": [_fh_bar_time(bar.opened, interval) for bar in bars],
        "v": [bar.volume for bar in bars],
    }
    return Reply(200, body)


def _fh_profile2(query: Mapping[str, str], market: Market) -> Reply:
    symbol = query.get("symbol", "")
    listing = Listing.from_finnhub(symbol)
    if listing is None:
        return Reply(200, {})
    company = listing.company
    price = company.price + listing.exchange.price_offset
    body = {
        "country": "IN",
        "currency": "INR",
        "exchange": listing.exchange.finnhub_name,
        "finnhubIndustry": company.sector,
        "ipo": company.listed.isoformat(),
        "logo": f"https://static2.finnhub.io/file/publicdatany/finnhubimage/stock_logo/{symbol}.png",
        "marketCapitalization": round(price * company.shares_millions, 2),
        "name": company.name.rstrip("."),
        "phone": "912200000000",
        "shareOutstanding": company.shares_millions,
        "ticker": symbol,
        "weburl": company.website + "/",
    }
    return Reply(200, body)


# --- providers ---------------------------------------------------------------------------


def _no_extra_headers(reply: Reply, now: datetime) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class ProviderSpec:
    """Everything that differs between the two providers, so request handling is shared."""

    name: str
    auth_header: str
    auth_scheme: str
    unauthorized: Reply
    failures: Mapping[str, Reply]  # canned answers of the failure modes
    routes: Mapping[str, Route]
    # while plan limits are enforced (see FakeProviderServer.enforce_limits)
    cost: Callable[[str, Mapping[str, str]], int]
    over_limit: Callable[[Charge], Reply]
    limit_headers: Callable[[Charge], dict[str, str]]
    extra_headers: Callable[[Reply, datetime], dict[str, str]] = _no_extra_headers  # otherwise

    @property
    def modes(self) -> frozenset[str]:
        return frozenset({"ok", "stall", *self.failures})

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        """Keys count only in headers (names lower-cased); a key in the URL must not pass."""
        return headers.get(self.auth_header.lower()) == f"{self.auth_scheme}{key}"


PROVIDERS = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            name="twelvedata",
            auth_header="Authorization",
            auth_scheme="apikey ",
            unauthorized=Reply(401, TD_INVALID_KEY),
            failures={
                "error_500": BAD_GATEWAY,
                "rate_limit": Reply(429, TD_CREDITS_MINUTE),
                "rate_limit_day": Reply(429, TD_CREDITS_DAY),
                "plan": Reply(200, TD_PLAN),
                "error_200": Reply(200, TD_INTERNAL),
            },
            routes={
                "/quote": _td_quote,
                "/time_series": _td_time_series,
                "/profile": _td_profile,
            },
            cost=_td_cost,
            over_limit=_td_over_limit,
            limit_headers=_td_limit_headers,
        ),
        ProviderSpec(
            name="finnhub",
            auth_header="X-Finnhub-Token",
            auth_scheme="",
            unauthorized=_fh_error(401, "Invalid API key."),
            failures={
                "error_500": BAD_GATEWAY,
                "rate_limit": FH_RATE_LIMITED,
                "plan": _fh_error(403, "You don't have access to this resource."),
            },
            routes={
                "/quote": _fh_quote,
                "/stock/candle": _fh_candle,
                "/stock/profile2": _fh_profile2,
            },
            cost=_fh_cost,
            over_limit=_fh_over_limit,
            limit_headers=_fh_limit_headers,
            extra_headers=_fh_rate_headers,
        ),
    )
}
SECRET_PARAMS = frozenset({"apikey", "token"})


def _limit(value: Any) -> int | None:
    """A limit as given to enforce_limits (maybe from JSON): a whole number >= 0, or None."""
    if value is not None and (type(value) is not int or value < 0):
        raise ValueError(f"a limit must be a whole number >= 0 or null, not {value!r}")
    return value


def _provider(name: str) -> ProviderSpec:
    spec = PROVIDERS.get(name)
    if spec is None:
        raise ValueError(f"unknown provider {name!r}; expected one of {sorted(PROVIDERS)}")
    return spec


@dataclass
class _Behaviour:
    mode: str = "ok"
    remaining: int | None = None
    stall_seconds: float = 30.0

    def take(self) -> tuple[str, float]:
        """The mode for this request; a mode set with ``times`` falls back to "ok" when used up."""
        mode = self.mode
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.mode, self.remaining = "ok", None
        return mode, self.stall_seconds


# --- the server --------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    # A stalled answer must not keep stop() or interpreter exit waiting.
    daemon_threads = True
    # The default backlog of 5 drops a burst's extra connects; their SYN retry costs 1 s, which
    # would skew latency and push requests into later windows of a compressed-time load test.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeProviderServer) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that gave up (timeouts in tests) are expected; stay quiet about them."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _answer(self, body: bytes) -> None:
        headers = dict(self.headers.items())
        reply = self.server.fake.respond(self.command, self.path, headers, body)
        payload = reply.payload()
        self.send_response(reply.status)
        self.send_header("Content-Type", f"{reply.content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: test output should show failures, not access logs."""


class FakeProviderServer:
    """Twelve Data under ``/twelvedata`` and Finnhub under ``/finnhub`` on one loopback port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        twelvedata_key: str = "td-test-key",
        finnhub_key: str = "fh-test-key",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.latency = latency
        self.no_history_symbols: set[str] = set(NO_HISTORY_SYMBOLS)
        self._address = (host, port)
        self._keys = {"twelvedata": twelvedata_key, "finnhub": finnhub_key}
        self._clock = clock or (lambda: datetime.now(IST))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reset_state()

    # lifecycle

    def start(self) -> Self:
        """Bind and serve in a daemon thread; the port is known once this returns."""
        if self._httpd is not None:
            raise RuntimeError("FakeProviderServer is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled answers are woken so they do not linger."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeProviderServer is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def service_env(self) -> dict[str, str]:
        """The environment that points QuantPulse at this fake, with the keys it accepts."""
        return {
            "TWELVEDATA_API_KEY": self._keys["twelvedata"],
            "FINNHUB_API_KEY": self._keys["finnhub"],
            "TWELVEDATA_BASE_URL": self.twelvedata_url,
            "FINNHUB_BASE_URL": self.finnhub_url,
        }

    @property
    def twelvedata_url(self) -> str:
        return f"{self.url}/twelvedata"

    @property
    def finnhub_url(self) -> str:
        return f"{self.url}/finnhub"

    # steering and assertions

    def set_mode(
        self,
        provider: str,
        mode: str,
        *,
        times: int | None = None,
        stall_seconds: float = 30.0,
    ) -> None:
        """Make ``provider`` answer in ``mode``, for the next ``times`` requests or until changed."""
        spec = _provider(provider)
        if mode not in spec.modes:
            raise ValueError(f"{provider} has no mode {mode!r}; expected one of {sorted(spec.modes)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._behaviours[provider] = _Behaviour(mode, times, stall_seconds)

    def enforce_limits(
        self,
        *,
        minute_seconds: float = 60.0,
        twelvedata_per_minute: int | None = 8,
        twelvedata_per_day: int | None = 800,
        finnhub_per_minute: int | None = 60,
        finnhub_per_second: int | None = 30,
    ) -> None:
        """Refuse what the free plans would refuse, answered as the real APIs answer it (T5, T6, F6).

        Windows are fixed and aligned to multiples of their length on ``time.time()``; a day is
        1440 and a Finnhub second 1/60 of ``minute_seconds``, so compressing the minute compresses
        them all. None leaves that limit unenforced. Rate headers describe the minute window (the
        first enforced one if the minute is not). Calling it again replaces the limits; what was
        already charged in the current windows still counts. A request within the limits is
        charged, then answered in the provider's set_mode mode.
        """
        minute = float(minute_seconds)
        if not minute > 0:
            raise ValueError("minute_seconds must be positive")
        plans = {
            "twelvedata": (
                Window("minute", minute, _limit(twelvedata_per_minute)),
                Window("day", minute * 1440, _limit(twelvedata_per_day)),
            ),
            "finnhub": (
                Window("minute", minute, _limit(finnhub_per_minute)),
                Window("second", minute / 60, _limit(finnhub_per_second)),
            ),
        }
        with self._lock:
            self._minute_seconds = minute
            for name, windows in plans.items():
                self._limiters[name].windows = windows

    def stop_enforcing(self) -> None:
        """Back to unlimited answers; what was charged stays readable until reset()."""
        with self._lock:
            for limiter in self._limiters.values():
                limiter.windows = ()

    def rate_limited(self, provider: str | None = None) -> int:
        """429s sent because a request was over an enforced limit (set_mode's are not counted)."""
        names = list(PROVIDERS) if provider is None else [_provider(provider).name]
        with self._lock:
            return sum(self._limiters[name].refused for name in names)

    def credits_used(self, provider: str) -> int:
        """Credits (Twelve Data) or calls (Finnhub) charged while enforcing, since reset()."""
        name = _provider(provider).name
        with self._lock:
            return self._limiters[name].charged

    def credits_by_window(self, provider: str) -> dict[int, int]:
        """Charged per minute window (index = epoch // minute_seconds), so a test can prove no
        minute went over the limit. Only windows of the latest ``minute_seconds`` are listed."""
        name = _provider(provider).name
        with self._lock:
            return self._limiters[name].used_per_window(self._minute_seconds)

    def calls(self, provider: str | None = None, path: str | None = None) -> int:
        """Requests received, failing ones included, optionally for one provider and path."""
        with self._lock:
            return sum(
                count
                for (name, route), count in self._counts.items()
                if provider in (None, name) and path in (None, route)
            )

    def call_counts(self) -> dict[str, Any]:
        """Counts per provider and path plus the total; ``/_control/calls`` adds ``limits``."""
        with self._lock:
            counts: dict[str, Any] = {name: {} for name in PROVIDERS}
            for (name, route), count in sorted(self._counts.items()):
                counts[name][route] = count
            counts["total"] = sum(self._counts.values())
        return counts

    @property
    def requests_log(self) -> list[tuple[str, str, dict[str, str]]]:
        """(provider, path, query) per request, in arrival order; secrets in queries redacted."""
        with self._lock:
            return list(self._log)

    @property
    def key_seen_in_url(self) -> bool:
        """True once any request carried ``apikey=`` or ``token=`` in its query string."""
        with self._lock:
            return self._key_in_url

    def move_price(self, ticker: str, by: float) -> None:
        """Move ``ticker``'s quote (both providers, both exchanges) by ``by`` rupees from its
        table price, until moved again or reset: a price change for live-quote tests."""
        with self._lock:
            self._moves[ticker.upper()] = by

    def reset(self) -> None:
        """Zero the counters and log, put every provider back to "ok" and stop enforcing limits
        (a test that wants them after a reset says so again); latency is kept."""
        with self._lock:
            self._reset_state()

    def _reset_state(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._log: list[tuple[str, str, dict[str, str]]] = []
        self._key_in_url = False
        self._behaviours = {name: _Behaviour() for name in PROVIDERS}
        self._limiters = {name: RateLimiter() for name in PROVIDERS}
        self._minute_seconds = 60.0
        self._moves: dict[str, float] = {}

    def _limits_report(self) -> dict[str, Any]:
        """The ``limits`` part of ``/_control/calls``: settings in force and what they did."""
        with self._lock:
            report: dict[str, Any] = {"minute_seconds": self._minute_seconds}
            for name, limiter in self._limiters.items():
                report[name] = {
                    "enforced": {window.name: window.limit for window in limiter.windows},
                    "rate_limited": limiter.refused,
                    "credits_used": limiter.charged,
                    "credits_by_window": limiter.used_per_window(self._minute_seconds),
                }
        return report

    # request handling (socket-free, so it reads top to bottom)

    def respond(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one HTTP request; the handler only moves bytes."""
        url = urlsplit(target)
        prefix, _, rest = url.path.lstrip("/").partition("/")
        path = f"/{rest}"
        if prefix == "_control":
            return self._control(method, path, body)
        spec = PROVIDERS.get(prefix)
        if spec is None:
            return _not_found(url.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        self._record(spec.name, path, query)
        self._pause(self.latency)
        lowered = {name.lower(): value for name, value in headers.items()}
        now = _wall(self._clock())
        route = spec.routes.get(path) if method == "GET" else None
        # Auth, then the plan's limits, then the failure mode (it models the provider, not the network).
        authorized = spec.authorized(lowered, self._keys[spec.name])
        charge = self._charge(spec, spec.cost(path, query) if authorized and route else 0)
        if not authorized:
            reply = spec.unauthorized
        elif charge is not None and charge.refused_by is not None:
            reply = spec.over_limit(charge)
        else:
            reply = self._provider_reply(spec, route, path, query, now)
        headers = spec.extra_headers(reply, now) if charge is None else spec.limit_headers(charge)
        return reply.with_headers(headers)

    def _record(self, provider: str, path: str, query: dict[str, str]) -> None:
        secrets = SECRET_PARAMS.intersection(name.lower() for name in query)
        redacted = {name: "***" if name.lower() in SECRET_PARAMS else value for name, value in query.items()}
        with self._lock:
            self._counts[provider, path] += 1
            self._log.append((provider, path, redacted))
            self._key_in_url = self._key_in_url or bool(secrets)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _charge(self, spec: ProviderSpec, cost: int) -> Charge | None:
        """Charge ``cost`` to the provider's plan now; None while its limits are not enforced."""
        with self._lock:
            limiter = self._limiters[spec.name]
            return limiter.charge(cost, epoch_seconds()) if limiter.enforcing else None

    def _provider_reply(
        self,
        spec: ProviderSpec,
        route: Route | None,
        path: str,
        query: Mapping[str, str],
        now: datetime,
    ) -> Reply:
        """The failure mode if one is set, else the route's answer."""
        with self._lock:
            mode, stall_seconds = self._behaviours[spec.name].take()
        if mode == "stall":
            self._pause(stall_seconds)
        elif mode != "ok":
            return spec.failures[mode]
        if route is None:
            return _not_found(path)
        with self._lock:
            moves = dict(self._moves)
        return route(query, Market(now, frozenset(self.no_history_symbols), moves))

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        """Read and steer the server from another process (benchmarks)."""
        try:
            payload = json.loads(body or b"{}") if method == "POST" else {}
            if (method, path) == ("GET", "/calls"):
                return Reply(200, {**self.call_counts(), "limits": self._limits_report()})
            if (method, path) == ("POST", "/reset"):
                self.reset()
            elif (method, path) == ("POST", "/behaviour"):
                self.set_mode(
                    payload["provider"],
                    payload["mode"],
                    times=payload.get("times"),
                    stall_seconds=float(payload.get("stall_seconds", 30.0)),
                )
            elif (method, path) == ("POST", "/price"):
                self.move_price(payload["symbol"], float(payload["by"]))
            elif (method, path) == ("POST", "/latency"):
                self.latency = float(payload["seconds"])
            elif (method, path) == ("POST", "/limits"):
                # enforce_limits' keyword arguments; {"enabled": false} stops enforcing.
                if payload.pop("enabled", True):
                    self.enforce_limits(**payload)
                else:
                    self.stop_enforcing()
            else:
                return _not_found(f"/_control{path}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return Reply(400, {"error": f"bad control request: {exc!s}"})
        return Reply(200, {"status": "ok"})


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM, printing the URLs a benchmark or a dev server should use.

    Both signals get handlers because a shell starting us in the background ignores SIGINT.
    """
    parser = argparse.ArgumentParser(description="Fake Twelve Data and Finnhub server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with FakeProviderServer(host=args.host, port=args.port, latency=args.latency) as server:
        print(f"TWELVEDATA_BASE_URL={server.twelvedata_url}")
        print(f"FINNHUB_BASE_URL={server.finnhub_url}")
        print(
            f"control: {server.url}/_control/calls  (keys: td-test-key, fh-test-key)",
            flush=True,
        )
        stopping.wait()


if __name__ == "__main__":
    main()
