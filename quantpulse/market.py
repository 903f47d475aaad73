"""Indian market calendar and time helpers shared by providers and demo data.

NSE and BSE trade 09:15–15:30 IST on weekdays. Exchange holidays are not modelled: on a
holiday the demo market looks open and a Finnhub quote is labelled OPEN during hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

from quantpulse.models import MARKET_CLOSED, MARKET_OPEN

IST = timezone(timedelta(hours=5, minutes=30), "IST")
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)


def utc_now() -> datetime:
    return datetime.now(UTC)


def is_trading_day(day: date) -> bool:
    return day.weekday() < 5


def market_state(now: datetime) -> str:
    local = now.astimezone(IST)
    in_hours = SESSION_OPEN <= local.time() < SESSION_CLOSE
    return MARKET_OPEN if is_trading_day(local.date()) and in_hours else MARKET_CLOSED


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
