"""Demo provider: deterministic across processes, market-like, and consistent with itself."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import quantpulse.companies as companies
from quantpulse.market import IST, MarketCalendar, is_trading_day, months_before
from quantpulse.models import MARKET_CLOSED, MARKET_OPEN, Bar, Profile, Quote
from quantpulse.periods import PERIODS, Period
from quantpulse.providers.demo import MAX_YEARS, DemoProvider
from quantpulse.symbols import Instrument

REPO_ROOT = Path(__file__).resolve().parents[2]

RELIANCE = Instrument("RELIANCE", "NSE")
RELIANCE_BSE = Instrument("RELIANCE", "BSE")
UNKNOWN = Instrument("NEWCO", "NSE")
SAMPLE = [RELIANCE, RELIANCE_BSE, Instrument("M&M", "NSE"), Instrument("BAJAJ-AUTO", "BSE"), UNKNOWN]

# A Wednesday (the Tuesday before is Guru Nanak Jayanti, an NSE holiday).
IN_SESSION = datetime(2026, 11, 25, 11, 41, 30, tzinfo=IST)
# Not the morning after a holiday: the demo price history sees weekdays only.
BEFORE_OPEN = datetime(2026, 11, 26, 8, 0, tzinfo=IST)
AFTER_CLOSE = datetime(2026, 11, 25, 16, 0, tzinfo=IST)
FRIDAY_EVENING = datetime(2026, 11, 27, 18, 0, tzinfo=IST)
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=IST)
CLOCKS = [IN_SESSION, BEFORE_OPEN, AFTER_CLOSE, SATURDAY]


def demo_at(moment: datetime) -> DemoProvider:
    return DemoProvider(clock=lambda: moment)


def quote_at(moment: datetime, instrument: Instrument = RELIANCE) -> Quote:
    outcome = demo_at(moment).quotes([instrument])[instrument]
    assert isinstance(outcome, Quote)
    return outcome


def history_at(moment: datetime, period: str, instrument: Instrument = RELIANCE) -> tuple[Bar, ...]:
    return demo_at(moment).history(instrument, PERIODS[period]).bars


def session_day(bar: Bar) -> date:
    return date.fromisoformat(bar.date[:10])


def test_two_providers_with_the_same_clock_give_identical_numbers() -> None:
    first, second = demo_at(IN_SESSION), demo_at(IN_SESSION)
    assert first.quotes(SAMPLE) == second.quotes(SAMPLE)
    for period in ("1d", "1mo", "max"):
        assert first.history(RELIANCE, PERIODS[period]) == second.history(RELIANCE, PERIODS[period])


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_a_fresh_interpreter_with_another_hash_seed_gives_the_same_numbers(hash_seed: str) -> None:
    script = (
        "from datetime import datetime; from quantpulse.market import IST;"
        "from quantpulse.periods import PERIODS; from quantpulse.symbols import Instrument;"
        "from quantpulse.providers.demo import DemoProvider;"
        "i = Instrument('RELIANCE', 'NSE');"
        "p = DemoProvider(lambda: datetime(2026, 11, 25, 11, 41, 30, tzinfo=IST));"
        "print(p.quotes([i])[i].price, p.history(i, PERIODS['1y']).bars[0].close)"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    expected = f"{quote_at(IN_SESSION).price} {history_at(IN_SESSION, '1y')[0].close}"
    assert result.stdout.strip() == expected


def test_price_moves_from_minute_to_minute_during_the_session() -> None:
    minutes = [IN_SESSION + timedelta(minutes=n) for n in range(30)]
    quotes = [quote_at(moment) for moment in minutes]
    assert len({q.price for q in quotes}) > 10
    assert quote_at(datetime(2026, 11, 25, 9, 30, tzinfo=IST)).price != quote_at(IN_SESSION).price
    assert [q.last_trade_at for q in quotes] == [m.replace(second=0).astimezone(UTC) for m in minutes]


def test_volume_grows_through_the_session() -> None:
    volumes = [quote_at(IN_SESSION.replace(hour=hour)).volume for hour in (10, 11, 12, 13, 14, 15)]
    assert volumes == sorted(volumes)
    assert volumes[0] > 0


@pytest.mark.parametrize("instrument", SAMPLE, ids=str)
@pytest.mark.parametrize("moment", CLOCKS, ids=lambda m: m.isoformat())
def test_quote_is_internally_consistent(instrument: Instrument, moment: datetime) -> None:
    quote = quote_at(moment, instrument)
    assert quote.change == quote.price - quote.previous_close
    assert round(quote.change_percent, 2) == round(quote.change / quote.previous_close * 100, 2)
    assert quote.low <= min(quote.open, quote.price)
    assert max(quote.open, quote.price) <= quote.high
    assert all(price % Decimal("0.05") == 0 for price in (quote.price, quote.previous_close, quote.open))
    assert (quote.symbol, quote.exchange, quote.currency) == (instrument.ticker, instrument.exchange, "INR")
    assert quote.market_state == (MARKET_OPEN if moment == IN_SESSION else MARKET_CLOSED)


@pytest.mark.parametrize("moment", [IN_SESSION, SATURDAY], ids=["in-session", "saturday"])
@pytest.mark.parametrize("period", PERIODS.values(), ids=lambda p: p.name)
def test_history_bars_are_oldest_first_on_trading_days_and_consistent(
    period: Period, moment: datetime
) -> None:
    history = demo_at(moment).history(RELIANCE, period)
    bars = history.bars
    assert history.interval == period.interval
    assert bars
    assert [bar.date for bar in bars] == sorted({bar.date for bar in bars})
    assert all(is_trading_day(session_day(bar)) for bar in bars)
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high, bar
        assert bar.volume >= 0
    today = moment.date()
    start = period.start_date(today) or months_before(today, MAX_YEARS * 12)
    assert session_day(bars[0]) >= start


@pytest.mark.parametrize("moment", [IN_SESSION, SATURDAY], ids=["in-session", "saturday"])
@pytest.mark.parametrize("period", ["1d", "5d"])
def test_intraday_history_covers_whole_sessions_in_ist(period: str, moment: datetime) -> None:
    bars = history_at(moment, period)
    sessions = PERIODS[period].sessions
    assert len({session_day(bar) for bar in bars}) == sessions
    assert all(bar.date.endswith("+05:30") for bar in bars)
    times = {datetime.fromisoformat(bar.date).time().isoformat() for bar in bars}
    assert min(times) == "09:15:00"
    assert max(times) <= "15:25:00"


def test_closed_session_has_every_intraday_bar() -> None:
    bars = history_at(AFTER_CLOSE, "1d")
    assert len(bars) == 75
    assert bars[-1].date == "2026-11-25T15:25:00+05:30"


@pytest.mark.parametrize("instrument", [RELIANCE, RELIANCE_BSE, UNKNOWN], ids=str)
@pytest.mark.parametrize("moment", CLOCKS, ids=lambda m: m.isoformat())
def test_latest_bars_agree_with_the_quote(instrument: Instrument, moment: datetime) -> None:
    quote = quote_at(moment, instrument)
    *_, previous, latest = history_at(moment, "1mo", instrument)
    assert latest.close == quote.price
    assert previous.close == quote.previous_close
    assert (latest.open, latest.high, latest.low, latest.volume) == (
        quote.open,
        quote.high,
        quote.low,
        quote.volume,
    )
    assert quote.last_trade_at is not None
    assert latest.date == quote.last_trade_at.astimezone(IST).date().isoformat()
    assert history_at(moment, "1d", instrument)[-1].close == quote.price


def test_recent_daily_bars_agree_with_the_intraday_bars() -> None:
    intraday = history_at(IN_SESSION, "5d")
    daily = {bar.date: bar for bar in history_at(IN_SESSION, "1mo")}
    for day in {bar.date[:10] for bar in intraday}:
        bars = [bar for bar in intraday if bar.date.startswith(day)]
        merged = (
            bars[0].open,
            max(bar.high for bar in bars),
            min(bar.low for bar in bars),
            bars[-1].close,
            sum(bar.volume for bar in bars),
        )
        expected = daily[day]
        assert merged == (expected.open, expected.high, expected.low, expected.close, expected.volume)


def test_weekend_shows_fridays_close_and_a_closed_market() -> None:
    saturday, friday = quote_at(SATURDAY), quote_at(FRIDAY_EVENING)
    assert saturday == friday
    assert saturday.market_state == MARKET_CLOSED
    assert saturday.last_trade_at == datetime(2026, 11, 27, 15, 30, tzinfo=IST)
    assert history_at(SATURDAY, "1mo")[-1].date == "2026-11-27"


def test_bse_trades_within_a_fraction_of_a_percent_of_nse() -> None:
    for ticker in ("RELIANCE", "MARUTI", "ITC", "NEWCO"):
        nse = quote_at(IN_SESSION, Instrument(ticker, "NSE")).price
        bse = quote_at(IN_SESSION, Instrument(ticker, "BSE")).price
        assert abs(bse - nse) / nse < Decimal("0.005")


def test_known_company_starts_near_its_table_price_with_its_real_name() -> None:
    quote = quote_at(IN_SESSION)
    assert quote.company_name == "Reliance Industries Ltd"
    table_price = companies.all_companies()["RELIANCE"].price
    assert table_price / 3 < quote.price < table_price * 3


def test_unknown_ticker_gets_a_plausible_price_but_no_invented_name() -> None:
    quote = quote_at(IN_SESSION, UNKNOWN)
    assert quote.company_name == "NEWCO"
    assert Decimal(10) < quote.price < Decimal(20000)
    assert quote.volume > 0


def test_profile_of_a_known_company_comes_from_the_table() -> None:
    profile = demo_at(IN_SESSION).profile(RELIANCE)
    company = companies.all_companies()["RELIANCE"]
    assert profile.name == company.name
    assert (profile.sector, profile.industry) == (company.sector, company.industry)
    assert profile.market_cap == quote_at(IN_SESSION).price * company.shares
    assert profile.employees == company.employees
    assert profile.website == "https://www.ril.com"
    assert profile.description and company.name in profile.description
    assert profile.currency == "INR"


def test_profile_of_an_unknown_ticker_invents_nothing() -> None:
    assert demo_at(IN_SESSION).profile(UNKNOWN) == Profile("NEWCO", None, None, None, None, None, None, "INR")


def test_company_table_holds_real_large_caps() -> None:
    assert len(companies.all_companies()) >= 15
    assert companies.company_name("m&m") == "Mahindra & Mahindra Ltd"
    assert companies.company_name("BAJAJ-AUTO") == "Bajaj Auto Ltd"
    assert companies.lookup("NEWCO") is None
    for ticker, company in companies.all_companies().items():
        assert company.ticker == ticker
        assert company.name and company.name != ticker
        assert company.website.startswith("https://")
        market_cap = company.price * company.shares
        assert Decimal("1e11") < market_cap < Decimal("5e13"), ticker  # ₹10k crore to ₹50 lakh crore


# ---- the market clock (MARKET_HOURS) --------------------------------------------------------


def demo_quote(moment: datetime, market: MarketCalendar) -> Quote:
    outcome = DemoProvider(clock=lambda: moment, market=market).quotes([RELIANCE])[RELIANCE]
    assert isinstance(outcome, Quote)
    return outcome


def test_always_open_demo_prices_move_at_any_hour_even_on_a_saturday() -> None:
    market = MarketCalendar("always_open")
    moments = [SATURDAY + timedelta(minutes=minute) for minute in range(0, 30, 5)]
    quotes = [demo_quote(moment, market) for moment in moments]

    assert {quote.market_state for quote in quotes} == {MARKET_OPEN}
    assert len({quote.price for quote in quotes}) > 1


def test_always_closed_demo_prices_are_frozen_at_the_last_close_even_in_session_hours() -> None:
    market = MarketCalendar("always_closed")
    moments = [IN_SESSION + timedelta(minutes=minute) for minute in range(0, 30, 5)]
    quotes = [demo_quote(moment, market) for moment in moments]

    assert {quote.market_state for quote in quotes} == {MARKET_CLOSED}
    assert len({quote.price for quote in quotes}) == 1
    # the latest close before the session in progress: Monday's
    assert quotes[0].last_trade_at == datetime(2026, 11, 23, 15, 30, tzinfo=IST).astimezone(UTC)


def test_on_an_exchange_holiday_the_demo_quote_is_closed_and_frozen() -> None:
    republic_day = datetime(2026, 1, 26, 11, 0, tzinfo=IST)  # a Monday, an NSE holiday
    market = MarketCalendar("calendar")
    first, later = demo_quote(republic_day, market), demo_quote(republic_day + timedelta(minutes=30), market)

    assert (first.market_state, later.market_state) == (MARKET_CLOSED, MARKET_CLOSED)
    assert first.price == later.price
    assert first.last_trade_at == datetime(2026, 1, 23, 15, 30, tzinfo=IST).astimezone(UTC)  # Friday's close


def test_a_special_session_by_override_shows_the_demo_market_open_and_moving() -> None:
    sunday_evening = datetime(2026, 11, 8, 18, 30, tzinfo=IST)
    market = MarketCalendar("calendar", [(date(2026, 11, 8), (time(18, 0), time(19, 15)))])

    quote = demo_quote(sunday_evening, market)
    later = demo_quote(sunday_evening + timedelta(minutes=20), market)

    assert quote.market_state == MARKET_OPEN
    assert quote.last_trade_at == sunday_evening.astimezone(UTC), "trading in that session, not frozen"
    assert later.last_trade_at == (sunday_evening + timedelta(minutes=20)).astimezone(UTC)
    assert quote.price != later.price


def test_always_open_demo_quotes_never_trade_in_the_future() -> None:
    market = MarketCalendar("always_open")
    for hour in (0, 2, 8, 11, 20, 23):
        moment = datetime(2026, 11, 25, hour, 7, 30, tzinfo=IST)
        assert demo_quote(moment, market).last_trade_at == moment.replace(second=0).astimezone(UTC)
