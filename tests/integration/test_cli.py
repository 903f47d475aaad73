"""``flask quantpulse …``: the operator commands, on the real app against the fake providers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from click.testing import Result
from flask import Flask

from quantpulse.api import EXTENSION
from quantpulse.bootstrap import Components
from tests.conftest import FH_KEY, TD_KEY
from tests.fakes.provider_server import SYNTHETIC_TICKERS


@pytest.fixture
def cli_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """The real app (create_app registers the CLI), built with settings overrides."""
    return make_app


@pytest.fixture
def app(cli_app: Callable[..., Flask]) -> Flask:
    return cli_app()


def run(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=["quantpulse", *args], input=input)


def parts(app: Flask) -> Components:
    return app.extensions[EXTENSION]


def store_keys(app: Flask) -> set[str]:
    return {name.decode() for name in parts(app).stores.primary.client.keys("*")}


def cache_state(client, path: str) -> str:
    return client.get(path).get_json()["service_info"]["cache"]


# ---- stats ----------------------------------------------------------------------------------


def test_stats_prints_the_status_numbers_as_tables(app, client):
    client.get("/stock/RELIANCE")
    client.get("/stock/RELIANCE")

    result = run(app, "stats")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "QuantPulse operational: mode auto, embedded store, process statistics"
    assert "hits                  1" in lines and "misses                1" in lines
    assert "hit rate              50.0%" in lines
    twelvedata = next(line for line in lines if line.startswith("twelvedata"))
    assert twelvedata.split()[:5] == ["twelvedata", "yes", "ok", "1", "0"]
    assert "unlimited" in twelvedata
    assert "demo served: 0 (allowed in this mode)" in lines
    assert "REDIS_URL is unset" in result.stderr


def test_stats_shows_failures_by_kind_budget_and_last_error(cli_app, upstream):
    app = cli_app(twelvedata_credits_per_minute=5)
    upstream.set_mode("finnhub", "plan")
    upstream.set_mode("twelvedata", "plan", times=1)
    app.test_client().get("/stock/TCS")

    lines = run(app, "stats").stdout.splitlines()

    twelvedata = next(line for line in lines if line.startswith("twelvedata"))
    assert "1 (plan 1)" in twelvedata and "minute 4, day -" in twelvedata
    assert any(line.startswith("last error, finnhub: /quote: plan:") for line in lines)
    assert "demo served: 1 (allowed in this mode)" in lines


def test_stats_json_is_the_status_document(app, client):
    client.get("/stock/TCS")

    document = json.loads(run(app, "stats", "--json").stdout)
    route = client.get("/stock/service/status").get_json()

    assert set(document) == {"timestamp", "status", "endpoints"}
    assert document["status"] == route["status"]


# ---- clear ----------------------------------------------------------------------------------


def fill_every_kind_of_record(app: Flask) -> None:
    """Entries, a negative entry, a lock and a failure record, beside stats and budget keys."""
    client = app.test_client()
    client.get("/stock/RELIANCE")
    client.get("/stock/INFY/historical?period=1mo")
    client.get("/stock/ZZZZZZ")
    store = parts(app).stores.primary.client
    store.set("qp:v1:lock:quote:NSE:TCS", "token", ex=10)
    store.set("qp:v1:fail:quote:NSE:ITC", json.dumps({"reason": "x", "retry_after": 5}), ex=10)
    store.set("elsewhere:quote:NSE:TCS", "not ours")
    parts(app).service.stats.flush()


def test_clear_deletes_cache_records_and_keeps_statistics_budget_and_other_keys(cli_app, upstream):
    app = cli_app(twelvedata_credits_per_minute=50)
    fill_every_kind_of_record(app)

    result = run(app, "clear", "--yes")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Deleted 5 keys (statistics, budgets and provider health kept)."
    left = store_keys(app)
    assert {"qp:v1:stats", "qp:v1:stats:last_error", "elsewhere:quote:NSE:TCS"} <= left
    assert any(name.startswith("qp:v1:budget:twelvedata:") for name in left)
    assert all(
        name.split(":")[2] in {"stats", "budget", "health"} for name in left if name.startswith("qp:v1:")
    )
    calls = upstream.calls()
    assert cache_state(app.test_client(), "/stock/RELIANCE") == "miss", "not served from the near cache"
    assert upstream.calls() == calls + 1


def test_clear_asks_first_and_a_no_deletes_nothing(app):
    fill_every_kind_of_record(app)
    before = store_keys(app)

    result = run(app, "clear", input="n\n")

    assert result.exit_code == 1
    assert "Delete every cache entry, negative entry, failure record and lock" in result.output
    assert "Aborted" in result.output
    assert store_keys(app) == before


def test_clear_with_a_symbol_drops_only_that_instrument_like_the_admin_route(app, client, upstream):
    client.get("/stock/RELIANCE")
    client.get("/stock/RELIANCE/profile")
    client.get("/stock/TCS")

    result = run(app, "clear", "reliance.ns")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Deleted 2 keys of RELIANCE:NSE."
    assert cache_state(client, "/stock/TCS") == "hit"
    assert cache_state(client, "/stock/RELIANCE") == "miss"


def test_clear_rejects_a_malformed_symbol(app):
    result = run(app, "clear", "bad!")

    assert result.exit_code == 2
    assert "'bad!' is not a valid symbol." in result.output


# ---- warm -----------------------------------------------------------------------------------


def test_warm_makes_the_following_requests_hits(app, client, upstream):
    result = run(app, "warm", "RELIANCE", "tcs.ns", "--history", "1mo")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RELIANCE", "quote", "ok", "twelvedata", "(miss)"]
    assert lines[2].split() == ["RELIANCE", "history", "1mo", "ok", "twelvedata", "(miss)"]
    assert lines[-1] == "Warmed 4 of 4 items for 2 of 2 symbols."
    assert upstream.calls("twelvedata", "/quote") == 1, "one batch"
    calls = upstream.calls()
    assert cache_state(client, "/stock/RELIANCE") == "hit"
    assert cache_state(client, "/stock/TCS") == "hit"
    assert cache_state(client, "/stock/TCS/historical?period=1mo") == "hit"
    assert upstream.calls() == calls


def test_warm_reads_a_file_and_sends_batches_of_twenty(app, upstream, tmp_path):
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("# nightly list\n\n" + "\n".join(SYNTHETIC_TICKERS[:25]) + "\nSYN01  # again\n")

    result = run(app, "warm", "--file", str(symbols))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "Warmed 25 of 25 items for 25 of 25 symbols."
    sent = [query["symbol"].count(",") + 1 for _, path, query in upstream.requests_log if path == "/quote"]
    assert sent == [20, 5]
    assert "Warming" in result.stderr


def test_warm_stops_when_the_upstream_budget_is_spent(cli_app, upstream):
    app = cli_app(twelvedata_credits_per_minute=2)

    result = run(app, "warm", *SYNTHETIC_TICKERS[:25])

    assert result.exit_code == 1
    assert upstream.calls("twelvedata") == 1 and upstream.calls("finnhub") == 18
    asked = {query["symbol"] for _, _, query in upstream.requests_log}
    assert not any(ticker in symbol for ticker in SYNTHETIC_TICKERS[20:25] for symbol in asked)
    assert "fell back: twelvedata: rate_limited (budget)" in result.stdout
    assert "Warmed 20 of 20 items for 20 of 20 symbols." not in result.stdout
    assert "Warmed 20 of 20 items for 20 of 25 symbols." in result.stdout
    assert (
        "Stopped: the upstream credit budget is spent (twelvedata: rate_limited (budget))." in result.stderr
    )
    assert "Not attempted (5): SYN21, SYN22, SYN23, SYN24, SYN25." in result.stderr


def test_warm_stops_before_histories_once_the_quotes_spent_the_budget(cli_app, upstream):
    app = cli_app(twelvedata_credits_per_minute=1)

    result = run(app, "warm", "RELIANCE", "TCS", "--history", "1y")

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split()[:4] for line in lines[2:4]] == [
        ["RELIANCE", "history", "1y", "skipped"],
        ["TCS", "history", "1y", "skipped"],
    ]
    assert "Not attempted" not in result.stderr
    assert upstream.calls("twelvedata", "/time_series") + upstream.calls("finnhub", "/stock/candle") == 0


def test_warm_reports_each_failed_symbol_and_exits_1(app, upstream):
    result = run(app, "warm", "RELIANCE", "ZZZZZZ", "bad!")

    assert result.exit_code == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[:-1]}
    assert rows["RELIANCE"].split()[:3] == ["RELIANCE", "quote", "ok"]
    assert "error  404 No listing found for ZZZZZZ on NSE." in rows["ZZZZZZ"]
    assert "error  400 'bad!' is not a valid symbol." in rows["bad!"]


def test_warm_without_symbols_is_a_usage_error(app):
    result = run(app, "warm")

    assert result.exit_code == 2
    assert "Give symbols as arguments, with --file or with --top." in result.output


# ---- check-keys -----------------------------------------------------------------------------


def test_check_keys_reports_working_keys(app, upstream):
    result = run(app, "check-keys")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "twelvedata  ok  quote of RELIANCE:NSE received",
        "finnhub     ok  quote of RELIANCE:NSE received",
    ]
    assert upstream.calls("twelvedata", "/quote") == upstream.calls("finnhub", "/quote") == 1


def test_check_keys_reports_a_wrong_key_as_rejected_without_printing_it(cli_app, upstream):
    app = cli_app(twelvedata_api_key="wrong-key-123")

    result = run(app, "check-keys")

    assert result.exit_code == 1
    rows = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert rows["twelvedata"].startswith("rejected (auth)")
    assert rows["finnhub"].startswith("ok")
    for key in ("wrong-key-123", TD_KEY, FH_KEY):
        assert key not in result.output


@pytest.mark.parametrize(
    ("mode", "verdict"),
    [("plan", "plan"), ("rate_limit", "rate-limited"), ("error_500", "unreachable")],
)
def test_check_keys_tells_other_failures_from_a_rejected_key(app, upstream, mode, verdict):
    upstream.set_mode("finnhub", mode)

    result = run(app, "check-keys")

    assert result.exit_code == 0, result.output
    assert re.split(r"\s{2,}", result.stdout.splitlines()[1])[:2] == ["finnhub", verdict]


def test_check_keys_names_an_unconfigured_provider_and_does_not_call_it(cli_app, upstream):
    app = cli_app(stock_provider="twelvedata")

    result = run(app, "check-keys")

    assert result.exit_code == 0, result.output
    assert "finnhub     not configured  not in the chain of mode twelvedata" in result.stdout
    assert upstream.calls("finnhub") == 0
