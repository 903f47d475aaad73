"""Demo by design is a healthy state: status, /metrics and the CLI say so (docs/api.md, "Service status").

``make run`` with no keys serves flagged demo data on purpose; a newcomer must not read that as
a broken service. ``disabled`` stays reserved for a configured key the provider rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

NO_KEYS = {"twelvedata_api_key": None, "finnhub_api_key": None}


def status_of(app: Flask) -> dict[str, Any]:
    return app.test_client().get("/stock/service/status").get_json()["status"]


def cli(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["quantpulse", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("mode", ["auto", "demo"])
def test_no_live_provider_configured_is_operational_demo_only(make_app: Callable[..., Flask], mode):
    status = status_of(make_app(stock_provider=mode, **NO_KEYS))

    chain = status["provider_status"]
    assert status["status"] == "operational"
    assert chain["demo_only"] is True
    assert chain["primary_available"] is False and chain["fallback_available"] is False
    for name in ("twelvedata", "finnhub"):
        assert chain["providers"][name]["state"] == "not_configured"
        assert chain["providers"][name]["configured"] is False


def test_live_providers_configured_are_not_demo_only(app):
    chain = status_of(app)["provider_status"]

    assert chain["demo_only"] is False
    assert chain["providers"]["twelvedata"]["state"] == "ok"


def test_a_forced_provider_without_its_key_is_degraded_not_demo(make_app: Callable[..., Flask]):
    status = status_of(make_app(stock_provider="twelvedata", **NO_KEYS))

    assert status["status"] == "degraded", "every request answers 503: no demo in a forced mode"
    assert status["provider_status"]["demo_only"] is False
    assert status["provider_status"]["providers"]["twelvedata"]["state"] == "not_configured"


def test_a_provider_outside_the_modes_chain_is_not_configured(make_app: Callable[..., Flask]):
    providers = status_of(make_app(stock_provider="finnhub"))["provider_status"]["providers"]

    assert providers["twelvedata"]["state"] == "not_configured", "its key is set, but finnhub mode skips it"
    assert providers["finnhub"]["state"] == "ok"


def test_metrics_show_demo_only_and_each_providers_state(make_app: Callable[..., Flask]):
    text = make_app(**NO_KEYS).test_client().get("/metrics").get_data(as_text=True)

    assert "quantpulse_demo_only 1.0" in text
    for name in ("twelvedata", "finnhub"):
        assert f'quantpulse_provider_state{{provider="{name}",state="not_configured"}} 1.0' in text
        assert f'quantpulse_provider_state{{provider="{name}",state="disabled"}} 0.0' in text


def test_metrics_with_live_providers_are_not_demo_only(client):
    text = client.get("/metrics").get_data(as_text=True)

    assert "quantpulse_demo_only 0.0" in text
    assert 'quantpulse_provider_state{provider="twelvedata",state="ok"} 1.0' in text


def test_cli_stats_says_operational_and_demo_only(make_app: Callable[..., Flask]):
    lines = cli(make_app(**NO_KEYS), "stats").splitlines()

    assert lines[0] == "QuantPulse operational: mode auto, embedded store, process statistics"
    twelvedata = next(line for line in lines if line.startswith("twelvedata"))
    assert twelvedata.split()[:3] == ["twelvedata", "no", "not_configured"]
    assert "demo served: 0 (demo only: no live provider configured)" in lines


def test_check_keys_says_auto_would_use_an_unconfigured_provider(make_app: Callable[..., Flask], upstream):
    output = cli(make_app(**NO_KEYS), "check-keys")

    assert output.splitlines() == [
        "twelvedata  not configured  no TWELVEDATA_API_KEY; mode auto would use it",
        "finnhub     not configured  no FINNHUB_API_KEY; mode auto would use it",
    ]
    assert upstream.calls() == 0
