"""``flask quantpulse keys … | usage | warm --top``: the key and usage commands on the real app,
its keys in a shared (Redis-like) store."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable

import fakeredis
import pytest
from click.testing import Result
from flask import Flask

from quantpulse.access.keys import RECHECK
from quantpulse.app import create_app
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, embedded_store


@pytest.fixture
def app(make_keyed_app: Callable[..., Flask]) -> Flask:
    return make_keyed_app()


def run(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=["quantpulse", *args], input=input)


def created(app: Flask, *args: str) -> tuple[str, str]:
    result = run(app, "keys", "create", *args)
    assert result.exit_code == 0, result.output
    key = re.search(r"^key: (qp_\S+)$", result.stdout, re.MULTILINE)
    key_id = re.search(r"\bk_[0-9a-f]{12}\b", result.stdout)
    assert key and key_id, result.stdout
    return key_id.group(0), key.group(1)


def test_a_key_made_on_the_command_line_works_over_http_until_revoked(app):
    key_id, key = created(app, "acme", "--tier", "pro")
    client = app.test_client()
    assert client.get("/stock/TCS", headers={"X-API-Key": key}).status_code == 200

    listed = run(app, "keys", "list").stdout
    assert key_id in listed and "pro" in listed and key not in listed
    assert run(app, "keys", "update", key_id, "--name", "acme two").exit_code == 0
    assert "acme two" in run(app, "keys", "list").stdout
    assert run(app, "keys", "revoke", key_id).exit_code == 0
    assert "yes" in run(app, "keys", "list").stdout.splitlines()[1]


def test_rotate_prints_a_new_key_and_bad_input_is_one_line_not_a_traceback(app):
    key_id, key = created(app, "acme")
    rotated = run(app, "keys", "rotate", key_id)
    assert rotated.exit_code == 0 and key not in rotated.stdout and "key: qp_" in rotated.stdout

    for args in (["rotate", "k_000000000000"], ["create", "acme", "--tier", "platinum"], ["create", "no;pe"]):
        result = run(app, "keys", *args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith("Error:")


def test_export_holds_digests_only_and_import_restores_working_keys(make_keyed_app, tmp_path):
    source = make_keyed_app()
    key_id, key = created(source, "acme")
    exported = run(source, "keys", "export")
    assert key not in exported.stdout and key[3:] not in exported.stdout
    backup = tmp_path / "keys.jsonl"
    backup.write_text(exported.stdout)

    fresh_settings = dataclasses.replace(source.extensions["quantpulse"].service.settings)
    fresh = create_app(
        fresh_settings,
        stores=Stores(
            Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()), BACKEND_REDIS),
            fallback=embedded_store(9),
        ),
    )  # a Redis that lost everything
    assert fresh.test_client().get("/stock/TCS", headers={"X-API-Key": key}).status_code == 401
    imported = run(fresh, "keys", "import", str(backup))
    assert imported.exit_code == 0 and "Imported 1 of 1" in imported.stdout
    time.sleep(RECHECK + 0.1)  # the refusal just before is remembered for as long as a validation
    assert fresh.test_client().get("/stock/TCS", headers={"X-API-Key": key}).status_code == 200
    assert "Imported 0 of 1" in run(fresh, "keys", "import", str(backup)).stdout, "existing ids are kept"
    assert json.loads(exported.stdout.splitlines()[0])["id"] == key_id


def test_usage_prints_a_day_table_with_bars_per_client(app):
    key_id, key = created(app, "acme")
    client = app.test_client()
    for _ in range(3):
        client.get("/stock/TCS", headers={"X-API-Key": key})
    client.get("/stock/INFY")

    result = run(app, "usage", "--days", "3")

    assert result.exit_code == 0, result.output
    assert f"acme ({key_id}, free): 3 requests" in result.stdout
    assert "anonymous: 1 requests" in result.stdout
    assert "\u2588" * 40 in result.stdout  # today's bar, the longest
    assert len(re.findall(r"^\d{4}-\d{2}-\d{2}", result.stdout, re.MULTILINE)) == 6  # 3 days x 2 clients


def test_warm_top_warms_the_most_requested_instruments(app, upstream):
    client = app.test_client()
    for symbol in ("TCS", "TCS", "INFY", "SBIN", "SBIN", "SBIN"):
        client.get(f"/stock/{symbol}")
    app.extensions["quantpulse"].service.clear()  # nothing cached: the warm must fetch
    upstream.reset()

    result = run(app, "warm", "--top", "2")

    assert result.exit_code == 0, result.output
    assert "Warmed 2 of 2 items for 2 of 2 symbols" in result.stdout
    assert "SBIN:NSE" in result.stdout and "TCS:NSE" in result.stdout and "INFY" not in result.stdout


@pytest.mark.parametrize(
    "line",
    ["5", '{"id": "k_000000000001"}', '{"id": "k_000000000001", "name": "x", "tier": "free", "created": '
     '"2026-01-01T00:00:00Z", "expires": "next tuesday", "revoked": false, "digest": "' + "a" * 64 + '"}'],
)  # fmt: skip
def test_import_refuses_what_is_not_an_exported_record(app, tmp_path, line):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line + "\n")
    result = run(app, "keys", "import", str(bad))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Not an exported key record" in result.output
