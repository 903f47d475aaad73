"""The fake provider server speaks the recorded wire shapes, counts calls and fails on demand.

Other tests trust this fake to behave like Twelve Data and Finnhub, so its answers are checked
against the recorded bodies in ``tests/fixtures/providers``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import requests

from tests.fakes.provider_server import IST, FakeProviderServer
from tests.fixtures import provider_body

REPO_ROOT = Path(__file__).resolve().parents[2]

# Fri 2025-06-13 16:00 IST: the recorded trading day, half an hour after the close.
RECORDED_DAY = datetime(2025, 6, 13, 16, 0, tzinfo=IST)
AUTH = {
    "twelvedata": {"Authorization": "apikey td-test-key"},
    "finnhub": {"X-Finnhub-Token": "fh-test-key"},
}
SAMPLE_REQUEST = {
    "twelvedata": ("/quote", {"symbol": "RELIANCE", "exchange": "NSE"}),
    "finnhub": ("/quote", {"symbol": "RELIANCE.NS"}),
}


def shape(value: Any) -> Any:
    """Types instead of values; JSON has one number type, so int and float compare equal."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def get(
    server: FakeProviderServer,
    provider: str,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5,
) -> requests.Response:
    """A request as the adapters send it: key in the header unless ``headers`` says otherwise."""
    return requests.get(
        f"{server.url}/{provider}{path}",
        params=params,
        headers=AUTH[provider] if headers is None else headers,
        timeout=timeout,
    )


def sample(server: FakeProviderServer, provider: str, **kwargs: Any) -> requests.Response:
    path, params = SAMPLE_REQUEST[provider]
    return get(server, provider, path, params, **kwargs)


def quotes(server: FakeProviderServer, *symbols: str) -> requests.Response:
    """One Twelve Data /quote for ``symbols``: a comma batch when there are several."""
    return get(server, "twelvedata", "/quote", {"symbol": ",".join(symbols), "exchange": "NSE"})


