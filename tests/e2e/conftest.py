"""Fixtures of the fleet tests: a fake provider that answers like a real API, in 300 ms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import FH_KEY, TD_KEY
from tests.fakes.provider_server import FakeProviderServer

UPSTREAM_LATENCY = 0.3


@pytest.fixture
def upstream() -> Iterator[FakeProviderServer]:
    """Twelve Data and Finnhub on a free loopback port, 300 ms per answer, counting requests."""
    with FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY, latency=UPSTREAM_LATENCY) as server:
        yield server
