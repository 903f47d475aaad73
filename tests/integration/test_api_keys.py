"""Client API keys through the real app on a Redis-like store: the operator's routes, X-API-Key in
every mode, revocation and rotation, hashes only, and the store going away."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from quantpulse.access.keys import RECHECK
from quantpulse.app import create_app
from quantpulse.config import Settings
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, embedded_store

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def make_keyed_app(settings: Settings, server: fakeredis.FakeServer) -> Callable[..., Flask]:
    """The app with keys in a shared (Redis-like) store; ``api_keys`` picks the mode."""

    def build(api_keys: str = "optional", **overrides: Any) -> Flask:
        shared = Store(fakeredis.FakeRedis(server=server), BACKEND_REDIS)
        keyed = dataclasses.replace(
            settings,
            redis_url="redis://shared.test:6379/0",
            api_keys=api_keys,
            stock_provider="demo",
            **overrides,
        )
        return create_app(keyed, stores=Stores(shared, fallback=embedded_store(100)))

    return build


def issue(client: FlaskClient, **body: Any) -> dict[str, Any]:
    answer = client.post("/admin/keys", json={"name": "acme", **body}, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def quote(client: FlaskClient, key: str | None = None) -> int:
    headers = {"X-API-Key": key} if key is not None else {}
    return client.get("/stock/RELIANCE", headers=headers).status_code


def test_an_issued_key_is_shown_once_and_listed_without_it(make_keyed_app):
    client = make_keyed_app().test_client()
    issued = issue(client, tier="pro")

    assert re.fullmatch(r"k_[0-9a-f]{12}", issued["id"])
    assert issued["key"].startswith("qp_") and len(issued["key"]) > 40
    assert (issued["name"], issued["tier"], issued["revoked"], issued["expires"]) == (
        "acme",
        "pro",
        False,
        None,
    )
    listed = client.get("/admin/keys", headers=ADMIN).get_json()["keys"]
    assert [record["id"] for record in listed] == [issued["id"]]
    assert "key" not in listed[0] and "digest" not in listed[0]
    assert listed[0]["last_used"] is None
    assert quote(client, issued["key"]) == 200
    assert client.get("/admin/keys", headers=ADMIN).get_json()["keys"][0]["last_used"]


@pytest.mark.parametrize(
    ("mode", "no_key", "wrong_key"),
    [("optional", 200, 401), ("required", 401, 401), ("off", 200, 200)],
)
def test_each_mode_answers_missing_and_wrong_keys_as_documented(make_keyed_app, mode, no_key, wrong_key):
    client = make_keyed_app(api_keys=mode).test_client()
    good = issue(client)["key"]

    assert (quote(client), quote(client, "qp_not-a-key"), quote(client, good)) == (no_key, wrong_key, 200)
    if wrong_key == 401:
        body = client.get("/stock/RELIANCE", headers={"X-API-Key": "qp_x"}).get_json()
        assert body["detail"]["message"] and "qp_x" not in str(body)


def test_always_open_routes_need_no_key_even_when_keys_are_required(make_keyed_app):
    client = make_keyed_app(api_keys="required").test_client()
    for path in ("/health", "/health/ready", "/openapi.json", "/docs", "/metrics", "/live"):
        assert client.get(path).status_code == 200, path
    preflight = client.options(
        "/stock/RELIANCE",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert client.get("/admin/keys", headers=ADMIN).status_code == 200
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/stock/service/status").status_code == 401


def test_a_revoked_key_stops_working_within_a_second_and_revoking_again_says_the_same(make_keyed_app):
    first, second = make_keyed_app(), make_keyed_app()  # two workers on one store
    admin, other = first.test_client(), second.test_client()
    issued = issue(admin)
    assert quote(other, issued["key"]) == 200

    assert admin.delete(f"/admin/keys/{issued['id']}", headers=ADMIN).get_json() == {
        "id": issued["id"],
        "revoked": True,
    }
    time.sleep(RECHECK + 0.1)

    assert quote(other, issued["key"]) == 401
    assert admin.delete(f"/admin/keys/{issued['id']}", headers=ADMIN).status_code == 200
    assert admin.delete("/admin/keys/k_000000000000", headers=ADMIN).status_code == 404
    listed = admin.get("/admin/keys", headers=ADMIN).get_json()["keys"]
    assert listed[0]["revoked"] is True


def test_rotation_retires_the_old_key_and_re_tiering_keeps_the_key(make_keyed_app):
    client = make_keyed_app().test_client()
    issued = issue(client)
    rotated = client.post(f"/admin/keys/{issued['id']}/rotate", headers=ADMIN).get_json()
    updated = client.patch(f"/admin/keys/{issued['id']}", json={"tier": "PRO"}, headers=ADMIN).get_json()
    time.sleep(RECHECK + 0.1)

    assert rotated["id"] == issued["id"] and rotated["key"] != issued["key"]
    assert (quote(client, issued["key"]), quote(client, rotated["key"])) == (401, 200)
    assert updated["tier"] == "pro" and "key" not in updated
    actions = [entry["action"] for entry in client.get("/admin/audit", headers=ADMIN).get_json()["entries"]]
    assert actions == ["update", "rotate", "create"]


def test_an_expired_key_is_refused(make_keyed_app):
    client = make_keyed_app().test_client()
    issued = issue(client, expires="2020-01-01T00:00:00Z")
    assert quote(client, issued["key"]) == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/admin/keys", {"name": "x" * 65}),
        ("post", "/admin/keys", {"name": "drop table;"}),
        ("post", "/admin/keys", {"name": "ok", "tier": "platinum"}),
        ("post", "/admin/keys", {"name": "ok", "expires": "next tuesday"}),
        ("post", "/admin/keys", {"tier": "free"}),
        ("post", "/admin/keys", "not json"),
        ("post", "/admin/keys", ["acme"]),
        ("patch", "/admin/keys/{id}", {}),
        ("patch", "/admin/keys/{id}", {"tier": "platinum"}),
        ("patch", "/admin/keys/{id}", {"name": ""}),
    ],
)
def test_bad_admin_input_is_a_400_never_a_5xx(make_keyed_app, method, path, body):
    client = make_keyed_app().test_client()
    key_id = issue(client)["id"]
    call = getattr(client, method)
    kwargs = {"data": body, "content_type": "application/json"} if isinstance(body, str) else {"json": body}
    answer = call(path.format(id=key_id), headers=ADMIN, **kwargs)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["detail"]["message"]


def test_key_routes_need_the_admin_token(make_keyed_app):
    client = make_keyed_app().test_client()
    assert client.get("/admin/keys").status_code == 401
    assert client.get("/admin/keys", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post("/admin/keys", json={"name": "x"}, headers={"X-API-Key": "qp_x"}).status_code == 401


def test_without_the_shared_store_key_routes_answer_503_and_no_key_is_checked(make_app):
    client = make_app().test_client()  # embedded store, no REDIS_URL
    answer = client.get("/admin/keys", headers=ADMIN)
    assert answer.status_code == 503
    assert "REDIS_URL" in answer.get_json()["detail"]["message"]
    assert client.get("/stock/RELIANCE", headers={"X-API-Key": "qp_whatever"}).status_code == 200


def test_the_store_holds_no_key_in_any_key_name_or_value(make_keyed_app, server):
    client = make_keyed_app().test_client()
    issued = [issue(client) for _ in range(3)]
    rotated = client.post(f"/admin/keys/{issued[0]['id']}/rotate", headers=ADMIN).get_json()["key"]
    keys = [record["key"] for record in issued]
    for key in [*keys, rotated]:
        quote(client, key)

    redis_client = fakeredis.FakeRedis(server=server)
    dump = []
    for name in redis_client.scan_iter("*"):
        dump.append(name)
        kind = redis_client.type(name)
        if kind == b"string":
            dump.append(redis_client.get(name))
        elif kind == b"hash":
            dump.extend(b"%s=%s" % pair for pair in redis_client.hgetall(name).items())
        elif kind == b"list":
            dump.extend(redis_client.lrange(name, 0, -1))
    text = b"\n".join(dump)
    for key in [*keys, rotated]:
        assert key.encode() not in text
        assert key[3:].encode() not in text


def test_while_the_store_is_away_recently_validated_keys_keep_working_others_get_503(make_keyed_app, server):
    client = make_keyed_app().test_client()
    known, unknown = issue(client)["key"], issue(client)["key"]
    assert quote(client, known) == 200

    server.connected = False
    time.sleep(RECHECK + 0.1)

    assert quote(client, known) == 200
    answer = client.get("/stock/RELIANCE", headers={"X-API-Key": unknown})
    assert answer.status_code == 503 and answer.headers["Retry-After"]


def test_a_keys_tier_limit_holds_across_routes_and_workers_and_anonymous_use_is_untouched(make_keyed_app):
    first, second = (make_keyed_app(api_tiers=(("free", "60/minute"), ("tiny", "3/day"))) for _ in range(2))
    admin, other = first.test_client(), second.test_client()
    key = issue(admin, tier="tiny")["key"]
    headers = {"X-API-Key": key}

    answers = [
        admin.get("/stock/RELIANCE", headers=headers),
        other.get("/stock/TCS/profile", headers=headers),
        admin.get("/stock/INFY/historical", headers=headers),
        other.get("/stock/RELIANCE", headers=headers),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert int(answers[3].headers["Retry-After"]) > 0
    assert answers[3].get_json()["detail"]["message"]
    assert all(quote(admin) == 200 for _ in range(5)), "anonymous clients have no RATE_LIMIT here"


def test_the_limit_headers_describe_the_limit_with_the_fewest_requests_left(make_keyed_app):
    client = make_keyed_app(api_tiers=(("free", "50/minute;3/day"),)).test_client()
    key = issue(client)["key"]
    answer = client.get("/stock/TCS", headers={"X-API-Key": key})
    assert (answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"]) == ("3", "2")


def test_the_fleet_usage_report_needs_only_the_admin_token_when_keys_are_required(make_keyed_app):
    client = make_keyed_app(api_keys="required").test_client()
    assert client.get("/admin/usage", headers=ADMIN).status_code == 200
    assert client.get("/admin/audit", headers=ADMIN).status_code == 200


def test_a_revoked_key_stays_revoked_through_later_changes_and_cannot_be_rotated(make_keyed_app):
    client = make_keyed_app().test_client()
    issued = issue(client)
    client.delete(f"/admin/keys/{issued['id']}", headers=ADMIN)
    updated = client.patch(f"/admin/keys/{issued['id']}", json={"tier": "pro"}, headers=ADMIN).get_json()
    rotated = client.post(f"/admin/keys/{issued['id']}/rotate", headers=ADMIN)
    time.sleep(RECHECK + 0.1)

    assert updated["revoked"] is True and updated["tier"] == "pro"
    assert rotated.status_code == 400
    assert quote(client, issued["key"]) == 401


@pytest.mark.parametrize("expires", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_an_expiry_out_of_range_is_a_400(make_keyed_app, expires):
    client = make_keyed_app().test_client()
    answer = client.post("/admin/keys", json={"name": "acme", "expires": expires}, headers=ADMIN)
    assert answer.status_code == 400


def test_the_key_routes_answer_503_not_500_while_the_store_is_away(make_keyed_app, server):
    client = make_keyed_app().test_client()
    key = issue(client)["key"]
    assert quote(client, key) == 200
    server.connected = False
    for method, path in [("get", "/admin/keys"), ("post", "/admin/keys"), ("get", "/admin/audit"),
                         ("get", "/admin/usage"), ("get", "/usage")]:  # fmt: skip
        answer = getattr(client, method)(path, json={"name": "x"}, headers={**ADMIN, "X-API-Key": key})
        assert answer.status_code == 503, (path, answer.status_code)
        assert answer.headers["Retry-After"]


def test_a_429_names_the_limit_that_was_hit(make_keyed_app):
    client = make_keyed_app(api_tiers=(("free", "100/second;50/minute;2/day"),)).test_client()
    key = issue(client)["key"]
    answers = [client.get("/stock/TCS", headers={"X-API-Key": key}) for _ in range(3)]
    assert answers[2].status_code == 429
    assert (answers[2].headers["X-RateLimit-Limit"], answers[2].headers["X-RateLimit-Remaining"]) == (
        "2",
        "0",
    )
