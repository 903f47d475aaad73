"""Indian market calendar and time helpers shared by providers, demo data and the cache.

NSE and BSE trade 09:15–15:30 IST on weekdays. ``MarketCalendar`` also knows the exchanges'
holidays (the ``holidays`` library's XNSE and XBOM calendars) and the operator's overrides, and
decides how long a quote stays fresh and what ``marketState`` says (Finnhub's and the demo
data's). The module-level helpers (``is_trading_day`` and friends, used by the demo's price
history) see weekdays only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone

import holidays

from quantpulse.config import Settings
from quantpulse.models import MARKET_CLOSED, MARKET_OPEN

IST = timezone(timedelta(hours=5, minutes=30), "IST")
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)


# The longest a market stays shut (Diwali and a weekend); past it, a closed-market quote is refetched.
LONGEST_CLOSURE = timedelta(days=7)
# Calendars of the ``holidays`` library, by exchange.
_HOLIDAY_CALENDARS = {"NSE": "XNSE", "BSE": "XBOM"}
Session = tuple[datetime, datetime]
DayOverride = tuple[date, tuple[time, time] | None]


class MarketCalendar:
    """When an exchange is open, and so how long a quote fetched at some moment stays fresh.

    ``mode``: ``calendar`` (sessions, holidays, overrides), ``always_open`` (freshness is the TTL,
    as if every quote were fetched during a session) or ``always_closed`` (every quote counts as
    fetched after a settled close). A quote fetched while closed, at least ``settle`` after the
    last close, stays fresh until the next open: nights, weekends and holidays cost no upstream
    calls, and the price it shows is the close, which does not change until then.
    """

    def __init__(
        self, mode: str = "calendar", overrides: Iterable[DayOverride] = (), settle: timedelta = timedelta(0)
    ) -> None:
        self._mode = mode
        self._overrides = dict(overrides)
        self._settle = settle
        # (exchange, year) -> that year's holidays, each built once under the lock (the library's
        # own lazy expansion is not safe across threads).
        self._holidays: dict[tuple[str, int], frozenset[date]] = {}
        self._building = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketCalendar:
        return cls(
            settings.market_hours,
            settings.market_calendar_overrides,
            timedelta(minutes=settings.market_settle_minutes),
        )

    def state(self, now: datetime, exchange: str) -> str:
        """``marketState`` at ``now``: OPEN during a session (always, under ``always_open``)."""
        if self._mode != "calendar":
            return MARKET_OPEN if self._mode == "always_open" else MARKET_CLOSED
        session = self.session(now.astimezone(IST).date(), exchange)
        return MARKET_OPEN if session is not None and session[0] <= now < session[1] else MARKET_CLOSED

    def session(self, day: date, exchange: str) -> Session | None:
        """That day's session on ``exchange`` (IST), or ``None`` when it does not trade."""
        if day in self._overrides:
            hours = self._overrides[day]
        elif day.weekday() < 5 and day not in self._holidays_of(exchange, day.year):
            hours = (SESSION_OPEN, SESSION_CLOSE)
        else:
            hours = None
        return hours and (datetime.combine(day, hours[0], IST), datetime.combine(day, hours[1], IST))

    def _holidays_of(self, exchange: str, year: int) -> frozenset[date]:
        known = self._holidays.get((exchange, year))
        if known is None:
            with self._building:
                code = _HOLIDAY_CALENDARS.get(exchange)
                days = holidays.financial_holidays(code, years=year, expand=False) if code else {}
                known = self._holidays.setdefault((exchange, year), frozenset(days))
        return known

    def fresh_until(self, fetched_at: float, ttl: float, exchange: str) -> float:
        """Epoch seconds until which a quote fetched at ``fetched_at`` is fresh: its TTL while
        the market trades or its close settles, else the next open (sooner than the TTL too: a
        price fetched a minute before the open is not served into the session)."""
        ordinary = fetched_at + ttl
        if self._mode == "always_open":
            return ordinary
        fetched = datetime.fromtimestamp(fetched_at, IST)
        if self._mode == "always_closed":
            return max(ordinary, (fetched + LONGEST_CLOSURE).timestamp())
        today = self.session(fetched.date(), exchange)
        if today is not None and today[0] <= fetched < today[1] + self._settle:
            return ordinary  # open, or the close is still settling
        return self.next_open(fetched, exchange).timestamp()

    @property
    def always_open(self) -> bool:
        return self._mode == "always_open"

    def last_close(self, now: datetime, exchange: str) -> date:
        """The day of the latest session that had closed by ``now``."""
        local = now.astimezone(IST)
        for offset in range(LONGEST_CLOSURE.days + 1):
            day = local.date() - timedelta(days=offset)
            session = self.session(day, exchange)
            if session is not None and session[1] <= local:
                return day
        return last_trading_day(local.date() - timedelta(days=1))

    def next_open(self, after: datetime, exchange: str) -> datetime:
        """The next session's opening after ``after`` (at most ``LONGEST_CLOSURE`` away)."""
        local = after.astimezone(IST)
        for offset in range(LONGEST_CLOSURE.days + 1):
            session = self.session(local.date() + timedelta(days=offset), exchange)
            if session is not None and session[0] > local:
                return session[0]
        return local + LONGEST_CLOSURE


def utc_now() -> datetime:
    return datetime.now(UTC)


def is_trading_day(day: date) -> bool:
    return day.weekday() < 5


def last_trading_day(day: date) -> date:
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


def from_epoch(seconds: float | int | None) -> datetime | None:
    """Providers send 0 or nothing when they have no time; that is None, not 1970."""
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def months_before(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier, clamped to the month's end."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    for candidate in range(day.day, 27, -1):
        try:
            return date(year, month, candidate)
        except ValueError:
            continue
    return date(year, month, min(day.day, 28))
