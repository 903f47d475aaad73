"""Shared fixtures: the real app factory wired to a loopback fake provider and an embedded store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from quantpulse.app import create_app
from quantpulse.config import Settings
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, embedded_store
from tests.fakes.provider_server import FakeProviderServer

TD_KEY = "td-test-key"
FH_KEY = "fh-test-key"


@pytest.fixture
def upstream() -> Iterator[FakeProviderServer]:
    """A fake Twelve Data + Finnhub on a free loopback port, counting every request."""
    with FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY) as server:
        yield server


@pytest.fixture
def settings(upstream: FakeProviderServer) -> Settings:
    """Both live providers configured against the fake server, with a short timeout."""
    return Settings(
        twelvedata_api_key=TD_KEY,
        finnhub_api_key=FH_KEY,
        twelvedata_base_url=upstream.twelvedata_url,
        finnhub_base_url=upstream.finnhub_url,
        provider_timeout=1.0,
        admin_token="admin-secret",
        market_hours="always_open",  # TTLs as written, at any hour
    )


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., Flask]:
    """Build the real app with settings overrides, e.g. ``make_app(stock_provider="demo")``."""

    def build(**overrides: Any) -> Flask:
        app = create_app(dataclasses.replace(settings, **overrides), stores=Stores(embedded_store(1000)))
        return app

    return build


@pytest.fixture
def make_keyed_app(settings: Settings) -> Callable[..., Flask]:
    """The real app with a shared (Redis-like) store, as with ``REDIS_URL``: keys and usage on.
    Every app built by one test shares that store, like workers sharing one Redis."""
    server = fakeredis.FakeServer()

    def build(**overrides: Any) -> Flask:
        shared = Store(fakeredis.FakeRedis(server=server), BACKEND_REDIS)
        keyed = dataclasses.replace(settings, redis_url="redis://shared.test:6379/0", **overrides)
        return create_app(keyed, stores=Stores(shared, fallback=embedded_store(100)))

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
