"""Finnhub adapter against the recorded bodies (tests/fixtures/providers/README.md, quirks F1–F8)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from responses import matchers

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.market import IST
from quantpulse.models import MARKET_CLOSED, MARKET_OPEN, Quote
from quantpulse.periods import PERIODS
from quantpulse.providers.finnhub import candle_params
from quantpulse.symbols import Instrument

BASE_URL = "https://fh.test"
QUOTE_URL = f"{BASE_URL}/quote"
CANDLE_URL = f"{BASE_URL}/stock/candle"
PROFILE_URL = f"{BASE_URL}/stock/profile2"

RELIANCE = Instrument("RELIANCE", "NSE")
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
NOW = datetime(2025, 6, 13, 10, 30, tzinfo=UTC)  # Fri 16:00 IST, for the pure param builders

# (fixture, HTTP status it is sent with, kind, endpoint, message pattern)
ERROR_CASES = [
    ("finnhub-error-premium", 403, FailureKind.PLAN, "/stock/candle", "access to this resource"),
    # The entitlement text has also come with a 401 (F5): the text decides, not the status.
    ("finnhub-error-premium", 401, FailureKind.PLAN, "/stock/profile2", "access to this resource"),
    ("finnhub-error-invalid-key", 401, FailureKind.AUTH, "/stock/candle", "Invalid API key"),
    ("finnhub-error-invalid-key", 200, FailureKind.AUTH, "/stock/profile2", "Invalid API key"),
    ("finnhub-error-rate-limit", 429, FailureKind.RATE_LIMITED, "/stock/candle", "API limit reached"),
]


def _request(provider, endpoint: str):
    if endpoint == "/stock/profile2":
        return provider.profile(RELIANCE)
    return provider.history(RELIANCE, PERIODS["1mo"])


def _ist_midnight(year: int, month: int, day: int) -> str:
    return str(int(datetime(year, month, day, tzinfo=IST).timestamp()))


# --- quotes -------------------------------------------------------------------------------


def test_quote_maps_json_numbers_to_exact_decimals(finnhub, upstream, fixture_body, frozen_now):
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-ok"))

    quote = finnhub.quotes([RELIANCE])[RELIANCE]

    assert isinstance(quote, Quote)
    assert (quote.symbol, quote.exchange, quote.currency) == ("RELIANCE", "NSE", "INR")
    assert quote.price == Decimal("1439.2")
    assert quote.previous_close == Decimal("1434.5")
    assert (quote.change, quote.change_percent) == (Decimal("4.7"), Decimal("0.3276"))
    assert (quote.open, quote.high, quote.low) == (Decimal(1431), Decimal("1447.9"), Decimal("1428.1"))
    assert quote.last_trade_at == datetime(2025, 6, 13, 9, 59, tzinfo=UTC)
    # Finnhub quotes carry neither a volume nor a company name.
    assert quote.volume == 0
    assert quote.company_name is None


def test_quote_without_change_fields_computes_them_from_prices(finnhub, upstream, fixture_body):
    body = fixture_body("finnhub-quote-ok")
    del body["d"], body["dp"]  # older answers left them out (F1)
    upstream.get(QUOTE_URL, json=body)

    quote = finnhub.quotes([RELIANCE])[RELIANCE]

    assert quote.change == Decimal("4.7")
    assert quote.change_percent == Decimal("4.7") / Decimal("1434.5") * 100


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (datetime(2025, 6, 13, 5, 0, tzinfo=UTC), MARKET_OPEN),  # 10:30 IST, Friday
        (datetime(2025, 6, 13, 10, 30, tzinfo=UTC), MARKET_CLOSED),  # 16:00 IST
        (datetime(2025, 6, 14, 5, 0, tzinfo=UTC), MARKET_CLOSED),  # Saturday
        (datetime(2026, 11, 24, 5, 0, tzinfo=UTC), MARKET_CLOSED),  # 10:30 IST, Guru Nanak Jayanti
    ],
)
def test_quote_market_state_follows_the_nse_session_clock(finnhub, upstream, fixture_body, clock, now, state):
    clock.now = now
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-ok"))

    quote = finnhub.quotes([RELIANCE])[RELIANCE]

    assert quote.market_state == state


@pytest.mark.parametrize(("exchange", "symbol"), [("NSE", "RELIANCE.NS"), ("BSE", "RELIANCE.BO")])
def test_quote_request_sends_suffixed_symbol_and_key_only_in_header(
    finnhub, upstream, fixture_body, exchange, symbol
):
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-ok"))

    finnhub.quotes([Instrument("RELIANCE", exchange)])

    (call,) = upstream.calls
    assert call.request.params == {"symbol": symbol}
    assert call.request.headers["X-Finnhub-Token"] == "fh-key"
    assert "fh-key" not in call.request.url
    assert "token" not in call.request.url


def test_all_zero_quote_is_not_found_and_not_retried(finnhub, upstream, observer, fixture_body):
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-unknown-symbol"))

    outcome = finnhub.quotes([RELIANCE])[RELIANCE]

    assert isinstance(outcome, ProviderError)
    assert outcome.kind is FailureKind.NOT_FOUND
    assert outcome.provider == "finnhub"
    assert len(upstream.calls) == 1
    assert observer.outcomes == [("finnhub", "/quote", FailureKind.NOT_FOUND)]


def test_batch_sends_one_request_per_symbol_and_one_failure_spares_the_others(
    finnhub, upstream, observer, fixture_body
):
    tickers = ("RELIANCE", "TCS", "ZZZZZZ")
    for ticker in tickers:
        name = "finnhub-quote-unknown-symbol" if ticker == "ZZZZZZ" else "finnhub-quote-ok"
        upstream.get(
            QUOTE_URL,
            json=fixture_body(name),
            match=[matchers.query_param_matcher({"symbol": f"{ticker}.NS"})],
        )
    reliance, tcs, unknown = (Instrument(t, "NSE") for t in tickers)

    outcomes = finnhub.quotes([reliance, tcs, unknown])

    assert sorted(c.request.params["symbol"] for c in upstream.calls) == [
        "RELIANCE.NS",
        "TCS.NS",
        "ZZZZZZ.NS",
    ]
    assert (outcomes[reliance].symbol, outcomes[tcs].symbol) == ("RELIANCE", "TCS")
    assert outcomes[tcs].price == Decimal("1439.2")
    assert isinstance(outcomes[unknown], ProviderError)
    assert outcomes[unknown].kind is FailureKind.NOT_FOUND
    assert sorted(observer.outcomes, key=str) == sorted(
        [("finnhub", "/quote", None)] * 2 + [("finnhub", "/quote", FailureKind.NOT_FOUND)], key=str
    )


# --- candles ------------------------------------------------------------------------------


def test_candles_become_oldest_first_daily_bars(finnhub, upstream, fixture_body):
    upstream.get(CANDLE_URL, json=fixture_body("finnhub-candle-ok"))

    history = finnhub.history(RELIANCE, PERIODS["1mo"])

    assert history.interval == "1day"
    assert [b.date for b in history.bars] == [
        "2025-06-09",
        "2025-06-10",
        "2025-06-11",
        "2025-06-12",
        "2025-06-13",
    ]
    assert [b.volume for b in history.bars] == [11204931, 8107762, 7610388, 9921450, 8734215]
    first, last = history.bars[0], history.bars[-1]
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("1428.5"),
        Decimal(1448),
        Decimal("1426.2"),
        Decimal("1443.9"),
    )
    assert last.close == Decimal("1439.2")


def test_candle_no_data_for_a_known_symbol_is_an_empty_history(finnhub, upstream, observer, fixture_body):
    upstream.get(CANDLE_URL, json=fixture_body("finnhub-candle-no-data"))
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-ok"))

    history = finnhub.history(RELIANCE, PERIODS["1mo"])

    assert history.bars == ()
    assert observer.outcomes == [("finnhub", "/stock/candle", None), ("finnhub", "/quote", None)]


def test_candle_no_data_for_an_unknown_symbol_is_not_found(finnhub, upstream, fixture_body):
    upstream.get(CANDLE_URL, json=fixture_body("finnhub-candle-no-data"))
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-unknown-symbol"))

    with pytest.raises(ProviderError) as excinfo:
        finnhub.history(RELIANCE, PERIODS["1mo"])

    assert excinfo.value.kind is FailureKind.NOT_FOUND


def _epoch_ist(day: int, hour: int, minute: int) -> int:
    return int(datetime(2025, 6, day, hour, minute, tzinfo=IST).timestamp())


def test_intraday_candles_keep_only_the_latest_session_in_ist(finnhub, upstream):
    stamps = [_epoch_ist(12, 15, 20), _epoch_ist(12, 15, 25), _epoch_ist(13, 15, 20), _epoch_ist(13, 15, 25)]
    prices = [1433.0, 1434.5, 1438.0, 1439.2]
    upstream.get(
        CANDLE_URL,
        json={"s": "ok", "t": stamps, "o": prices, "h": prices, "l": prices, "c": prices, "v": [5, 6, 7, 8]},
    )

    history = finnhub.history(RELIANCE, PERIODS["1d"])

    assert history.interval == "5min"
    assert [b.date for b in history.bars] == ["2025-06-13T15:20:00+05:30", "2025-06-13T15:25:00+05:30"]
    assert [(b.close, b.volume) for b in history.bars] == [(Decimal("1438.0"), 7), (Decimal("1439.2"), 8)]
    assert upstream.calls[0].request.params["resolution"] == "5"


def test_candle_request_carries_symbol_resolution_and_unix_range(finnhub, upstream, fixture_body, frozen_now):
    upstream.get(CANDLE_URL, json=fixture_body("finnhub-candle-ok"))

    finnhub.history(Instrument("RELIANCE", "BSE"), PERIODS["1mo"])

    (call,) = upstream.calls
    assert call.request.params == {
        "symbol": "RELIANCE.BO",
        "resolution": "D",
        "from": _ist_midnight(2025, 5, 13),
        "to": str(int(frozen_now.timestamp())),
    }
    assert call.request.headers["X-Finnhub-Token"] == "fh-key"
    assert "fh-key" not in call.request.url


@pytest.mark.parametrize(
    ("period", "resolution", "start"),
    [
        ("1d", "5", str(int((NOW - timedelta(days=7)).timestamp()))),
        ("5d", "15", str(int((NOW - timedelta(days=15)).timestamp()))),
        ("1mo", "D", _ist_midnight(2025, 5, 13)),
        ("1y", "D", _ist_midnight(2024, 6, 13)),
        ("ytd", "D", _ist_midnight(2025, 1, 1)),
        ("2y", "W", _ist_midnight(2023, 6, 13)),
        ("10y", "M", _ist_midnight(2015, 6, 13)),
        ("max", "M", "0"),
    ],
)
def test_candle_params_per_period(period, resolution, start):
    params = candle_params(RELIANCE, PERIODS[period], NOW)

    assert params == {
        "symbol": "RELIANCE.NS",
        "resolution": resolution,
        "from": start,
        "to": str(int(NOW.timestamp())),
    }


# --- profile ------------------------------------------------------------------------------


def test_profile2_scales_market_cap_from_millions_and_uses_industry_as_sector(
    finnhub, upstream, fixture_body
):
    upstream.get(PROFILE_URL, json=fixture_body("finnhub-profile2-ok"))

    profile = finnhub.profile(RELIANCE)

    assert profile.name == "Reliance Industries Ltd"
    assert profile.market_cap == Decimal(19_475_412_470_000)
    assert profile.sector == "Energy"
    assert profile.industry is None
    assert profile.website == "https://www.ril.com/"
    assert profile.currency == "INR"
    assert upstream.calls[0].request.params == {"symbol": "RELIANCE.NS"}


def test_empty_profile2_is_not_found_and_not_retried(finnhub, upstream, observer, fixture_body):
    upstream.get(PROFILE_URL, json=fixture_body("finnhub-profile2-unknown"))

    with pytest.raises(ProviderError, match="no such symbol") as excinfo:
        finnhub.profile(RELIANCE)

    assert excinfo.value.kind is FailureKind.NOT_FOUND
    assert len(upstream.calls) == 1
    assert observer.outcomes == [("finnhub", "/stock/profile2", FailureKind.NOT_FOUND)]


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "status", "kind", "endpoint", "pattern"), ERROR_CASES)
def test_error_body_is_classified_by_its_text(
    finnhub, upstream, observer, fixture_body, fixture, status, kind, endpoint, pattern
):
    upstream.get(BASE_URL + endpoint, json=fixture_body(fixture), status=status)

    with pytest.raises(ProviderError, match=pattern) as excinfo:
        _request(finnhub, endpoint)

    assert excinfo.value.kind is kind
    assert excinfo.value.provider == "finnhub"
    assert len(upstream.calls) == 1
    assert observer.outcomes == [("finnhub", endpoint, kind)]


@pytest.mark.parametrize(
    ("reset_in", "expected"),
    [(20, range(18, 21)), (-5, range(1, 2)), (None, range(60, 61))],
    ids=["reset-header", "reset-in-the-past", "no-header"],
)
def test_rate_limit_retry_after_comes_from_the_reset_header(
    finnhub, upstream, fixture_body, reset_in, expected
):
    headers = {"X-Ratelimit-Remaining": "0"}
    if reset_in is not None:
        headers["X-Ratelimit-Reset"] = str(int(time.time()) + reset_in)
    upstream.get(CANDLE_URL, json=fixture_body("finnhub-error-rate-limit"), status=429, headers=headers)

    with pytest.raises(ProviderError, match="API limit reached") as excinfo:
        finnhub.history(RELIANCE, PERIODS["1mo"])

    error = excinfo.value
    assert (error.kind, error.scope) == (FailureKind.RATE_LIMITED, "minute")
    assert error.retry_after in expected


# --- transient failures and the one retry --------------------------------------------------


@pytest.mark.parametrize(("body", "status"), [(HTML_502, 502), ("", 200)], ids=["html-502", "empty-200"])
def test_non_json_answer_is_transient_and_retried_exactly_once(finnhub, upstream, observer, body, status):
    upstream.get(PROFILE_URL, body=body, status=status, content_type="text/html")

    with pytest.raises(ProviderError) as excinfo:
        finnhub.profile(RELIANCE)

    assert excinfo.value.kind is FailureKind.TRANSIENT
    assert len(upstream.calls) == 2
    assert observer.outcomes == [("finnhub", "/stock/profile2", FailureKind.TRANSIENT)] * 2


def test_transient_failure_then_success_returns_the_second_answer(finnhub, upstream, observer, fixture_body):
    upstream.get(QUOTE_URL, body=HTML_502, status=502, content_type="text/html")
    upstream.get(QUOTE_URL, json=fixture_body("finnhub-quote-ok"))

    quote = finnhub.quotes([RELIANCE])[RELIANCE]

    assert isinstance(quote, Quote)
    assert len(upstream.calls) == 2
    assert observer.outcomes == [
        ("finnhub", "/quote", FailureKind.TRANSIENT),
        ("finnhub", "/quote", None),
    ]
