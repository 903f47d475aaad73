"""How long a quote stays fresh: TTLs while the market trades, the next open once it has closed."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from quantpulse.config import Settings
from quantpulse.errors import ConfigurationError
from quantpulse.market import IST, LONGEST_CLOSURE, MarketCalendar

OVERRIDES = [(date(2026, 11, 8), (time(18, 0), time(19, 15))), (date(2026, 12, 31), None)]
CALENDAR = MarketCalendar("calendar", OVERRIDES, settle=timedelta(minutes=30))


def fresh_until(fetched: datetime, calendar: MarketCalendar = CALENDAR, exchange: str = "NSE") -> datetime:
    return datetime.fromtimestamp(calendar.fresh_until(fetched.timestamp(), 60, exchange), IST)


def ist(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=IST)


@pytest.mark.parametrize(
    ("fetched", "fresh_till", "why"),
    [
        (ist(2026, 11, 27, 11, 0), ist(2026, 11, 27, 11, 1), "a Friday session: the TTL"),
        (ist(2026, 11, 27, 15, 45), ist(2026, 11, 27, 15, 46), "closed 15 minutes ago: still settling"),
        (ist(2026, 11, 27, 16, 5), ist(2026, 11, 30, 9, 15), "settled on Friday: until Monday's open"),
        (ist(2026, 11, 27, 8, 0), ist(2026, 11, 27, 9, 15), "before the day's open"),
        (ist(2026, 11, 27, 9, 14, 30), ist(2026, 11, 27, 9, 15), "30 s before the open: not past it"),
        (ist(2026, 11, 23, 16, 10), ist(2026, 11, 25, 9, 15), "Tuesday 24th is Guru Nanak Jayanti"),
        (ist(2026, 11, 7, 12, 0), ist(2026, 11, 8, 18, 0), "a special Sunday session by override"),
        (ist(2026, 12, 30, 16, 0), ist(2027, 1, 1, 9, 15), "the 31st closed by override"),
    ],
)
def test_a_quote_is_fresh_for_its_ttl_while_trading_and_until_the_next_open_once_settled(
    fetched, fresh_till, why
):
    assert fresh_until(fetched) == fresh_till, why


def test_holidays_of_any_year_are_known_on_first_use():
    assert CALENDAR.session(date(2028, 1, 26), "NSE") is None  # Republic Day, a Wednesday
    assert CALENDAR.session(date(2028, 1, 27), "NSE") is not None


def test_bse_has_its_own_holidays_and_the_same_hours():
    assert CALENDAR.session(date(2026, 11, 24), "BSE") is None
    friday = (ist(2026, 11, 27, 9, 15), ist(2026, 11, 27, 15, 30))
    assert CALENDAR.session(date(2026, 11, 27), "BSE") == friday


def test_always_open_is_the_ttl_and_always_closed_a_settled_close_at_any_hour():
    settled = ist(2026, 11, 27, 16, 5)
    during = ist(2026, 11, 27, 11, 0)
    assert fresh_until(settled, MarketCalendar("always_open")) == settled + timedelta(minutes=1)
    assert fresh_until(during, MarketCalendar("always_closed")) == during + LONGEST_CLOSURE


def test_overrides_and_modes_come_from_the_environment():
    settings = Settings.from_env(
        {
            "MARKET_CALENDAR_OVERRIDES": "2026-11-08 18:00-19:15; 2026-12-31 closed",
            "MARKET_SETTLE_MINUTES": "15",
            "TWELVEDATA_API_KEY": "td-key-123",
        }
    )
    assert settings.market_hours == "calendar" and settings.market_settle_minutes == 15
    assert settings.market_calendar_overrides == tuple(OVERRIDES)
    assert Settings.from_env({}).market_hours == "always_open", "demo only: prices move at any hour"
    pinned = Settings.from_env({"STOCK_PROVIDER": "demo", "MARKET_HOURS": "calendar"})
    assert pinned.market_hours == "calendar"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MARKET_HOURS", "sometimes"),
        ("MARKET_CALENDAR_OVERRIDES", "2026-13-01 closed"),
        ("MARKET_CALENDAR_OVERRIDES", "2026-11-08 19:15-18:00"),
        ("MARKET_CALENDAR_OVERRIDES", "tomorrow"),
        ("MARKET_SETTLE_MINUTES", "-5"),
    ],
)
def test_a_malformed_market_setting_stops_the_service_with_its_name(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("mode", "moment", "state"),
    [
        ("calendar", ist(2026, 11, 27, 10, 30), "OPEN"),
        ("calendar", ist(2026, 11, 27, 15, 30), "CLOSED"),  # the close itself
        ("calendar", ist(2026, 11, 24, 10, 30), "CLOSED"),  # a holiday
        ("calendar", ist(2026, 11, 8, 18, 30), "OPEN"),  # the special Sunday session
        ("always_open", ist(2026, 11, 28, 3, 0), "OPEN"),
        ("always_closed", ist(2026, 11, 27, 10, 30), "CLOSED"),
    ],
)
def test_market_state_follows_the_same_calendar(mode, moment, state):
    calendar = MarketCalendar(mode, OVERRIDES, settle=timedelta(minutes=30))
    assert calendar.state(moment, "NSE") == state
