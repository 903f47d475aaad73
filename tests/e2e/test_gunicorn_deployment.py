"""``gunicorn -w N wsgi:app`` from the repository root, configured only by environment variables,
as the platform (and the outside checks) start it."""

from __future__ import annotations

import json

import pytest
import requests

from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer

pytestmark = pytest.mark.slow


def provider_env(upstream: FakeProviderServer) -> dict[str, str]:
    return {**upstream.service_env(), "PROVIDER_TIMEOUT": "2"}


def test_without_keys_or_redis_every_endpoint_serves_flagged_demo_data():
    with Gunicorn({}, workers=2) as server:
        quote = requests.get(f"{server.url}/stock/RELIANCE", timeout=5)
        history = requests.get(f"{server.url}/stock/RELIANCE/historical?period=1y", timeout=5)
        ready = requests.get(f"{server.url}/health/ready", timeout=5)

    assert quote.status_code == 200 and quote.json()["isDemoData"] is True
    assert quote.json()["companyName"] == "Reliance Industries Ltd"
    assert history.json()["dataPoints"] > 200
    assert ready.json() == {"status": "ready", "backend": "embedded", "reason": None}
    assert "EMBEDDED in-process store" in server.output()


def test_four_workers_serve_live_data_from_the_fake_provider(upstream):
    with Gunicorn(provider_env(upstream), workers=4) as server:
        quote = requests.get(f"{server.url}/stock/TCS", timeout=5).json()
        batch = requests.post(f"{server.url}/stock/quotes?symbols=INFY,ZZZZZZ", timeout=5).json()
        error = requests.get(f"{server.url}/stock/TCS:NYSE", timeout=5)

    assert quote["service_info"]["source"] == "twelvedata"
    assert batch["successful"] == 1 and batch["errors"]["ZZZZZZ"]["status"] == 404
    assert error.status_code == 400 and error.json()["detail"]["message"]
    assert upstream.key_seen_in_url is False


def test_with_redis_url_workers_share_json_entries_operators_can_read(upstream):
    with (
        RedisServer() as redis_server,
        Gunicorn({**provider_env(upstream), "REDIS_URL": redis_server.url}, workers=2) as server,
    ):
        answers = [requests.get(f"{server.url}/stock/HDFCBANK", timeout=5).json() for _ in range(6)]
        raw = redis_server.cli("GET", "qp:v1:quote:NSE:HDFCBANK")
        ready = requests.get(f"{server.url}/health/ready", timeout=5).json()

    assert json.loads(raw)["source"] == "twelvedata"
    assert [a["service_info"]["cache"] for a in answers[1:]] == ["hit"] * 5
    assert upstream.calls("twelvedata") == 1
    assert ready == {"status": "ready", "backend": "redis", "reason": None}


def test_rediss_url_with_a_self_signed_certificate_works_as_on_heroku(upstream):
    with (
        RedisServer(tls=True) as redis_server,
        Gunicorn({**provider_env(upstream), "REDIS_URL": redis_server.url}, workers=2) as server,
    ):
        answers = [requests.get(f"{server.url}/stock/SBIN", timeout=5).json() for _ in range(3)]
        ready = requests.get(f"{server.url}/health/ready", timeout=5).json()
        stored = redis_server.cli("EXISTS", "qp:v1:quote:NSE:SBIN")

    assert redis_server.url.startswith("rediss://")
    assert ready == {"status": "ready", "backend": "redis", "reason": None}
    assert [a["service_info"]["cache"] for a in answers[1:]] == ["hit", "hit"]
    assert stored.strip() == "1"


def test_unknown_stock_provider_stops_the_service_with_a_clear_message():
    server = Gunicorn({"STOCK_PROVIDER": "yahoo"}, workers=1)

    with pytest.raises(RuntimeError, match="STOCK_PROVIDER='yahoo' is not one of"):
        server.__enter__()
