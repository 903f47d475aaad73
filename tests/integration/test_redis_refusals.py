"""A shared store that refuses every command ("max number of clients reached") or every write
(OOM under ``noeviction``): every route still answers, never with a 5xx from Redis trouble.

The real-server versions (Heroku-mini limits, two instances x 4 workers) are in
tests/e2e/test_redis_plans.py; these pin each route's behaviour quickly, in process.
"""

from __future__ import annotations

import dataclasses

import fakeredis
import pytest
import redis

from quantpulse.app import create_app
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, embedded_store


class Refusing(fakeredis.FakeRedis):
    """Every command and pipeline fails as a full Redis answers a new client."""

    error = redis.ConnectionError("max number of clients reached")

    def execute_command(self, *args, **options):
        raise self.error

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)

        def refuse(raise_on_error=True):
            pipe.reset()
            raise self.error

        pipe.execute = refuse
        return pipe


class RefusingWrites(Refusing):
    """Reads work; every write is refused as under ``maxmemory-policy noeviction``."""

    error = redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    _READS = frozenset({"GET", "MGET", "EXISTS", "PING", "HGET", "HGETALL", "SCAN", "PTTL", "TTL"})

    def execute_command(self, *args, **options):
        if str(args[0]).upper() in self._READS:
            return fakeredis.FakeRedis.execute_command(self, *args, **options)
        raise self.error


@pytest.fixture(params=[Refusing, RefusingWrites], ids=["maxclients", "oom"])
def app(request, settings):
    shared = Store(request.param(server=fakeredis.FakeServer()), BACKEND_REDIS)
    stores = Stores(shared, fallback=embedded_store(100))
    return create_app(dataclasses.replace(settings, rate_limit="100/minute"), stores=stores)


def test_quotes_history_and_profiles_are_still_served(client, upstream):
    for path in ("/stock/RELIANCE", "/stock/TCS/historical?period=5d", "/stock/INFY/profile"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.get_json()["isDemoData"] is False


def test_status_answers_and_says_what_it_could_not_count(client, upstream):
    client.get("/stock/RELIANCE")
    response = client.get("/stock/service/status")

    assert response.status_code == 200
    cache = response.get_json()["status"]["cache_stats"]
    assert sum(cache["redis_errors"].values()) > 0


def test_readiness_stays_ready_while_redis_is_up_but_refusing(client):
    """A refusal is an answer: Redis is up, only full; routing traffic away would not help it."""
    ready = client.get("/health/ready")

    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"


def test_an_admin_cache_drop_is_a_503_with_retry_after_never_a_500(client):
    response = client.delete("/stock/RELIANCE/cache", headers={"Authorization": "Bearer admin-secret"})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["detail"]["message"].startswith("The shared cache refused")
