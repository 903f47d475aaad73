"""Usage per client and per UTC day, through the real app on a Redis-like store: what is counted,
for whom, the credits a fill cost, and the two reports."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

ADMIN = {"Authorization": "Bearer admin-secret"}


def issue(client: FlaskClient, tier: str = "free") -> dict[str, Any]:
    return client.post("/admin/keys", json={"name": "acme", "tier": tier}, headers=ADMIN).get_json()


def flushed(app: Flask) -> None:
    """What the worker counted, written now (the flusher does it every 0.5 s)."""
    app.extensions["quantpulse"].usage.flush()


def test_a_keys_requests_are_counted_by_endpoint_status_and_instrument(make_keyed_app):
    app = make_keyed_app()
    client = app.test_client()
    key = issue(client)
    headers = {"X-API-Key": key["key"]}
    client.get("/stock/RELIANCE", headers=headers)
    client.get("/stock/reliance.ns", headers=headers)
    client.get("/stock/TCS/profile", headers=headers)
    client.get("/stock/INFY/historical?period=1y", headers=headers)
    client.get("/stock/NOSUCHCO", headers=headers)  # 404 from the providers
    client.get("/health", headers=headers)  # never counted
    flushed(app)

    usage = client.get("/usage", headers=headers).get_json()

    assert (usage["id"], usage["name"], usage["tier"]) == (key["id"], "acme", "free")
    assert usage["requests"] == 5, "the /usage call itself is counted after it answers"
    assert usage["by_endpoint"]["quote"] == 3 and usage["by_endpoint"]["profile"] == 1
    assert usage["by_endpoint"]["historical"] == 1
    assert (usage["by_status"]["2xx"], usage["by_status"]["4xx"]) == (4, 1)
    assert usage["top_symbols"][0] == ["RELIANCE:NSE", 2]
    assert usage["daily"][-1]["requests"] == 5 and len(usage["daily"]) == 7
    assert {limit["limit"] for limit in usage["limits"]} == {"60 per 1 minute", "2000 per 1 day"}


def test_the_client_whose_request_caused_a_fill_is_charged_its_credits(make_keyed_app):
    app = make_keyed_app()
    client = app.test_client()
    first, second = issue(client), issue(client)
    client.get("/stock/SBIN", headers={"X-API-Key": first["key"]})  # cold: one upstream call
    client.get("/stock/SBIN", headers={"X-API-Key": second["key"]})  # cached
    flushed(app)

    report = client.get("/admin/usage?days=1", headers=ADMIN).get_json()
    credits = {entry["id"]: entry["upstream_credits"] for entry in report["keys"]}

    assert credits == {first["id"]: 1, second["id"]: 0}
    assert report["upstream"]["twelvedata"]["calls"] == 1
    assert report["upstream"]["twelvedata"]["credits"] == 1


def test_anonymous_traffic_is_one_bucket_cached_hits_included_and_refusals_count(make_keyed_app):
    app = make_keyed_app()
    client = app.test_client()
    for _ in range(3):
        client.get("/stock/TCS")  # the first through Flask, the rest from the cached-hit path
    client.get("/stock/TCS", headers={"X-API-Key": "qp_wrong"})  # 401, as anonymous
    client.get("/stock/BAD!!")  # 400
    flushed(app)

    anonymous = client.get("/admin/usage", headers=ADMIN).get_json()["anonymous"]

    assert anonymous["requests"] == 5
    assert anonymous["by_endpoint"]["quote"] == 5
    assert (anonymous["by_status"]["2xx"], anonymous["by_status"]["4xx"]) == (3, 2)
    assert anonymous["top_symbols"] == [["TCS:NSE", 3]], "a refused request names no instrument"


def test_a_429_is_counted_under_its_key(make_keyed_app):
    app = make_keyed_app(api_tiers=(("free", "2/day"),))
    client = app.test_client()
    key = issue(client)
    statuses = [client.get("/stock/TCS", headers={"X-API-Key": key["key"]}).status_code for _ in range(3)]
    flushed(app)

    entry = client.get("/admin/usage", headers=ADMIN).get_json()["keys"][0]
    assert statuses == [200, 200, 429]
    assert (entry["requests"], entry["by_status"]["429"], entry["by_status"]["4xx"]) == (3, 1, 1)


def test_the_fleet_report_names_the_busiest_instruments_and_the_hit_rate(make_keyed_app):
    app = make_keyed_app()
    client = app.test_client()
    for symbol in ("TCS", "TCS", "TCS", "INFY", "INFY", "SBIN"):
        client.get(f"/stock/{symbol}")
    flushed(app)

    report = client.get("/admin/usage?days=3", headers=ADMIN).get_json()

    assert report["days"] == 3
    assert report["top_symbols"] == [["TCS:NSE", 3], ["INFY:NSE", 2], ["SBIN:NSE", 1]]
    assert 0 < report["cache"]["hit_rate"] <= 1


@pytest.mark.parametrize("days", ["0", "91", "seven", "-1"])
def test_days_outside_the_retention_are_a_400(make_keyed_app, days):
    client = make_keyed_app().test_client()
    answer = client.get(f"/admin/usage?days={days}", headers=ADMIN)
    assert answer.status_code == 400 and answer.get_json()["detail"]["message"]


def test_usage_needs_a_key_keys_on_and_the_shared_store(make_keyed_app, make_app):
    assert make_keyed_app().test_client().get("/usage").status_code == 401
    off = make_keyed_app(api_keys="off").test_client().get("/usage")
    assert off.status_code == 404 and off.get_json()["detail"]["hint"]
    for path in ("/usage", "/admin/usage"):
        answer = make_app().test_client().get(path, headers=ADMIN)
        assert answer.status_code == 503 and "REDIS_URL" in answer.get_json()["detail"]["message"]
