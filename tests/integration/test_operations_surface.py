"""What operators and front-end developers see: OpenAPI docs, metrics, request logs."""

from __future__ import annotations

import json
import logging

from prometheus_client import CONTENT_TYPE_LATEST

from tests.conftest import TD_KEY


def test_openapi_document_is_generated_from_the_schemas(client):
    spec = client.get("/openapi.json").get_json()

    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {
        "/stock/{symbol}", "/stock/{symbol}/historical", "/stock/{symbol}/profile", "/stock/quotes",
        "/stock/service/status", "/stock/{symbol}/cache", "/health", "/health/ready",
    }  # fmt: skip
    quote = spec["components"]["schemas"]["Quote"]["properties"]
    assert quote["currentPrice"]["type"] == "number" and quote["isDemoData"]["type"] == "boolean"
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"detail"}, "errors documented in our envelope"
    period = spec["paths"]["/stock/{symbol}/historical"]["get"]["parameters"]
    assert any(p["name"] == "period" and "10y" in p["schema"]["enum"] for p in period)


def test_docs_page_works_without_internet(client):
    page = client.get("/docs")
    script = client.get("/docs/assets/swagger-ui-bundle.js")

    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "/docs/assets/swagger-ui-bundle.js" in page.get_data(as_text=True)
    assert "/openapi.json" in page.get_data(as_text=True)
    assert script.status_code == 200 and len(script.data) > 100_000


def test_metrics_count_requests_cache_results_and_upstream_calls(client, upstream):
    client.get("/stock/TCS")
    client.get("/stock/TCS")
    client.get("/stock/ZZZZZZ")

    text = client.get("/metrics").get_data(as_text=True)

    assert 'quantpulse_requests_total{endpoint="stocks.quote",status="200"} 2.0' in text
    assert 'quantpulse_requests_total{endpoint="stocks.quote",status="404"} 1.0' in text
    assert 'quantpulse_cache_results_total{result="hit"} 1.0' in text
    assert (
        f'quantpulse_upstream_calls_total{{provider="twelvedata"}} {upstream.calls("twelvedata")}.0' in text
    )
    assert 'quantpulse_request_duration_seconds_count{endpoint="stocks.quote"} 3.0' in text
    assert 'quantpulse_upstream_duration_seconds_bucket{le="+Inf",provider="twelvedata"} 2.0' in text


def test_metrics_show_the_budget_left(make_app, upstream):
    client = make_app(twelvedata_credits_per_minute=8).test_client()
    client.get("/stock/TCS")

    text = client.get("/metrics").get_data(as_text=True)

    assert 'quantpulse_budget_left{provider="twelvedata",window="minute"} 7.0' in text


def test_request_id_is_accepted_or_made_and_returned(client):
    given = client.get("/health", headers={"X-Request-ID": "front-end-42"})
    unsafe = client.get("/health", headers={"X-Request-ID": "x" * 100})
    missing = client.get("/stock/quotes")

    assert given.headers["X-Request-ID"] == "front-end-42"
    assert unsafe.headers["X-Request-ID"] != "x" * 100 and len(unsafe.headers["X-Request-ID"]) == 32
    assert len(missing.headers["X-Request-ID"]) == 32, "error answers carry one too"


def test_one_structured_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="quantpulse.access"):
        client.get("/stock/reliance.ns", headers={"X-Request-ID": "abc"})

    (record,) = [r for r in caplog.records if r.name == "quantpulse.access"]
    assert record.fields == {
        "request_id": "abc",
        "method": "GET",
        "route": "/stock/<quote_symbol:symbol>",
        "path": "/stock/reliance.ns",
        "symbol": "reliance.ns",
        "status": 200,
        "duration_ms": record.fields["duration_ms"],
        "cache": "miss",
        "source": "twelvedata",
    }


def test_log_lines_are_json_with_the_request_fields():
    from quantpulse.logs import JsonFormatter

    record = logging.LogRecord("quantpulse.access", logging.INFO, __file__, 1, "GET / 200", (), None)
    record.fields = {"request_id": "abc", "status": 200}

    line = json.loads(JsonFormatter().format(record))

    assert line["request_id"] == "abc" and line["status"] == 200 and line["level"] == "INFO"
    assert TD_KEY not in json.dumps(line)


def test_metrics_name_their_charset_once(client):
    response = client.get("/metrics")

    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert response.headers["Content-Type"].count("charset") == 1


def test_a_cors_preflight_is_logged_and_counted_with_the_status_the_client_got(client, caplog):
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
    with caplog.at_level(logging.INFO, logger="quantpulse.access"):
        response = client.options("/stock/TCS", headers=preflight)

    (record,) = [r for r in caplog.records if r.name == "quantpulse.access"]
    assert response.status_code == 204
    assert record.fields["status"] == 204 and record.getMessage() == "OPTIONS /stock/TCS 204"
    assert 'status="204"' in client.get("/metrics").get_data(as_text=True)
