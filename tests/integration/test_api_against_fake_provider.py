"""The whole service, built by the real app factory, against the loopback fake providers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

QUOTE_FIELDS = {
    "symbol", "companyName", "exchange", "currency", "currentPrice", "previousClose", "change",
    "changePercent", "open", "high", "low", "volume", "volumeFormatted", "marketState",
    "timestamp", "lastTradeAt", "isDemoData", "service_info",
}  # fmt: skip
SERVICE_INFO_FIELDS = {"source", "cached", "cache", "age_seconds", "stale", "fallback_reason"}


def assert_envelope(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    detail = response.get_json()["detail"]
    assert set(detail) <= {"error", "message", "hint"}
    assert detail["error"] and detail["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return detail


# ---- served by Twelve Data ------------------------------------------------------------------


def test_quote_is_served_by_twelvedata_with_every_contract_field(client, upstream):
    body = client.get("/stock/RELIANCE").get_json()

    assert set(body) == QUOTE_FIELDS
    assert set(body["service_info"]) == SERVICE_INFO_FIELDS
    assert body["symbol"] == "RELIANCE" and body["exchange"] == "NSE"
    assert body["companyName"] == "Reliance Industries Ltd."
    assert body["isDemoData"] is False
    assert body["service_info"]["source"] == "twelvedata"
    assert body["service_info"]["cache"] == "miss" and body["service_info"]["cached"] is False
    for field in ("currentPrice", "previousClose", "change", "changePercent"):
        assert isinstance(body[field], float | int), field
    assert body["change"] == pytest.approx(body["currentPrice"] - body["previousClose"], abs=0.011)
    assert isinstance(body["volume"], int) and isinstance(body["volumeFormatted"], str)
    assert body["timestamp"].endswith("Z")
    assert upstream.calls("twelvedata", "/quote") == 1
    assert upstream.calls("finnhub") == 0


def test_twelvedata_gets_the_plain_ticker_and_exchange_never_a_suffix(client, upstream):
    client.get("/stock/reliance.ns")
    client.get("/stock/RELIANCE:BSE")

    queries = [query for provider, path, query in upstream.requests_log if path == "/quote"]
    assert [(q["symbol"], q["exchange"]) for q in queries] == [("RELIANCE", "NSE"), ("RELIANCE", "BSE")]


def test_second_request_is_a_cache_hit_without_an_upstream_call(client, upstream):
    first = client.get("/stock/TCS").get_json()
    second = client.get("/stock/tcs.ns").get_json()

    assert second["service_info"]["cache"] == "hit"
    assert second["service_info"]["cached"] is True
    assert second["currentPrice"] == first["currentPrice"]
    assert upstream.calls("twelvedata") == 1


def test_history_is_served_by_twelvedata_oldest_first(client, upstream):
    body = client.get("/stock/INFY/historical?period=3mo").get_json()

    assert body["service_info"]["source"] == "twelvedata"
    assert body["period"] == "3mo" and body["interval"] == "1day"
    dates = [bar["date"] for bar in body["data"]]
    assert dates == sorted(set(dates)) and len(dates) > 40
    assert body["dataPoints"] == len(body["data"])
    assert all(bar["low"] <= bar["close"] <= bar["high"] for bar in body["data"])
    assert upstream.calls("twelvedata", "/time_series") == 1


def test_intraday_history_covers_the_latest_session_with_offsets(client):
    body = client.get("/stock/RELIANCE/historical?period=1d").get_json()

    assert body["interval"] == "5min"
    assert body["data"], "the fake market always has a latest session"
    assert len({bar["date"][:10] for bar in body["data"]}) == 1
    assert all(bar["date"].endswith("+05:30") for bar in body["data"])


def test_default_period_is_one_month(client):
    assert client.get("/stock/RELIANCE/historical").get_json()["period"] == "1mo"


def test_known_symbol_without_bars_is_an_empty_200(client, upstream):
    body = client.get("/stock/NODATA/historical?period=1mo")

    assert body.status_code == 200
    assert body.get_json()["data"] == [] and body.get_json()["dataPoints"] == 0


def test_profile_is_served_by_twelvedata_with_the_market_cap_from_finnhub(client, upstream):
    body = client.get("/stock/HDFCBANK/profile").get_json()
    again = client.get("/stock/HDFCBANK/profile").get_json()

    assert body["service_info"]["source"] == "twelvedata"
    assert body["name"].startswith("HDFC Bank")
    assert body["marketCap"] > 1e12 and body["marketCapFormatted"].endswith("L Cr")
    assert upstream.calls("twelvedata", "/profile") == upstream.calls("finnhub", "/stock/profile2") == 1
    assert again["service_info"]["cache"] == "hit" and again["marketCap"] == body["marketCap"]
    assert upstream.calls() == 2, "one fill: one call per provider"


def test_forced_twelvedata_profile_has_no_market_cap(make_app, upstream):
    body = make_app(stock_provider="twelvedata").test_client().get("/stock/HDFCBANK/profile").get_json()

    assert body["service_info"]["source"] == "twelvedata"
    assert body["marketCap"] is None and body["marketCapFormatted"] == "N/A"
    assert upstream.calls("finnhub") == 0


def test_a_failing_market_cap_call_leaves_it_null_not_the_profile_broken(client, upstream):
    upstream.set_mode("finnhub", "error_500")

    response = client.get("/stock/HDFCBANK/profile")

    assert response.status_code == 200
    body = response.get_json()
    assert body["service_info"]["source"] == "twelvedata" and body["name"].startswith("HDFC Bank")
    assert body["marketCap"] is None and body["marketCapFormatted"] == "N/A"
    assert upstream.calls("finnhub", "/stock/profile2") == 2, "one call and its one retry"


def test_batch_of_cold_symbols_costs_one_twelvedata_request(client, upstream):
    response = client.post("/stock/quotes?symbols=RELIANCE,TCS&symbols=INFY")
    body = response.get_json()

    assert response.status_code == 200
    assert set(body["quotes"]) == {"RELIANCE", "TCS", "INFY"}
    assert (body["total_requested"], body["successful"], body["failed"]) == (3, 3, 0)
    assert upstream.calls("twelvedata", "/quote") == 1
    sent = [q["symbol"] for _, path, q in upstream.requests_log if path == "/quote"]
    assert sent == ["RELIANCE,TCS,INFY"]


def test_batch_keys_are_symbols_as_sent_and_one_instrument_is_fetched_once(client, upstream):
    body = client.post("/stock/quotes", json={"symbols": ["tcs", "TCS.NS", "tcs", "TCS:NSE"]}).get_json()

    assert set(body["quotes"]) == {"tcs", "TCS.NS", "TCS:NSE"}
    assert body["total_requested"] == 3
    prices = {quote["currentPrice"] for quote in body["quotes"].values()}
    assert len(prices) == 1
    assert [q["symbol"] for _, path, q in upstream.requests_log if path == "/quote"] == ["TCS"]


def test_batch_bad_and_unknown_symbols_never_fail_the_others(client, upstream):
    body = client.post(
        "/stock/quotes", json={"symbols": ["RELIANCE", "bad!!", "ZZZZZZ", "quotes"]}
    ).get_json()

    assert set(body["quotes"]) == {"RELIANCE"}
    assert body["errors"]["bad!!"]["status"] == 400
    assert body["errors"]["quotes"]["status"] == 400
    assert body["errors"]["ZZZZZZ"]["status"] == 404
    assert set(body["errors"]["ZZZZZZ"]) == {"error", "message", "status"}
    assert body["successful"] + body["failed"] == body["total_requested"] == 4


def test_batch_mixes_cached_and_cold_symbols(client, upstream):
    client.get("/stock/RELIANCE")
    body = client.post("/stock/quotes?symbols=RELIANCE,ITC").get_json()

    assert body["quotes"]["RELIANCE"]["service_info"]["cache"] == "hit"
    assert body["quotes"]["ITC"]["service_info"]["cache"] == "miss"
    assert [q["symbol"] for _, path, q in upstream.requests_log if path == "/quote"] == ["RELIANCE", "ITC"]


# ---- fallback, demo and forced modes --------------------------------------------------------


def test_transient_twelvedata_failure_is_retried_once_then_finnhub_serves(client, upstream):
    upstream.set_mode("twelvedata", "error_500")

    body = client.get("/stock/RELIANCE").get_json()

    assert upstream.calls("twelvedata") == 2
    assert upstream.calls("finnhub", "/quote") == 1
    assert body["service_info"]["source"] == "finnhub"
    assert body["service_info"]["fallback_reason"] == "twelvedata: transient"
    assert body["companyName"] == "Reliance Industries Ltd"  # built-in table: Finnhub sends no name
    assert body["isDemoData"] is False


def test_a_nameless_quote_takes_its_name_from_a_cached_profile_else_the_ticker(client, upstream):
    client.get("/stock/SYN01/profile")
    upstream.set_mode("twelvedata", "plan")  # quotes now come from Finnhub, which sends no name
    calls_before = upstream.calls()
    profiles_before = upstream.calls("finnhub", "/stock/profile2")

    named = client.get("/stock/SYN01").get_json()
    unnamed = client.get("/stock/SYN02").get_json()
    again = client.get("/stock/SYN01").get_json()

    assert named["service_info"]["source"] == "finnhub"
    assert named["companyName"] == "Synthetic Industries 01 Ltd."
    assert unnamed["companyName"] == "SYN02", "no profile cached, not in the table: the ticker"
    assert again["service_info"]["cache"] == "hit" and again["companyName"] == named["companyName"]
    assert upstream.calls("finnhub", "/stock/profile2") == profiles_before, "never a call just for a name"
    assert upstream.calls() - calls_before == 3  # TD plan refusal (once), then one Finnhub quote each


def test_one_transient_failure_is_absorbed_by_the_retry(client, upstream):
    upstream.set_mode("twelvedata", "error_500", times=1)

    body = client.get("/stock/RELIANCE").get_json()

    assert body["service_info"]["source"] == "twelvedata"
    assert body["service_info"]["fallback_reason"] is None
    assert upstream.calls("twelvedata") == 2 and upstream.calls("finnhub") == 0


@pytest.mark.parametrize("mode", ["plan", "rate_limit", "rate_limit_day"])
def test_permanent_twelvedata_failure_is_not_retried_and_finnhub_serves(client, upstream, mode):
    upstream.set_mode("twelvedata", mode)

    body = client.get("/stock/RELIANCE").get_json()

    assert upstream.calls("twelvedata") == 1
    assert body["service_info"]["source"] == "finnhub"
    assert body["service_info"]["fallback_reason"].startswith("twelvedata: ")


def test_stalled_twelvedata_times_out_and_finnhub_answers_in_bounded_time(make_app, upstream):
    client = make_app(provider_timeout=0.3).test_client()
    upstream.set_mode("twelvedata", "stall", stall_seconds=5)

    started = time.monotonic()
    body = client.get("/stock/RELIANCE").get_json()

    assert time.monotonic() - started < 3, "two timed-out attempts, then Finnhub; never a hang"
    assert body["service_info"]["source"] == "finnhub"
    assert upstream.calls("twelvedata") == 2


def test_demo_is_served_and_flagged_when_both_providers_fail(client, upstream):
    upstream.set_mode("twelvedata", "error_500")
    upstream.set_mode("finnhub", "error_500")

    body = client.get("/stock/RELIANCE").get_json()

    assert body["isDemoData"] is True
    assert body["service_info"]["source"] == "demo"
    assert body["service_info"]["cached"] is False
    assert body["service_info"]["fallback_reason"] == "twelvedata: transient; finnhub: transient"
    assert upstream.calls("twelvedata") == 2 and upstream.calls("finnhub") == 2


def test_demo_answers_are_never_cached_as_real_data(make_app, upstream):
    app = make_app(failure_ttl=0)
    client = app.test_client()
    upstream.set_mode("twelvedata", "error_500", times=2)
    upstream.set_mode("finnhub", "error_500", times=2)
    assert client.get("/stock/RELIANCE").get_json()["isDemoData"] is True
    assert app.extensions["quantpulse"].stores.primary.client.get("qp:v1:quote:NSE:RELIANCE") is None

    body = client.get("/stock/RELIANCE").get_json()

    assert body["isDemoData"] is False
    assert body["service_info"]["source"] == "twelvedata"


def test_a_failed_fill_is_shared_briefly_instead_of_asking_the_providers_again(client, upstream):
    upstream.set_mode("twelvedata", "error_500")
    upstream.set_mode("finnhub", "error_500")
    client.get("/stock/RELIANCE")
    calls_after_first = upstream.calls()

    again = client.get("/stock/RELIANCE").get_json()

    assert again["isDemoData"] is True
    assert again["service_info"]["fallback_reason"] == "twelvedata: transient; finnhub: transient"
    assert upstream.calls() == calls_after_first == 4


@pytest.mark.parametrize("path", ["/stock/RELIANCE", "/stock/RELIANCE/historical", "/stock/RELIANCE/profile"])
def test_forced_twelvedata_mode_gives_503_not_demo(make_app, upstream, path):
    client = make_app(stock_provider="twelvedata").test_client()
    upstream.set_mode("twelvedata", "error_500")

    response = client.get(path)

    detail = assert_envelope(response, 503)
    assert "twelvedata: transient" in detail["message"]
    assert response.headers["Retry-After"] == "30"
    assert upstream.calls("finnhub") == 0


def test_forced_mode_rate_limit_503_says_when_to_come_back(make_app, upstream):
    client = make_app(stock_provider="twelvedata").test_client()
    upstream.set_mode("twelvedata", "rate_limit")

    response = client.get("/stock/RELIANCE")

    assert_envelope(response, 503)
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_forced_mode_without_its_key_gives_503(make_app, upstream):
    client = make_app(stock_provider="finnhub", finnhub_api_key=None).test_client()

    detail = assert_envelope(client.get("/stock/RELIANCE"), 503)

    assert "FINNHUB_API_KEY" in detail["message"]
    assert upstream.calls() == 0


def test_forced_finnhub_mode_uses_only_finnhub(make_app, upstream):
    body = make_app(stock_provider="finnhub").test_client().get("/stock/INFY").get_json()

    assert body["service_info"]["source"] == "finnhub"
    assert upstream.calls("twelvedata") == 0
    assert [q["symbol"] for p, path, q in upstream.requests_log if p == "finnhub"] == ["INFY.NS"]


def test_demo_mode_never_calls_upstream(make_app, upstream):
    client = make_app(stock_provider="demo").test_client()

    bodies = [client.get(path).get_json() for path in ("/stock/ANYTHING", "/stock/TCS/profile")]

    assert all(body["isDemoData"] for body in bodies)
    assert upstream.calls() == 0


# ---- verdicts and errors --------------------------------------------------------------------


def test_unknown_symbol_is_a_404_verdict_and_finnhub_is_not_asked(client, upstream):
    detail = assert_envelope(client.get("/stock/ZZZZZZ"), 404)

    assert "ZZZZZZ" in detail["message"]
    assert upstream.calls("twelvedata") == 1 and upstream.calls("finnhub") == 0


def test_unknown_symbol_history_from_finnhub_is_a_404_not_an_empty_200(client, upstream):
    upstream.set_mode("twelvedata", "plan")

    assert_envelope(client.get("/stock/NOSUCH5/historical?period=6mo"), 404)
    assert client.get("/stock/NODATA/historical?period=6mo").get_json()["dataPoints"] == 0


def test_symbol_with_a_bogus_dot_suffix_is_not_found_not_invalid(client):
    assert_envelope(client.get("/stock/RELIANCE.NSE"), 404)


def test_finnhub_zero_quote_is_a_404_when_it_is_the_provider_asked(make_app, upstream):
    client = make_app(stock_provider="finnhub").test_client()

    assert_envelope(client.get("/stock/ZZZZZZ"), 404)
    assert upstream.calls("finnhub") == 1


@pytest.mark.parametrize(
    "path",
    [
        "/stock/RELIANCE:NYSE",
        "/stock/-RELIANCE",
        "/stock/" + "A" * 21,
        "/stock/REL%20IANCE",
        "/stock/RELI$NCE",
        "/stock/QUOTES",
        "/stock/service",
        "/stock/Service/profile",
        "/stock/RELIANCE/historical?period=2w",
        "/stock/quotes/historical",
        "/stock/quotes/profile",
        "/stock/%C4%B1tc",
    ],
)
def test_malformed_input_is_a_400_that_never_reaches_a_provider(client, upstream, path):
    assert_envelope(client.get(path), 400)
    assert upstream.calls() == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"json": {"symbols": []}}, "No symbols"),
        ({}, "No symbols"),
        ({"json": {"symbols": "RELIANCE"}}, "symbols"),
        ({"json": ["RELIANCE"]}, "JSON object"),
        ({"json": {"symbols": ["A"], "extra": 1}}, "extra"),
        ({"data": "{not json", "content_type": "application/json"}, "JSON"),
        ({"json": {"symbols": [f"S{i}" for i in range(21)]}}, "at most 20"),
    ],
)
def test_bad_batch_requests_are_400_as_a_whole(client, upstream, kwargs, fragment):
    detail = assert_envelope(client.post("/stock/quotes", **kwargs), 400)

    assert fragment in detail["message"]
    assert upstream.calls() == 0


def test_empty_period_means_the_default(client):
    assert client.get("/stock/RELIANCE/historical?period=").get_json()["period"] == "1mo"


def test_pathologically_nested_json_is_a_400_not_a_500(client, upstream):
    body = "[" * 5000 + "]" * 5000

    assert_envelope(client.post("/stock/quotes", data=body, content_type="application/json"), 400)


def test_every_string_of_a_batch_body_gets_an_answer(client):
    body = client.post("/stock/quotes", json={"symbols": ["", "TCS"]}).get_json()

    assert body["errors"][""]["status"] == 400
    assert set(body["quotes"]) == {"TCS"}
    assert body["total_requested"] == 2


def test_batch_with_both_query_and_body_is_400(client):
    response = client.post("/stock/quotes?symbols=TCS", json={"symbols": ["INFY"]})

    assert "not both" in assert_envelope(response, 400)["message"]


def test_oversize_body_is_413(client, upstream):
    big = json.dumps({"symbols": ["RELIANCE"] * 4000})

    assert_envelope(client.post("/stock/quotes", data=big, content_type="application/json"), 413)
    assert_envelope(client.get("/stock/TCS", data="x" * 17_000), 413)
    assert_envelope(
        client.post("/stock/quotes?symbols=TCS", data="x" * 17_000, content_type="text/plain"), 413
    )
    assert upstream.calls() == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_on_the_batch_route_are_405_allowing_only_post(client, method):
    response = client.open("/stock/quotes", method=method)

    assert_envelope(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_unknown_route_is_a_404_envelope(client):
    assert_envelope(client.get("/nowhere"), 404)
    assert_envelope(client.get("/stock/RELIANCE/dividends"), 404)


def test_wrong_method_is_a_405_envelope(client):
    assert_envelope(client.put("/stock/RELIANCE"), 405)


def test_unexpected_exception_is_a_500_envelope_without_traceback(app: Flask):
    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode", view_func=explode)

    response = app.test_client().get("/explode")

    detail = assert_envelope(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)
    assert detail["error"] == "Internal error"


def test_bad_input_leaves_cached_entries_intact(client, upstream):
    before = client.get("/stock/RELIANCE").get_json()
    for path in ("/stock/RELIANCE:NYSE", "/stock/RELIANCE/historical?period=zz", "/stock/QUOTES"):
        client.get(path)
    client.post("/stock/quotes", data="{oops", content_type="application/json")

    after = client.get("/stock/RELIANCE").get_json()

    assert after["service_info"]["cache"] == "hit"
    assert after["currentPrice"] == before["currentPrice"]
    assert upstream.calls() == 1


# ---- operators and browsers -----------------------------------------------------------------


def test_status_counts_match_the_fake_providers_own_count(client, upstream):
    upstream.set_mode("twelvedata", "error_500", times=2)
    client.get("/stock/RELIANCE")
    client.get("/stock/RELIANCE")
    client.get("/stock/TCS/profile")

    status = client.get("/stock/service/status").get_json()["status"]
    providers = status["provider_status"]["providers"]

    assert providers["twelvedata"]["calls"] == upstream.calls("twelvedata") == 3
    assert providers["twelvedata"]["failures"] == 2
    assert providers["twelvedata"]["failures_by_kind"]["transient"] == 2
    # The quote after Twelve Data's two failures, and the profile's market cap.
    assert providers["finnhub"]["calls"] == upstream.calls("finnhub") == 2
    assert status["cache_stats"]["hits"] == 1 and status["cache_stats"]["misses"] == 2
    assert status["cache_stats"]["total_entries"] == 2
    assert status["cache_stats"]["stats_scope"] == "process", "the embedded store is per process"
    assert status["status"] == "operational"


def test_api_keys_never_travel_in_urls_or_show_in_status(client, upstream):
    client.get("/stock/RELIANCE")
    upstream.set_mode("twelvedata", "error_500")
    client.get("/stock/INFY")

    status_text = client.get("/stock/service/status").get_data(as_text=True)

    assert upstream.key_seen_in_url is False
    assert "td-test-key" not in status_text and "fh-test-key" not in status_text


def test_cors_allows_the_local_dev_front_end_and_nobody_else(client):
    allowed = client.get("/stock/RELIANCE", headers={"Origin": "http://localhost:5173"})
    denied = client.get("/stock/RELIANCE", headers={"Origin": "https://evil.example"})
    no_origin = client.get("/stock/RELIANCE")
    preflight = client.options(
        "/stock/quotes",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "Access-Control-Allow-Origin" not in denied.headers
    assert "Origin" in denied.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in no_origin.headers
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert set(preflight.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "POST",
        "PATCH",
        "DELETE",
        "OPTIONS",
    }
    assert preflight.status_code == 204


def test_browsers_may_send_a_key_and_read_the_limit_and_request_headers(client):
    origin = "http://localhost:3000"
    preflight = client.options(
        "/stock/TCS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key, Last-Event-ID",
        },
    )
    answer = client.get("/stock/TCS", headers={"Origin": origin})

    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "last-event-id" in preflight.headers["Access-Control-Allow-Headers"].lower()
    exposed = {name.strip() for name in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-Request-ID",
        "Retry-After",
    } <= exposed


def test_plain_options_is_never_an_html_page(client):
    response = client.options("/stock/RELIANCE")

    assert response.status_code == 204 and response.mimetype != "text/html"
    assert "GET" in response.headers["Allow"]


def test_admin_cache_drop_needs_the_token(client, upstream):
    client.get("/stock/RELIANCE")
    client.get("/stock/RELIANCE/historical?period=1y")

    missing = client.delete("/stock/RELIANCE/cache")
    missing_on_a_bad_symbol = client.delete("/stock/RELIANCE:NYSE/cache")
    reserved = client.delete("/stock/quotes/cache", headers={"Authorization": "Bearer admin-secret"})
    wrong = client.delete("/stock/RELIANCE/cache", headers={"Authorization": "Bearer nope"})
    right = client.delete("/stock/reliance.ns/cache", headers={"Authorization": "Bearer admin-secret"})

    assert_envelope(missing, 401)
    assert_envelope(missing_on_a_bad_symbol, 401)
    assert_envelope(reserved, 400)
    assert_envelope(wrong, 403)
    assert right.get_json() == {"symbol": "RELIANCE", "exchange": "NSE", "deleted": 2}
    assert client.get("/stock/RELIANCE").get_json()["service_info"]["cache"] == "miss"


def test_admin_route_is_forbidden_to_everyone_without_admin_token(make_app: Callable[..., Flask]):
    client = make_app(admin_token=None).test_client()

    response = client.delete("/stock/RELIANCE/cache", headers={"Authorization": "Bearer anything"})

    assert_envelope(response, 403)


def test_status_lists_periods_in_contract_order(client):
    periods = client.get("/stock/service/status").get_json()["status"]["supported_periods"]

    assert periods == ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]


def test_health_and_readiness(client: FlaskClient):
    assert client.get("/health").get_json() == {"status": "ok", "service": "quantpulse-backend"}
    assert client.get("/health/ready").get_json() == {
        "status": "ready",
        "backend": "embedded",
        "reason": None,
    }
