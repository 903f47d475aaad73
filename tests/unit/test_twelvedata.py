"""Twelve Data adapter against the recorded bodies (tests/fixtures/providers/README.md, quirks T1–T11)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.models import MARKET_CLOSED, MARKET_UNKNOWN, Quote
from quantpulse.periods import PERIODS
from quantpulse.providers.twelvedata import time_series_params
from quantpulse.symbols import Instrument

BASE_URL = "https://td.test"
QUOTE_URL = f"{BASE_URL}/quote"
TIME_SERIES_URL = f"{BASE_URL}/time_series"
PROFILE_URL = f"{BASE_URL}/profile"

RELIANCE = Instrument("RELIANCE", "NSE")
BATCH = [Instrument(t, "NSE") for t in ("RELIANCE", "TCS", "INFY", "HDFCBANK")]
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
NO_DATA = {
    "code": 400,
    "message": "No data is available on the specified dates. Try setting different start/end dates.",
    "status": "error",
}

# (fixture, its real HTTP status, kind, the endpoint it answers, message pattern)
ERROR_CASES = [
    ("twelvedata-error-invalid-key", 401, FailureKind.AUTH, "/time_series", r"\*\*apikey\*\*"),
    ("twelvedata-error-symbol-not-found", 404, FailureKind.NOT_FOUND, "/time_series", r"\*\*symbol\*\*"),
    ("twelvedata-error-credits-exhausted", 429, FailureKind.RATE_LIMITED, "/time_series", "current minute"),
    ("twelvedata-error-credits-daily", 429, FailureKind.RATE_LIMITED, "/time_series", "for the day"),
    ("twelvedata-error-plan", 404, FailureKind.PLAN, "/time_series", "starting with Grow plan"),
    ("twelvedata-error-endpoint-plan", 403, FailureKind.PLAN, "/profile", "available exclusively"),
]


def _request(provider, endpoint: str):
    if endpoint == "/profile":
        return provider.profile(RELIANCE)
    return provider.history(RELIANCE, PERIODS["1mo"])


# --- quotes -------------------------------------------------------------------------------


def test_single_quote_parses_string_prices_as_exact_decimals(twelvedata, upstream, fixture_body):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-quote-ok"))

    quote = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert isinstance(quote, Quote)
    assert (quote.symbol, quote.exchange, quote.currency) == ("RELIANCE", "NSE", "INR")
    assert quote.company_name == "Reliance Industries Ltd."
    assert str(quote.price) == "1439.20000"
    assert quote.previous_close == Decimal("1434.5")
    assert (quote.open, quote.high, quote.low) == (Decimal(1431), Decimal("1447.9"), Decimal("1428.1"))
    assert quote.change == Decimal("4.7")
    assert quote.change_percent == Decimal("0.32764")
    assert quote.volume == 8734215


def test_quote_market_state_and_trade_time_come_from_is_market_open_and_last_quote_at(
    twelvedata, upstream, fixture_body
):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-quote-ok"))

    quote = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert quote.market_state == MARKET_CLOSED
    # last_quote_at (15:29 IST), not timestamp (the 09:15 IST bar opening).
    assert quote.last_trade_at == datetime(2025, 6, 13, 9, 59, tzinfo=UTC)


@pytest.mark.parametrize("exchange", ["NSE", "BSE"])
def test_quote_request_sends_plain_ticker_with_exchange_and_key_only_in_header(
    twelvedata, upstream, fixture_body, exchange
):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-quote-ok"))

    twelvedata.quotes([Instrument("RELIANCE", exchange)])

    (call,) = upstream.calls
    assert call.request.params == {"symbol": "RELIANCE", "exchange": exchange}
    assert call.request.headers["Authorization"] == "apikey td-key"
    assert "td-key" not in call.request.url
    assert "apikey" not in call.request.url
    assert ".NSE" not in call.request.url and ".BSE" not in call.request.url


def test_comma_batch_sends_one_request_and_returns_a_quote_per_symbol(twelvedata, upstream, fixture_body):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-quote-batch-ok"))

    outcomes = twelvedata.quotes(BATCH)

    (call,) = upstream.calls
    assert call.request.params == {"symbol": "RELIANCE,TCS,INFY,HDFCBANK", "exchange": "NSE"}
    assert set(outcomes) == set(BATCH)
    assert all(isinstance(q, Quote) for q in outcomes.values())
    assert {i.ticker: (q.symbol, q.price) for i, q in outcomes.items()} == {
        "RELIANCE": ("RELIANCE", Decimal("1439.2")),
        "TCS": ("TCS", Decimal("3466.8")),
        "INFY": ("INFY", Decimal("1618.4")),
        "HDFCBANK": ("HDFCBANK", Decimal("1936.9")),
    }
    assert outcomes[Instrument("HDFCBANK", "NSE")].change == Decimal("-11.4")


def test_batch_error_for_one_symbol_fails_only_that_symbol(twelvedata, upstream, fixture_body):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-batch-partial-error"))
    bad = Instrument("RELIANC", "NSE")
    good = [Instrument("RELIANCE", "NSE"), Instrument("TCS", "NSE")]

    outcomes = twelvedata.quotes([*good, bad])

    assert len(upstream.calls) == 1
    error = outcomes[bad]
    assert isinstance(error, ProviderError)
    assert error.kind is FailureKind.NOT_FOUND
    assert error.provider == "twelvedata"
    assert [outcomes[i].price for i in good] == [Decimal("1439.2"), Decimal("3466.8")]


@pytest.mark.parametrize("http_status", [200, 429])
def test_whole_batch_error_fails_every_symbol_of_the_request(twelvedata, upstream, fixture_body, http_status):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-error-credits-exhausted"), status=http_status)

    outcomes = twelvedata.quotes(BATCH)

    assert len(upstream.calls) == 1
    assert {type(o) for o in outcomes.values()} == {ProviderError}
    assert {o.kind for o in outcomes.values()} == {FailureKind.RATE_LIMITED}


def test_batch_is_cut_to_the_credits_the_fleet_has_left(twelvedata, upstream, observer, fixture_body):
    observer.grant = 2
    both = fixture_body("twelvedata-quote-batch-ok")
    upstream.get(QUOTE_URL, json={ticker: both[ticker] for ticker in ("RELIANCE", "TCS")})

    outcomes = twelvedata.quotes(BATCH)

    assert [call.request.params["symbol"] for call in upstream.calls] == ["RELIANCE,TCS"]
    assert all(isinstance(outcomes[i], Quote) for i in BATCH[:2])
    for instrument in BATCH[2:]:
        assert outcomes[instrument].kind is FailureKind.RATE_LIMITED
        assert outcomes[instrument].scope == "budget"
    assert observer.admitted == [("twelvedata", "/quote", "NSE", 2)]


def test_profile_is_charged_ten_credits(twelvedata, upstream, observer, fixture_body):
    upstream.get(PROFILE_URL, json=fixture_body("twelvedata-profile-ok"))

    twelvedata.profile(RELIANCE)

    assert observer.admitted == [("twelvedata", "/profile", "NSE", 10)]


def test_a_plan_error_inside_a_batch_teaches_provider_health(twelvedata, upstream, observer, fixture_body):
    plan_item = {**fixture_body("twelvedata-error-plan"), "meta": {"symbol": "RELIANCE,TCS"}}
    upstream.get(QUOTE_URL, json={"RELIANCE": plan_item, "TCS": plan_item})

    twelvedata.quotes(BATCH[:2])

    assert [error.kind for error in observer.learned] == [FailureKind.PLAN]


def test_quotes_on_two_exchanges_send_one_request_per_exchange(twelvedata, upstream, fixture_body):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-quote-ok"))

    twelvedata.quotes([Instrument("RELIANCE", "NSE"), Instrument("RELIANCE", "BSE")])

    assert sorted(c.request.params["exchange"] for c in upstream.calls) == ["BSE", "NSE"]


def test_answer_without_a_quote_is_a_transient_error_for_that_symbol(twelvedata, upstream, fixture_body):
    # A /price body has no symbol and no close: nothing usable, but no crash either.
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-price-ok"))

    outcome = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert isinstance(outcome, ProviderError)
    assert outcome.kind is FailureKind.TRANSIENT


def test_quote_with_null_fields_falls_back_to_computed_move_and_bar_timestamp(
    twelvedata, upstream, fixture_body
):
    body = fixture_body("twelvedata-quote-ok")
    body.update(change=None, percent_change=None, is_market_open=None, last_quote_at=None)
    upstream.get(QUOTE_URL, json=body)

    quote = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert quote.change == Decimal("4.7")
    assert quote.change_percent == Decimal("4.7") / Decimal("1434.5") * 100
    assert quote.market_state == MARKET_UNKNOWN
    assert quote.last_trade_at == datetime(2025, 6, 13, 3, 45, tzinfo=UTC)


# --- time series --------------------------------------------------------------------------


def test_daily_time_series_is_oldest_first_with_plain_dates(twelvedata, upstream, observer, fixture_body):
    body = fixture_body("twelvedata-time_series-ok")
    assert body["status"] == "ok"
    upstream.get(TIME_SERIES_URL, json=body)

    history = twelvedata.history(RELIANCE, PERIODS["1mo"])

    assert history.interval == "1day"
    assert [b.date for b in history.bars] == [
        "2025-06-09",
        "2025-06-10",
        "2025-06-11",
        "2025-06-12",
        "2025-06-13",
    ]
    first, last = history.bars[0], history.bars[-1]
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("1428.5"),
        Decimal(1448),
        Decimal("1426.2"),
        Decimal("1443.9"),
        11204931,
    )
    assert (last.close, last.volume) == (Decimal("1439.2"), 8734215)
    assert observer.outcomes == [("twelvedata", "/time_series", None)]


@pytest.mark.parametrize("http_status", [200, 400])
def test_no_data_for_the_dates_is_an_empty_history(twelvedata, upstream, http_status):
    upstream.get(TIME_SERIES_URL, json=NO_DATA, status=http_status)

    history = twelvedata.history(RELIANCE, PERIODS["1mo"])

    assert history.bars == ()
    assert len(upstream.calls) == 1


def _intraday_value(stamp: str, close: str) -> dict[str, str]:
    """An intraday bar as Twelve Data sends it: strings, and no volume (optional, T10)."""
    return {"datetime": stamp, "open": close, "high": close, "low": close, "close": close}


def test_intraday_history_keeps_only_the_latest_session_in_ist(twelvedata, upstream):
    upstream.get(
        TIME_SERIES_URL,
        json={
            "meta": {"symbol": "RELIANCE", "interval": "5min", "exchange_timezone": "Asia/Kolkata"},
            "values": [
                _intraday_value("2025-06-13 15:25:00", "1439.2"),
                _intraday_value("2025-06-13 15:20:00", "1438.0"),
                _intraday_value("2025-06-12 15:25:00", "1434.5"),
                _intraday_value("2025-06-12 15:20:00", "1433.0"),
            ],
            "status": "ok",
        },
    )

    history = twelvedata.history(RELIANCE, PERIODS["1d"])

    assert history.interval == "5min"
    assert [b.date for b in history.bars] == ["2025-06-13T15:20:00+05:30", "2025-06-13T15:25:00+05:30"]
    assert [b.close for b in history.bars] == [Decimal("1438.0"), Decimal("1439.2")]
    assert {b.volume for b in history.bars} == {0}
    params = upstream.calls[0].request.params
    assert (params["interval"], params["outputsize"], params["timezone"]) == ("5min", "150", "Asia/Kolkata")
    assert "start_date" not in params


def test_history_request_carries_symbol_exchange_and_start_date(
    twelvedata, upstream, fixture_body, frozen_now
):
    upstream.get(TIME_SERIES_URL, json=fixture_body("twelvedata-time_series-ok"))

    twelvedata.history(Instrument("RELIANCE", "BSE"), PERIODS["1mo"])

    (call,) = upstream.calls
    assert call.request.params == {
        "symbol": "RELIANCE",
        "exchange": "BSE",
        "interval": "1day",
        "timezone": "Asia/Kolkata",
        "outputsize": "5000",
        "start_date": "2025-05-13",
    }
    assert call.request.headers["Authorization"] == "apikey td-key"
    assert "td-key" not in call.request.url


@pytest.mark.parametrize(
    ("period", "interval", "outputsize", "start_date"),
    [
        ("1d", "5min", "150", None),
        ("5d", "15min", "150", None),
        ("1mo", "1day", "5000", "2025-05-13"),
        ("3mo", "1day", "5000", "2025-03-13"),
        ("6mo", "1day", "5000", "2024-12-13"),
        ("1y", "1day", "5000", "2024-06-13"),
        ("ytd", "1day", "5000", "2025-01-01"),
        ("2y", "1week", "5000", "2023-06-13"),
        ("5y", "1week", "5000", "2020-06-13"),
        ("10y", "1month", "5000", "2015-06-13"),
        ("max", "1month", "5000", None),
    ],
)
def test_time_series_params_per_period(period, interval, outputsize, start_date):
    params = time_series_params(RELIANCE, PERIODS[period], date(2025, 6, 13))

    assert params["symbol"] == "RELIANCE" and params["exchange"] == "NSE"
    assert (params["interval"], params["outputsize"]) == (interval, outputsize)
    assert params.get("start_date") == start_date


# --- profile ------------------------------------------------------------------------------


def test_profile_maps_company_fields(twelvedata, upstream, fixture_body):
    upstream.get(PROFILE_URL, json=fixture_body("twelvedata-profile-ok"))

    profile = twelvedata.profile(RELIANCE)

    assert profile.name == "Reliance Industries Ltd."
    assert (profile.sector, profile.industry) == ("Energy", "Oil & Gas Refining & Marketing")
    assert profile.employees == 347362
    assert profile.website == "https://www.ril.com"
    assert profile.description.startswith("Reliance Industries Limited engages")
    assert profile.market_cap is None
    assert profile.currency == "INR"
    assert upstream.calls[0].request.params == {"symbol": "RELIANCE", "exchange": "NSE"}


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("sent_with", ["http 200", "real status"])
@pytest.mark.parametrize(("fixture", "status", "kind", "endpoint", "pattern"), ERROR_CASES)
def test_error_body_is_classified_whatever_the_http_status(
    twelvedata, upstream, observer, fixture_body, fixture, status, kind, endpoint, pattern, sent_with
):
    http_status = 200 if sent_with == "http 200" else status
    upstream.get(BASE_URL + endpoint, json=fixture_body(fixture), status=http_status)

    with pytest.raises(ProviderError, match=pattern) as excinfo:
        _request(twelvedata, endpoint)

    error = excinfo.value
    assert error.kind is kind
    assert error.provider == "twelvedata"
    # Permanent: sent once, never retried; the observer saw that one attempt and its kind.
    assert len(upstream.calls) == 1
    assert observer.outcomes == [("twelvedata", endpoint, kind)]


@pytest.mark.parametrize("http_status", [200, 404])
def test_plan_error_with_code_404_is_never_unknown_symbol(twelvedata, upstream, fixture_body, http_status):
    upstream.get(TIME_SERIES_URL, json=fixture_body("twelvedata-error-plan"), status=http_status)

    with pytest.raises(ProviderError, match="Grow plan") as excinfo:
        twelvedata.history(RELIANCE, PERIODS["1mo"])

    assert excinfo.value.kind is FailureKind.PLAN
    assert not excinfo.value.is_verdict


@pytest.mark.parametrize("http_status", [200, 429])
def test_minute_credit_limit_waits_for_the_next_minute(
    twelvedata, upstream, fixture_body, frozen_now, http_status
):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-error-credits-exhausted"), status=http_status)

    error = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert (error.kind, error.scope) == (FailureKind.RATE_LIMITED, "minute")
    assert 1 <= error.retry_after <= 60


@pytest.mark.parametrize("http_status", [200, 429])
def test_daily_credit_limit_waits_until_the_next_utc_day(
    twelvedata, upstream, fixture_body, frozen_now, http_status
):
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-error-credits-daily"), status=http_status)

    error = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert (error.kind, error.scope) == (FailureKind.RATE_LIMITED, "day")
    assert error.retry_after > 60
    # 10:30 UTC to midnight UTC is 13.5 h (plus one second of margin).
    assert error.retry_after == 13 * 3600 + 30 * 60 + 1


# --- transient failures and the one retry --------------------------------------------------


def test_html_502_is_transient_and_retried_exactly_once(twelvedata, upstream, observer):
    upstream.get(TIME_SERIES_URL, body=HTML_502, status=502, content_type="text/html")

    with pytest.raises(ProviderError, match="HTTP 502") as excinfo:
        twelvedata.history(RELIANCE, PERIODS["1mo"])

    assert excinfo.value.kind is FailureKind.TRANSIENT
    assert len(upstream.calls) == 2
    assert observer.outcomes == [("twelvedata", "/time_series", FailureKind.TRANSIENT)] * 2


def test_transient_failure_then_success_returns_the_second_answer(
    twelvedata, upstream, observer, fixture_body
):
    upstream.get(QUOTE_URL, body=HTML_502, status=502, content_type="text/html")
    upstream.get(QUOTE_URL, json=fixture_body("twelvedata-quote-ok"))

    quote = twelvedata.quotes([RELIANCE])[RELIANCE]

    assert isinstance(quote, Quote)
    assert quote.price == Decimal("1439.2")
    assert len(upstream.calls) == 2
    assert observer.outcomes == [
        ("twelvedata", "/quote", FailureKind.TRANSIENT),
        ("twelvedata", "/quote", None),
    ]
