"""The provider interface and the single HTTP choke point every live provider goes through.

A provider turns canonical requests into upstream calls and upstream bodies into canonical
models (``quantpulse.models``). Only ``HttpProvider._attempt`` performs I/O; building requests
and parsing bodies are pure functions in each provider module, unit-tested on recorded bodies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import requests

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.market import utc_now
from quantpulse.models import History, Profile, Quote
from quantpulse.periods import Period
from quantpulse.symbols import Instrument

log = logging.getLogger(__name__)

QuoteOutcome = Quote | ProviderError


class Provider(Protocol):
    """What the service asks of every source of market data."""

    name: str
    # Whether its profile says what the company is worth (Twelve Data's /profile does not).
    profile_has_market_cap: bool

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """Quotes for several instruments; one instrument's failure never fails the others."""
        ...

    def history(self, instrument: Instrument, period: Period) -> History: ...

    def profile(self, instrument: Instrument) -> Profile: ...


class UpstreamGate(Protocol):
    """Asked before every upstream request and told about every answer (``upstream.guard``)."""

    def admit(
        self, provider: str, endpoint: str, exchange: str | None, cost: int, *, partial: bool = False
    ) -> int:
        """Credits granted for the request, or a ``skipped`` ProviderError raised."""
        ...

    def upstream_call(
        self,
        provider: str,
        endpoint: str,
        error: ProviderError | None,
        *,
        exchange: str | None = None,
        headers: Mapping[str, str] | None = None,
        seconds: float = 0.0,
    ) -> None: ...

    def learn(self, provider: str, endpoint: str, exchange: str | None, error: ProviderError) -> None:
        """A failure reported inside a successful answer (one item of a batch)."""
        ...


class HttpProvider:
    """Shared plumbing of live providers: session, timeout, auth header, gate, one transient retry."""

    name = "http"
    profile_has_market_cap = True

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        api_key: str,
        timeout: float,
        gate: UpstreamGate,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self.gate = gate
        self.clock = clock

    def auth_headers(self, api_key: str) -> dict[str, str]:
        raise NotImplementedError

    def check_body(self, endpoint: str, response: requests.Response) -> Any:
        """Return the parsed body or raise a classified ProviderError (body read first)."""
        raise NotImplementedError

    def error(self, message: str, kind: FailureKind, **extra: Any) -> ProviderError:
        return ProviderError(message, provider=self.name, kind=kind, **extra)

    def get(
        self,
        endpoint: str,
        params: Mapping[str, str],
        *,
        exchange: str | None,
        cost: int = 1,
        prepaid: bool = False,
    ) -> Any:
        """GET with one retry, for transient failures only (timeouts, 5xx, non-JSON).

        Each attempt is admitted by the gate first (health, then budget); ``prepaid`` means the
        caller already reserved the first attempt's cost (a batch sized to the credits left).
        """
        for attempt in (1, 2):
            if attempt == 2 or not prepaid:
                self.gate.admit(self.name, endpoint, exchange, cost)
            try:
                return self._attempt(endpoint, params, exchange)
            except ProviderError as error:
                if attempt == 2 or not error.is_transient:
                    raise
                log.info("%s %s: retrying after transient failure: %s", self.name, endpoint, error)
        raise AssertionError("unreachable")

    def _attempt(self, endpoint: str, params: Mapping[str, str], exchange: str | None) -> Any:
        error: ProviderError | None = None
        response: requests.Response | None = None
        started = time.perf_counter()
        try:
            response = self._session.get(
                f"{self._base_url}{endpoint}",
                params=params,
                headers=self.auth_headers(self._api_key),
                timeout=self._timeout,
            )
            return self.check_body(endpoint, response)
        except requests.RequestException as exc:
            error = self.error(f"{type(exc).__name__} calling {endpoint}", FailureKind.TRANSIENT)
            raise error from None
        except ProviderError as exc:
            error = exc
            raise
        finally:
            headers = response.headers if response is not None else None
            seconds = time.perf_counter() - started
            self.gate.upstream_call(
                self.name, endpoint, error, exchange=exchange, headers=headers, seconds=seconds
            )


def json_or_none(response: requests.Response) -> Any:
    """The parsed JSON body, or None for an HTML error page or an empty body."""
    try:
        return response.json()
    except ValueError:
        return None


def to_decimal(value: Any) -> Decimal | None:
    """Providers send numbers as strings (Twelve Data) or floats (Finnhub); both parse exactly."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def to_volume(value: Any) -> int:
    number = to_decimal(value)
    return int(number) if number is not None else 0


def price_move(
    price: Decimal, previous_close: Decimal, change: Decimal | None, percent: Decimal | None
) -> tuple[Decimal, Decimal]:
    """Change and change percent, computed from the prices when the provider left them out."""
    if change is None:
        change = price - previous_close
    if percent is None:
        percent = change / previous_close * 100 if previous_close else Decimal(0)
    return change, percent