def fresh_window(seconds: float, need: float = 0.5) -> None:
    """Wait, if needed, until ``need`` seconds of the current fixed window are left, so that a
    test's requests all land in one window (windows are aligned to ``time.time()``)."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.01)


def next_window(seconds: float) -> None:
    time.sleep(seconds - time.time() % seconds + 0.01)


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(clock=lambda: RECORDED_DAY) as fake:
        yield fake


def test_twelvedata_quote_has_the_recorded_shape_and_times(server: FakeProviderServer) -> None:
    recorded = provider_body("twelvedata-quote-ok")

    response = sample(server, "twelvedata")

    body = response.json()
    assert response.status_code == 200
    assert shape(body) == shape(recorded)
    assert (body["close"], body["currency"], body["mic_code"]) == ("1439.20000", "INR", "XNSE")
    assert (body["timestamp"], body["last_quote_at"]) == (
        recorded["timestamp"],
        recorded["last_quote_at"],
    )
    assert isinstance(body["timestamp"], int) and body["is_market_open"] is False
    assert response.headers["api-credits-used"] == "1"


def test_bse_listing_is_half_a_rupee_above_nse_on_both_providers(
    server: FakeProviderServer,
) -> None:
    twelvedata = get(server, "twelvedata", "/quote", {"symbol": "RELIANCE", "exchange": "BSE"})
    finnhub = get(server, "finnhub", "/quote", {"symbol": "RELIANCE.BO"})

    assert (twelvedata.json()["close"], twelvedata.json()["mic_code"]) == ("1439.70000", "XBOM")
    assert finnhub.json()["c"] == 1439.7


def test_twelvedata_batch_keeps_unknown_symbols_as_errors_inside_the_map(
    server: FakeProviderServer,
) -> None:
    recorded = provider_body("twelvedata-batch-partial-error")
    params = {"symbol": "RELIANCE,TCS,RELIANC", "exchange": "NSE"}

    response = get(server, "twelvedata", "/quote", params)

    body = response.json()
    assert response.status_code == 200
    assert shape(body) == shape(recorded)
    assert body["RELIANC"] == recorded["RELIANC"]
    assert body["TCS"]["close"] == "3466.80000"
    assert (response.headers["api-credits-used"], response.headers["Is_batch"]) == ("3", "true")


@pytest.mark.parametrize("symbol", ["RELIANC", "RELIANCE.NSE", "RELIANCE:NSE"])
def test_twelvedata_single_unknown_symbol_is_a_flat_error_sent_with_200(
    server: FakeProviderServer, symbol: str
) -> None:
    response = get(server, "twelvedata", "/quote", {"symbol": symbol, "exchange": "NSE"})

    assert response.status_code == 200
    assert response.json() == provider_body("twelvedata-error-symbol-not-found")


def test_every_provider_request_is_counted_failures_included(
    server: FakeProviderServer,
) -> None:
    sample(server, "twelvedata", headers={})
    sample(server, "twelvedata")
    sample(server, "finnhub")

    assert server.calls() == 3
    assert server.calls("twelvedata") == 2
    assert server.calls("twelvedata", "/quote") == 2
    assert server.calls(path="/time_series") == 0
    assert server.requests_log[-1] == ("finnhub", "/quote", {"symbol": "RELIANCE.NS"})
    assert requests.get(f"{server.url}/_control/calls", timeout=5).json() == {
        "twelvedata": {"/quote": 2},
        "finnhub": {"/quote": 1},
        "total": 3,
        "limits": ANY,
    }

    server.reset()

    assert (server.calls(), server.requests_log) == (0, [])


def test_concurrent_requests_are_all_counted(server: FakeProviderServer) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: sample(server, "finnhub").status_code, range(64)))

    assert statuses == [200] * 64
    assert server.calls("finnhub", "/quote") == len(server.requests_log) == 64


@pytest.mark.parametrize(
    ("provider", "headers", "recorded"),
    [
        ("twelvedata", {}, "twelvedata-error-invalid-key"),
        ("twelvedata", {"Authorization": "apikey wrong"}, "twelvedata-error-invalid-key"),
        ("twelvedata", {"Authorization": "td-test-key"}, "twelvedata-error-invalid-key"),
        ("finnhub", {}, "finnhub-error-invalid-key"),
        ("finnhub", {"X-Finnhub-Token": "wrong"}, "finnhub-error-invalid-key"),
        ("finnhub", {"Authorization": "apikey fh-test-key"}, "finnhub-error-invalid-key"),
    ],
)
def test_wrong_or_missing_key_is_a_401_with_the_provider_body(
    server: FakeProviderServer, provider: str, headers: dict[str, str], recorded: str
) -> None:
    response = sample(server, provider, headers=headers)

    assert response.status_code == 401
    assert response.json() == provider_body(recorded)


def test_key_in_the_query_string_is_detected_and_not_accepted(
    server: FakeProviderServer,
) -> None:
    sample(server, "finnhub")
    assert server.key_seen_in_url is False

    response = get(server, "finnhub", "/quote", {"symbol": "TCS.NS", "token": "fh-test-key"}, headers={})

    assert response.status_code == 401
    assert server.key_seen_in_url is True
    assert server.requests_log[-1][2] == {"symbol": "TCS.NS", "token": "***"}


@pytest.mark.parametrize(
    ("provider", "mode", "status", "recorded"),
    [
        ("twelvedata", "rate_limit", 429, "twelvedata-error-credits-exhausted"),
        ("twelvedata", "rate_limit_day", 429, "twelvedata-error-credits-daily"),
        ("twelvedata", "plan", 200, "twelvedata-error-plan"),
        ("finnhub", "rate_limit", 429, "finnhub-error-rate-limit"),
        ("finnhub", "plan", 403, "finnhub-error-premium"),
    ],
)
def test_failure_modes_answer_with_the_recorded_error(
    server: FakeProviderServer, provider: str, mode: str, status: int, recorded: str
) -> None:
    server.set_mode(provider, mode)

    response = sample(server, provider)

    assert (response.status_code, response.json()) == (status, provider_body(recorded))


def test_finnhub_rate_limit_says_nothing_remains(server: FakeProviderServer) -> None:
    assert sample(server, "finnhub").headers["X-Ratelimit-Remaining"] == "59"
    server.set_mode("finnhub", "rate_limit")

    response = sample(server, "finnhub")

    assert response.headers["X-Ratelimit-Remaining"] == "0"
    assert int(response.headers["X-Ratelimit-Reset"]) > RECORDED_DAY.timestamp()


def test_twelvedata_error_200_is_an_error_body_with_http_200(server: FakeProviderServer) -> None:
    server.set_mode("twelvedata", "error_200")

    response = sample(server, "twelvedata")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["code"]) == ("error", 500)


@pytest.mark.parametrize("provider", ["twelvedata", "finnhub"])
def test_error_500_is_an_html_bad_gateway_then_ok_after_times(
    server: FakeProviderServer, provider: str
) -> None:
    server.set_mode(provider, "error_500", times=2)

    answers = [sample(server, provider) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [502, 502, 200]
    assert answers[0].headers["Content-Type"].startswith("text/html")
    assert "Bad Gateway" in answers[0].text
    assert server.calls(provider) == 3


def test_stall_outlasts_a_short_client_timeout_without_blocking_stop() -> None:
    with FakeProviderServer() as fake:
        fake.set_mode("finnhub", "stall", stall_seconds=30)
        with pytest.raises(requests.ReadTimeout):
            sample(fake, "finnhub", timeout=0.2)

        started = time.monotonic()
        fake.stop()

        assert time.monotonic() - started < 2
        assert fake.calls("finnhub", "/quote") == 1


def test_latency_delays_every_answer_even_errors() -> None:
    with FakeProviderServer(latency=0.2) as fake:
        started = time.monotonic()
        sample(fake, "twelvedata", headers={})

        assert time.monotonic() - started >= 0.2


def test_intraday_time_series_is_newest_first_inside_weekday_sessions(
    server: FakeProviderServer,
) -> None:
    params = {"symbol": "TCS", "exchange": "NSE", "interval": "5min", "outputsize": 100}

    body = get(server, "twelvedata", "/time_series", params).json()

    recorded = provider_body("twelvedata-time_series-ok")
    stamps = [datetime.fromisoformat(value["datetime"]) for value in body["values"]]
    assert (body["status"], len(stamps)) == ("ok", 100)
    assert shape(body["meta"]) == shape(recorded["meta"])
    assert body["meta"]["exchange_timezone"] == "Asia/Kolkata"
    assert shape(body["values"]) == shape(recorded["values"])
    assert stamps[0] == datetime(2025, 6, 13, 15, 25)
    assert stamps == sorted(stamps, reverse=True)
    assert all(stamp.weekday() < 5 for stamp in stamps)
    assert all("09:15" <= f"{stamp:%H:%M}" < "15:30" for stamp in stamps)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"start_date": "2025-06-09"},
            ["2025-06-13", "2025-06-12", "2025-06-11", "2025-06-10", "2025-06-09"],
        ),
        ({"outputsize": 2}, ["2025-06-13", "2025-06-12"]),
        ({"start_date": "2025-06-05", "end_date": "2025-06-09"}, ["2025-06-09", "2025-06-06", "2025-06-05"]),
    ],
)
def test_daily_time_series_honours_dates_and_outputsize(
    server: FakeProviderServer, extra: dict[str, Any], expected: list[str]
) -> None:
    params = {"symbol": "RELIANCE", "exchange": "NSE", "interval": "1day", **extra}

    body = get(server, "twelvedata", "/time_series", params).json()

    assert [value["datetime"] for value in body["values"]] == expected


def test_time_series_without_history_is_the_no_data_error(server: FakeProviderServer) -> None:
    params = {"symbol": "NODATA", "exchange": "NSE", "interval": "1day"}

    response = get(server, "twelvedata", "/time_series", params)

    assert response.status_code == 200
    assert response.json()["code"] == 400
    assert response.json()["message"].startswith("No data is available on the specified dates")


def test_finnhub_candle_returns_only_bars_inside_the_range_oldest_first(
    server: FakeProviderServer,
) -> None:
    recorded = provider_body("finnhub-candle-ok")
    params = {"symbol": "RELIANCE.NS", "resolution": "D", "from": 1749427200, "to": 1749859199}

    body = get(server, "finnhub", "/stock/candle", params).json()

    assert shape(body) == shape(recorded)
    assert body["t"] == recorded["t"]
    assert len(body["c"]) == len(body["v"]) == 5


def test_finnhub_intraday_candle_stays_inside_from_and_to(server: FakeProviderServer) -> None:
    start, end = 1749790800, 1749794400  # 10:30 to 11:30 IST on the recorded day
    params = {"symbol": "INFY.NS", "resolution": "15", "from": start, "to": end}

    times = get(server, "finnhub", "/stock/candle", params).json()["t"]

    assert times == list(range(start, end + 1, 15 * 60))


@pytest.mark.parametrize(
    ("symbol", "start", "end"),
    [
        ("RELIANCE.NS", 1749859200, 1749945599),  # Sat 14 and Sun 15 June: no session
        ("ZZZZZZ.NS", 1749427200, 1749859199),
        ("RELIANCE", 1749427200, 1749859199),
        ("NODATA.NS", 1749427200, 1749859199),
    ],
)
def test_finnhub_candle_without_bars_is_no_data(
    server: FakeProviderServer, symbol: str, start: int, end: int
) -> None:
    params = {"symbol": symbol, "resolution": "D", "from": start, "to": end}

    response = get(server, "finnhub", "/stock/candle", params)

    assert (response.status_code, response.json()) == (200, provider_body("finnhub-candle-no-data"))


@pytest.mark.parametrize("symbol", ["ZZZZZZ.NS", "RELIANCE"])
def test_finnhub_unknown_or_bare_symbol_quote_is_all_zero(server: FakeProviderServer, symbol: str) -> None:
    response = get(server, "finnhub", "/quote", {"symbol": symbol})

    assert (response.status_code, response.json()) == (200, provider_body("finnhub-quote-unknown-symbol"))


def test_profiles_have_the_recorded_shapes(server: FakeProviderServer) -> None:
    twelvedata = get(server, "twelvedata", "/profile", {"symbol": "M&M", "exchange": "NSE"})
    finnhub = get(server, "finnhub", "/stock/profile2", {"symbol": "BAJAJ-AUTO.NS"})
    unknown = get(server, "finnhub", "/stock/profile2", {"symbol": "ZZZZZZ.NS"})

    assert shape(twelvedata.json()) == shape(provider_body("twelvedata-profile-ok"))
    assert twelvedata.json()["name"] == "Mahindra & Mahindra Ltd."
    assert twelvedata.headers["api-credits-used"] == "10"
    assert shape(finnhub.json()) == shape(provider_body("finnhub-profile2-ok"))
    assert finnhub.json()["name"] == "Bajaj Auto Ltd"
    assert unknown.json() == provider_body("finnhub-profile2-unknown")


def test_control_api_reads_and_steers_the_server(server: FakeProviderServer) -> None:
    control = f"{server.url}/_control"
    behaviour = {"provider": "twelvedata", "mode": "rate_limit", "times": 1}

    assert requests.post(f"{control}/behaviour", json=behaviour, timeout=5).status_code == 200
    statuses = [sample(server, "twelvedata").status_code for _ in range(2)]
    bad = requests.post(f"{control}/behaviour", json={**behaviour, "mode": "nap"}, timeout=5)
    reset = requests.post(f"{control}/reset", timeout=5)

    assert statuses == [429, 200]
    assert bad.status_code == 400
    assert reset.status_code == 200
    assert requests.get(f"{control}/calls", timeout=5).json()["total"] == 0


# --- enforced plan limits (a compressed minute of 1 s unless said otherwise) ------------------


def test_twelvedata_batch_over_the_minute_budget_is_refused_whole_and_charges_nothing(
    server: FakeProviderServer,
) -> None:
    server.enforce_limits(minute_seconds=1.0)
    fresh_window(1.0)

    first = quotes(server, "RELIANCE", "TCS", "INFY", "HDFCBANK", "RELIANC")
    second = quotes(server, "SBIN", "ITC", "M&M", "ICICIBANK")

    assert first.status_code == 200
    assert (first.headers["api-credits-used"], first.headers["api-credits-left"]) == ("5", "3")
    # The recorded body happens to be exactly this case: 5 + 4 = 9 credits against 8.
    assert (second.status_code, second.json()) == (429, provider_body("twelvedata-error-credits-exhausted"))
    assert (second.headers["api-credits-used"], second.headers["api-credits-left"]) == ("0", "3")
    assert "Is_batch" not in second.headers
    assert (server.credits_used("twelvedata"), server.rate_limited("twelvedata")) == (5, 1)
    assert (server.rate_limited(), server.calls("twelvedata")) == (1, 2)


def test_the_next_window_allows_requests_again_and_no_window_goes_over(
    server: FakeProviderServer,
) -> None:
    server.enforce_limits(minute_seconds=1.0)
    fresh_window(1.0)
    full = quotes(server, "RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN", "ITC", "M&M")
    refused = quotes(server, "TCS")

    next_window(1.0)
    allowed = quotes(server, "TCS")

    assert [full.status_code, refused.status_code, allowed.status_code] == [200, 429, 200]
    assert allowed.headers["api-credits-left"] == "7"
    windows = server.credits_by_window("twelvedata")
    assert sorted(windows.items()) == [(min(windows), 8), (min(windows) + 1, 1)]


def test_setting_the_same_limits_again_gives_no_second_budget(server: FakeProviderServer) -> None:
    server.enforce_limits(minute_seconds=1.0, twelvedata_per_minute=2)
    fresh_window(1.0)
    quotes(server, "TCS", "INFY")

    server.enforce_limits(minute_seconds=1.0, twelvedata_per_minute=2)

    assert quotes(server, "TCS").status_code == 429


def test_twelvedata_day_budget_gets_the_daily_message_even_when_the_minute_is_spent_too(
    server: FakeProviderServer,
) -> None:
    daily = provider_body("twelvedata-error-credits-daily")["message"]
    server.enforce_limits(minute_seconds=1.0, twelvedata_per_day=3)

    params = {"symbol": "TCS", "exchange": "NSE", "interval": "1day"}
    series = [get(server, "twelvedata", "/time_series", params) for _ in range(3)]
    one_more = quotes(server, "TCS")
    big_batch = quotes(server, *["TCS"] * 9)  # 12 > 8 for the minute too

    assert [answer.status_code for answer in series] == [200] * 3
    assert (one_more.status_code, one_more.json()["code"]) == (429, 429)
    assert one_more.json()["message"] == daily.replace("812", "4").replace("800", "3")
    assert big_batch.json()["message"] == daily.replace("812", "12").replace("800", "3")
    assert server.credits_used("twelvedata") == 3


def test_a_profile_costs_10_credits_so_the_free_plan_never_gets_one(server: FakeProviderServer) -> None:
    minute = provider_body("twelvedata-error-credits-exhausted")["message"]
    server.enforce_limits(minute_seconds=1.0)

    response = get(server, "twelvedata", "/profile", {"symbol": "TCS", "exchange": "NSE"})

    assert response.status_code == 429
    assert response.json()["message"] == minute.replace("9 API", "10 API")
    assert server.credits_used("twelvedata") == 0


def test_finnhub_per_second_cap_refuses_with_the_recorded_body(server: FakeProviderServer) -> None:
    server.enforce_limits(finnhub_per_second=3)  # a real minute, so the second is 1 s
    fresh_window(1.0)

    answers = [sample(server, "finnhub") for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[-1].json() == provider_body("finnhub-error-rate-limit")
    # The minute still has calls left; only the per-second cap said no.
    assert answers[-1].headers["X-Ratelimit-Remaining"] == "57"
    assert (server.rate_limited("finnhub"), server.credits_used("finnhub")) == (1, 3)


def test_finnhub_rate_headers_count_down_the_minute_window(server: FakeProviderServer) -> None:
    server.enforce_limits(minute_seconds=1.0, finnhub_per_minute=5, finnhub_per_second=None)
    fresh_window(1.0)
    window_end = math.floor(time.time()) + 1

    answers = [sample(server, "finnhub") for _ in range(6)]

    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    assert [answer.headers["X-Ratelimit-Remaining"] for answer in answers] == ["4", "3", "2", "1", "0", "0"]
    assert {answer.headers["X-Ratelimit-Limit"] for answer in answers} == {"5"}
    assert {answer.headers["X-Ratelimit-Reset"] for answer in answers} == {str(window_end)}


def test_unauthenticated_requests_are_not_charged_but_carry_the_rate_headers(
    server: FakeProviderServer,
) -> None:
    server.enforce_limits(minute_seconds=1.0)
    fresh_window(1.0)

    twelvedata = sample(server, "twelvedata", headers={})
    finnhub = sample(server, "finnhub", headers={})

    assert twelvedata.status_code == finnhub.status_code == 401
    assert (twelvedata.headers["api-credits-used"], twelvedata.headers["api-credits-left"]) == ("0", "8")
    assert finnhub.headers["X-Ratelimit-Remaining"] == "60"
    assert server.credits_used("twelvedata") == server.credits_used("finnhub") == 0


def test_limits_come_after_latency_and_before_failure_modes() -> None:
    with FakeProviderServer(latency=0.2) as fake:
        fake.enforce_limits(minute_seconds=1.0)
        fake.set_mode("twelvedata", "error_500", times=1)
        started = time.monotonic()
        refused = get(fake, "twelvedata", "/profile", {"symbol": "TCS", "exchange": "NSE"})
        elapsed = time.monotonic() - started
        failed = sample(fake, "twelvedata")  # the refusal did not use up the mode

    assert (refused.status_code, failed.status_code) == (429, 502)
    assert elapsed >= 0.2
    assert (fake.calls("twelvedata"), fake.rate_limited(), fake.credits_used("twelvedata")) == (2, 1, 1)


def test_concurrent_requests_never_overdraw_a_window(server: FakeProviderServer) -> None:
    server.enforce_limits(minute_seconds=1.0, finnhub_per_minute=10, finnhub_per_second=None)
    fresh_window(1.0)

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: sample(server, "finnhub").status_code, range(32)))

    assert (statuses.count(200), statuses.count(429)) == (10, 22)
    assert list(server.credits_by_window("finnhub").values()) == [10]
    assert server.rate_limited("finnhub") == 22


def test_reset_stops_enforcing_and_clears_what_was_charged(server: FakeProviderServer) -> None:
    server.enforce_limits(minute_seconds=1.0)
    sample(server, "twelvedata")
    refused = get(server, "twelvedata", "/profile", {"symbol": "TCS", "exchange": "NSE"})

    server.reset()
    profile = get(server, "twelvedata", "/profile", {"symbol": "TCS", "exchange": "NSE"})

    assert (refused.status_code, profile.status_code) == (429, 200)
    assert (server.rate_limited(), server.credits_used("twelvedata")) == (0, 0)
    assert server.credits_by_window("twelvedata") == {}


def test_control_api_enforces_reports_and_stops_limits(server: FakeProviderServer) -> None:
    control = f"{server.url}/_control"
    limits = {"minute_seconds": 1.0, "twelvedata_per_minute": 1, "finnhub_per_second": None}

    assert requests.post(f"{control}/limits", json=limits, timeout=5).status_code == 200
    fresh_window(1.0)
    statuses = [sample(server, "twelvedata").status_code for _ in range(2)]
    report = requests.get(f"{control}/calls", timeout=5).json()["limits"]
    bad = [
        requests.post(f"{control}/limits", json=payload, timeout=5).status_code
        for payload in ({"minute_seconds": 0}, {"finnhub_per_minute": 1.5}, {"per_hour": 5}, [])
    ]
    stopped = requests.post(f"{control}/limits", json={"enabled": False}, timeout=5)
    after = [sample(server, "twelvedata").status_code for _ in range(2)]

    assert statuses == [200, 429]
    assert report["minute_seconds"] == 1.0
    assert report["twelvedata"] == {
        "enforced": {"minute": 1, "day": 800},
        "rate_limited": 1,
        "credits_used": 1,
        "credits_by_window": {str(math.floor(time.time())): 1},
    }
    assert report["finnhub"]["enforced"] == {"minute": 60, "second": None}
    assert bad == [400] * 4
    assert (stopped.status_code, after) == (200, [200, 200])
    assert server.credits_used("twelvedata") == 1


def test_unknown_paths_are_json_404s(server: FakeProviderServer) -> None:
    provider_path = get(server, "twelvedata", "/nope")
    elsewhere = requests.get(f"{server.url}/nope", timeout=5)

    assert (provider_path.status_code, elsewhere.status_code) == (404, 404)
    assert provider_path.json()["error"] == elsewhere.json()["error"] == "Not Found"


def test_runs_standalone_and_prints_its_urls() -> None:
    command = [sys.executable, "-m", "tests.fakes.provider_server", "--port", "0"]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            twelvedata_line = process.stdout.readline() if process.stdout else ""
            base = twelvedata_line.strip().removeprefix("TWELVEDATA_BASE_URL=").removesuffix("/twelvedata")
            calls = requests.get(f"{base}/_control/calls", timeout=5).json()
        finally:
            process.terminate()

    assert twelvedata_line.startswith("TWELVEDATA_BASE_URL=http://127.0.0.1:")
    assert calls == {"twelvedata": {}, "finnhub": {}, "total": 0, "limits": ANY}
