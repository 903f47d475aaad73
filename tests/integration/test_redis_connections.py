"""The per-worker connection budget against a real redis-server: one subscriber connection of
its own, a command pool whose wait is bounded and says so with its own error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from quantpulse.config import Settings
from quantpulse.infra.store import (
    TIMEOUT,
    PoolExhausted,
    Store,
    Stores,
    connect_redis,
    embedded_store,
    error_kind,
)
from tests.servers import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def store(redis_server: RedisServer) -> Store:
    settings = Settings(redis_url=redis_server.url, redis_max_connections=2, redis_pool_timeout=0.2)
    return connect_redis(settings)


def test_a_full_command_pool_fails_only_after_its_bounded_wait(store):
    held = store.client.connection_pool.get_connection()  # the one command connection (2 - 1)
    try:
        started = time.monotonic()
        with pytest.raises(PoolExhausted) as exhausted:
            store.client.ping()
        waited = time.monotonic() - started
    finally:
        store.client.connection_pool.release(held)

    assert 0.15 < waited < 2
    assert error_kind(exhausted.value) == TIMEOUT
    assert store.client.ping() is True, "free again once the connection is back"


def test_a_full_pool_sends_only_that_request_elsewhere(store):
    stores = Stores(store, fallback=embedded_store(10))
    held = store.client.connection_pool.get_connection()
    try:
        with pytest.raises(PoolExhausted) as exhausted:
            store.client.ping()
        elsewhere = stores.failed(store, exhausted.value)
    finally:
        store.client.connection_pool.release(held)

    assert elsewhere is not store
    assert stores.active() is store and not stores.shared_down


def test_the_subscriber_has_a_connection_of_its_own(store, redis_server):
    held = store.client.connection_pool.get_connection()
    pubsub = store.subscriber.pubsub()
    try:
        pubsub.subscribe("qp:v1:test")  # works although the command pool is exhausted
        clients = redis_server.info("clients")["connected_clients"]
    finally:
        pubsub.close()
        store.client.connection_pool.release(held)

    assert int(clients) == 2 + 1, "the command connection, the subscriber, and redis-cli"
