"""The cached-hit path (api/cached_hits.py) answers exactly as Flask would, and only when it may.

Each hit is sent twice with the same ``X-Request-ID``: once through the app (the cached-hit
path, with Flask replaced by a function that fails the test if called) and once straight to
Flask. Status, body, headers, the access-log line and the request metrics must agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from quantpulse.api import EXTENSION
from quantpulse.api.cached_hits import CachedHits
from quantpulse.infra import counters

ALLOWED_ORIGIN = "http://localhost:3000"
HITS = [
    "/stock/RELIANCE",
    "/stock/reliance.ns",
    "/stock/TCS/historical",
    "/stock/TCS/historical?period=1y",
    "/stock/INFY/profile",
    "/stock/INFY?ignored=1",
]


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(allowed_origins=(ALLOWED_ORIGIN,))


@pytest.fixture
def lane(app: Flask) -> CachedHits:
    assert isinstance(app.wsgi_app, CachedHits)
    return app.wsgi_app


@pytest.fixture
def flask_only(lane: CachedHits) -> Callable[..., Any]:
    """Flask itself, behind the lane."""
    return lane.app


@pytest.fixture
def flask_refused(app: Flask, flask_only: Callable[..., Any]) -> list[str]:
    """The paths of the requests that reached Flask through the lane."""
    return _recorded(app)


def both_ways(
    app: Flask, flask_only: Callable[..., Any], path: str, **headers: str
) -> tuple[TestResponse, TestResponse]:
    via_lane = Client(app).get(path, headers=headers)
    via_flask = Client(flask_only).get(path, headers=headers)
    return via_lane, via_flask


def without_age(response: TestResponse) -> dict[str, Any]:
    document = json.loads(response.get_data())
    document["service_info"].pop("age_seconds")
    return document


@pytest.mark.parametrize("path", HITS)
@pytest.mark.parametrize("origin", [None, ALLOWED_ORIGIN, "https://evil.example"])
def test_a_hit_is_answered_as_flask_answers_it(app, flask_only, flask_refused, path, origin):
    headers = {"X-Request-ID": "req-123"} | ({"Origin": origin} if origin else {})
    Client(app).get(path)  # the fill, through Flask
    flask_refused.clear()

    via_lane, via_flask = both_ways(app, flask_only, path, **headers)

    assert flask_refused == []  # the hit was answered before Flask
    assert via_lane.status_code == via_flask.status_code == 200
    assert without_age(via_lane) == without_age(via_flask)
    assert via_lane.get_data().endswith(b"\n") and via_flask.get_data().endswith(b"\n")
    assert sorted(via_lane.headers.items()) == sorted(via_flask.headers.items())
    assert via_lane.headers["X-Request-ID"] == "req-123"
    assert json.loads(via_lane.get_data())["service_info"]["cache"] == "hit"


def test_a_hit_is_logged_and_counted_as_flask_does(app, flask_only, flask_refused, caplog):
    Client(app).get("/stock/RELIANCE")
    flask_refused.clear()
    stats = app.extensions[EXTENSION].service.stats
    before, _, _ = stats.snapshot()
    with caplog.at_level(logging.INFO, logger="quantpulse.access"):
        both_ways(app, flask_only, "/stock/RELIANCE", **{"X-Request-ID": "req-9"})
    assert flask_refused == []
    lines = [r.fields for r in caplog.records if r.name == "quantpulse.access"]
    lane_line, flask_line = [line for line in lines if line["request_id"] == "req-9"]
    assert {**lane_line, "duration_ms": 0} == {**flask_line, "duration_ms": 0}
    assert lane_line["cache"] == "hit" and lane_line["route"] == "/stock/<quote_symbol:symbol>"
    after, _, _ = stats.snapshot()
    assert (
        after[counters.request_counter("stocks.quote", 200)]
        - before[counters.request_counter("stocks.quote", 200)]
        == 2
    )
    assert after[counters.HITS] - before[counters.HITS] == 2


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/stock/RELIANCE/", {}),  # Flask's 404
        ("GET", "/stock/quotes", {}),  # the batch route's 405
        ("GET", "/stock/TCS/historical?period=1MO", {}),  # Flask reads it case-insensitively
        ("GET", "/stock/TCS/historical?period=bogus", {}),  # Flask's 400
        ("GET", "/stock/TCS/historical?period=1mo&x=1", {}),
        ("GET", "/stock/R%C3%89LIANCE", {}),  # not ASCII
        ("GET", "/stock/RELIANCE", {"data": b"x" * 10}),  # a body: the 413 rules are Flask's
        ("HEAD", "/stock/RELIANCE", {}),
        ("OPTIONS", "/stock/RELIANCE", {"headers": {"Origin": ALLOWED_ORIGIN}}),
        ("DELETE", "/stock/RELIANCE/cache", {}),
        ("GET", "/stock/" + " " * 80 + "RELIANCE", {}),  # too long to be plain
        ("GET", "/stock/TCS/historical?period=" + "1" * 40, {}),
        (  # flask-cors answers this header too
            "GET",
            "/stock/RELIANCE",
            {"headers": {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Private-Network": "true"}},
        ),
    ],
)
def test_anything_unusual_goes_to_flask(app, flask_refused, method, path, kwargs):
    for symbol_path in ("/stock/RELIANCE", "/stock/TCS/historical"):
        Client(app).get(symbol_path)
    flask_refused.clear()
    Client(app).open(path, method=method, **kwargs)
    assert len(flask_refused) == 1


def test_a_miss_a_demo_answer_and_an_unknown_symbol_go_to_flask(make_app, upstream):
    app = make_app()
    reached = _recorded(app)
    assert Client(app).get("/stock/RELIANCE").status_code == 200  # miss
    assert Client(app).get("/stock/NOSUCHCO").status_code == 404
    assert Client(app).get("/stock/NOSUCHCO").status_code == 404
    assert reached == ["/stock/RELIANCE", "/stock/NOSUCHCO", "/stock/NOSUCHCO"]
    demo = make_app(stock_provider="demo")
    reached = _recorded(demo)
    for _ in range(2):
        assert Client(demo).get("/stock/RELIANCE").json["isDemoData"] is True
    assert reached == ["/stock/RELIANCE"] * 2


def test_a_hit_after_the_near_cache_window_goes_to_flask(make_app):
    app = make_app(near_cache_ttl=0.0)
    reached = _recorded(app)
    for _ in range(2):
        assert Client(app).get("/stock/RELIANCE").json["service_info"]["cache"] in ("miss", "hit")
    assert reached == ["/stock/RELIANCE"] * 2


def test_with_client_rate_limits_every_request_goes_through_flask_limiter(make_app):
    app = make_app(rate_limit="1000/minute")
    assert not isinstance(app.wsgi_app, CachedHits)
    client = Client(app)
    client.get("/stock/RELIANCE")
    hit = client.get("/stock/RELIANCE")
    assert hit.json["service_info"]["cache"] == "hit"
    assert "X-RateLimit-Remaining" in hit.headers


def test_many_made_up_origins_cost_no_memory_and_each_hit_counts_once(app, flask_refused):
    Client(app).get("/stock/RELIANCE")
    flask_refused.clear()
    stats = app.extensions[EXTENSION].service.stats
    before, _, _ = stats.snapshot()
    for n in range(200):
        response = Client(app).get("/stock/RELIANCE", headers={"Origin": f"https://o{n}.example"})
        assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    assert 0 < len(flask_refused) < 200  # past the kept origins, Flask answers them
    after, _, _ = stats.snapshot()
    assert after[counters.HITS] - before[counters.HITS] == 200


def _recorded(app: Flask) -> list[str]:
    lane = app.wsgi_app
    assert isinstance(lane, CachedHits)
    reached: list[str] = []
    flask_app = lane.app

    def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        reached.append(environ["PATH_INFO"])
        return flask_app(environ, start_response)

    lane.app = recording
    return reached
