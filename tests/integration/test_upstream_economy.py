"""Budget, provider health, client rate limits and key hygiene, in the real app against the fake."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import FH_KEY, TD_KEY


def reason(body: dict) -> str:
    return body["service_info"]["fallback_reason"]


def test_a_spent_budget_sends_nothing_and_falls_back(make_app, upstream):
    client = make_app(twelvedata_credits_per_minute=2).test_client()

    bodies = [client.get(f"/stock/{symbol}").get_json() for symbol in ("TCS", "INFY", "ITC")]

    assert upstream.calls("twelvedata") == 2
    assert [b["service_info"]["source"] for b in bodies] == ["twelvedata", "twelvedata", "finnhub"]
    assert reason(bodies[2]) == "twelvedata: rate_limited (budget)"
    budget = client.get("/stock/service/status").get_json()["status"]["provider_status"]["providers"]
    assert budget["twelvedata"]["budget"] == {"minute_left": 0, "day_left": None}
    assert budget["finnhub"]["budget"] is None


def test_a_profile_that_costs_more_than_a_minute_allows_never_reaches_twelvedata(make_app, upstream):
    client = make_app(twelvedata_credits_per_minute=8).test_client()

    body = client.get("/stock/TCS/profile").get_json()

    assert upstream.calls("twelvedata") == 0
    assert body["service_info"]["source"] == "finnhub"


def test_a_batch_is_sized_to_the_credits_left_and_finnhub_takes_the_rest(make_app, upstream):
    client = make_app(twelvedata_credits_per_minute=3).test_client()

    body = client.post("/stock/quotes?symbols=RELIANCE,TCS,INFY,ITC,SBIN").get_json()

    assert body["successful"] == 5
    sources = {symbol: quote["service_info"]["source"] for symbol, quote in body["quotes"].items()}
    assert list(sources.values()).count("twelvedata") == 3
    assert list(sources.values()).count("finnhub") == 2
    assert upstream.calls("twelvedata") == 1 and upstream.calls("finnhub") == 2


def test_a_rate_limited_provider_is_benched_until_its_window_resets(client, upstream):
    upstream.set_mode("twelvedata", "rate_limit", times=1)
    client.get("/stock/TCS")

    later = client.get("/stock/INFY").get_json()

    assert upstream.calls("twelvedata") == 1, "not asked again inside its cooldown"
    assert later["service_info"]["source"] == "finnhub"
    assert reason(later) == "twelvedata: rate_limited (skipped)"
    status = client.get("/stock/service/status").get_json()["status"]["provider_status"]
    assert status["providers"]["twelvedata"]["state"] == "cooldown"
    assert status["providers"]["twelvedata"]["cooldown_until"].endswith("Z")
    assert status["primary_available"] is False


def test_a_rejected_key_disables_the_provider(make_app, upstream, caplog):
    client = make_app(twelvedata_api_key="wrong-key-123").test_client()
    with caplog.at_level(logging.ERROR):
        client.get("/stock/TCS")
    client.get("/stock/INFY")

    assert upstream.calls("twelvedata") == 1
    assert "rejected the configured API key" in caplog.text
    status = client.get("/stock/service/status").get_json()["status"]["provider_status"]
    assert status["providers"]["twelvedata"]["state"] == "disabled"


def test_a_plan_error_skips_that_endpoint_for_hours_but_not_the_others(client, upstream):
    upstream.set_mode("twelvedata", "plan", times=1)
    client.get("/stock/TCS/historical?period=1y")

    client.get("/stock/INFY/historical?period=1y")
    quote = client.get("/stock/INFY").get_json()

    assert upstream.calls("twelvedata", "/time_series") == 1
    assert quote["service_info"]["source"] == "twelvedata"


def test_repeated_transient_failures_open_the_circuit(make_app, upstream):
    client = make_app(circuit_failures=4).test_client()
    upstream.set_mode("twelvedata", "error_500")
    client.get("/stock/TCS")
    client.get("/stock/INFY")  # 2 x 2 attempts: the circuit opens

    body = client.get("/stock/ITC").get_json()

    assert upstream.calls("twelvedata") == 4
    assert reason(body) == "twelvedata: transient (skipped)"


def test_client_rate_limit_is_a_429_envelope_with_retry_after(make_app):
    client = make_app(rate_limit="2/minute", stock_provider="demo").test_client()

    answers = [client.get("/stock/TCS") for _ in range(3)]
    health = [client.get("/health").status_code for _ in range(5)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    detail = answers[2].get_json()["detail"]
    assert detail["error"] == "Too Many Requests" and "2 per 1 minute" in detail["message"]
    assert int(answers[2].headers["Retry-After"]) > 0
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert health == [200] * 5


def test_client_address_comes_from_the_router_hop_only(make_app):
    client = make_app(rate_limit="1/minute", stock_provider="demo", proxy_fix_hops=1).test_client()

    first = client.get("/stock/TCS", headers={"X-Forwarded-For": "spoofed, 203.0.113.7"})
    same_client = client.get("/stock/TCS", headers={"X-Forwarded-For": "other-spoof, 203.0.113.7"})
    other_client = client.get("/stock/TCS", headers={"X-Forwarded-For": "203.0.113.8"})

    assert [first.status_code, same_client.status_code, other_client.status_code] == [200, 429, 200]


@pytest.mark.parametrize("secret", [TD_KEY, FH_KEY])
def test_keys_never_reach_logs_even_when_something_prints_them(make_app, caplog, secret):
    make_app()
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").warning("calling https://x/?apikey=%s", secret)

    assert secret not in caplog.text and "apikey=***" in caplog.text
