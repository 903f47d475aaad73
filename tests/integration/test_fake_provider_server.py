"""The fake provider server speaks the recorded wire shapes, counts calls and fails on demand.

Other tests trust this fake to behave like Twelve Data and Finnhub, so its answers are checked
against the recorded bodies in ``../shared/provider-fixtures``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakes.provider_server import IST, FakeProviderServer

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = Path(os.environ.get("QUANTPULSE_SHARED", REPO_ROOT.parent / "shared")) / "provider-fixtures"

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


def fixture(name: str) -> Any:
    return json.loads((FIXTURES_DIR / f"{name}.json").read_text(encoding="utf-8"))


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


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(clock=lambda: RECORDED_DAY) as fake:
        yield fake


def test_twelvedata_quote_has_the_recorded_shape_and_times(server: FakeProviderServer) -> None:
    recorded = fixture("twelvedata-quote-ok")

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
    recorded = fixture("twelvedata-batch-partial-error")
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
    assert response.json() == fixture("twelvedata-error-symbol-not-found")


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
    assert response.json() == fixture(recorded)


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

    assert (response.status_code, response.json()) == (status, fixture(recorded))


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

    recorded = fixture("twelvedata-time_series-ok")
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
    recorded = fixture("finnhub-candle-ok")
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

    assert (response.status_code, response.json()) == (200, fixture("finnhub-candle-no-data"))


@pytest.mark.parametrize("symbol", ["ZZZZZZ.NS", "RELIANCE"])
def test_finnhub_unknown_or_bare_symbol_quote_is_all_zero(server: FakeProviderServer, symbol: str) -> None:
    response = get(server, "finnhub", "/quote", {"symbol": symbol})

    assert (response.status_code, response.json()) == (200, fixture("finnhub-quote-unknown-symbol"))


def test_profiles_have_the_recorded_shapes(server: FakeProviderServer) -> None:
    twelvedata = get(server, "twelvedata", "/profile", {"symbol": "M&M", "exchange": "NSE"})
    finnhub = get(server, "finnhub", "/stock/profile2", {"symbol": "BAJAJ-AUTO.NS"})
    unknown = get(server, "finnhub", "/stock/profile2", {"symbol": "ZZZZZZ.NS"})

    assert shape(twelvedata.json()) == shape(fixture("twelvedata-profile-ok"))
    assert twelvedata.json()["name"] == "Mahindra & Mahindra Ltd."
    assert twelvedata.headers["api-credits-used"] == "10"
    assert shape(finnhub.json()) == shape(fixture("finnhub-profile2-ok"))
    assert finnhub.json()["name"] == "Bajaj Auto Ltd"
    assert unknown.json() == fixture("finnhub-profile2-unknown")


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
    assert calls == {"twelvedata": {}, "finnhub": {}, "total": 0}
