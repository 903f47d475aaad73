"""Unit-test fixtures: recorded provider bodies, a recording observer and the real providers.

Providers are built exactly as production builds them (real ``requests.Session``), with HTTP
intercepted by ``responses``: any request no test registered fails instead of reaching a network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
import requests
import responses

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.infra.store import BACKEND_REDIS, Store
from quantpulse.providers.finnhub import Finnhub
from quantpulse.providers.twelvedata import TwelveData
from tests.fixtures import provider_body

TD_BASE = "https://td.test"
FH_BASE = "https://fh.test"
TD_KEY = "td-key"
FH_KEY = "fh-key"

# Fri 2025-06-13 16:00 IST: the recorded trading day, half an hour after the close.
FROZEN_NOW = datetime(2025, 6, 13, 10, 30, tzinfo=UTC)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    """One fake Redis server; clients on it stand in for processes sharing one Redis."""
    return fakeredis.FakeServer()


@pytest.fixture
def store(server: fakeredis.FakeServer) -> Store:
    """A shared (Redis-like) store on ``server``."""
    return Store(fakeredis.FakeRedis(server=server), BACKEND_REDIS)


@pytest.fixture
def fixture_body() -> Callable[[str], Any]:
    """``fixture_body("twelvedata-quote-ok")`` is that recorded body, parsed."""
    return provider_body


class RecordingObserver:
    """Fake UpstreamGate: admits everything, remembers every upstream attempt, retries included."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, ProviderError | None]] = []
        self.admitted: list[tuple[str, str, str | None, int]] = []
        self.learned: list[ProviderError] = []
        self.grant: int | None = None  # set to grant a batch fewer credits than it asks for

    def admit(
        self, provider: str, endpoint: str, exchange: str | None, cost: int, *, partial: bool = False
    ) -> int:
        granted = min(cost, self.grant) if partial and self.grant is not None else cost
        self.admitted.append((provider, endpoint, exchange, granted))
        return granted

    def upstream_call(
        self,
        provider: str,
        endpoint: str,
        error: ProviderError | None,
        *,
        exchange=None,
        headers=None,
        seconds=0.0,
    ) -> None:
        self.calls.append((provider, endpoint, error))

    def learn(self, provider: str, endpoint: str, exchange: str | None, error: ProviderError) -> None:
        self.learned.append(error)

    @property
    def outcomes(self) -> list[tuple[str, str, FailureKind | None]]:
        """The calls with each error reduced to its kind (None for a successful attempt)."""
        return [(p, e, error.kind if error else None) for p, e, error in self.calls]


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def upstream() -> Iterator[responses.RequestsMock]:
    """Intercepted HTTP: register answers on it, then read ``upstream.calls``."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class SettableClock:
    """The providers' clock: real time until a test sets ``now``."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def twelvedata(
    upstream: responses.RequestsMock, observer: RecordingObserver, clock: SettableClock
) -> TwelveData:
    return TwelveData(
        session=requests.Session(),
        base_url=TD_BASE,
        api_key=TD_KEY,
        timeout=2,
        gate=observer,
        clock=clock,
    )


@pytest.fixture
def finnhub(
    upstream: responses.RequestsMock, observer: RecordingObserver, clock: SettableClock
) -> Iterator[Finnhub]:
    with ThreadPoolExecutor(4) as executor:
        yield Finnhub(
            executor=executor,
            session=requests.Session(),
            base_url=FH_BASE,
            api_key=FH_KEY,
            timeout=2,
            gate=observer,
            clock=clock,
        )


@pytest.fixture
def frozen_now(clock: SettableClock) -> datetime:
    """Both providers' clocks stopped at ``FROZEN_NOW`` (retry-after, date ranges, market state)."""
    clock.now = FROZEN_NOW
    return FROZEN_NOW
