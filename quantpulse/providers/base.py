"""The provider interface and the single HTTP choke point every live provider goes through.

A provider turns canonical requests into upstream calls and upstream bodies into canonical
models (``quantpulse.models``). Only ``HttpProvider._attempt`` performs I/O; building requests
and parsing bodies are pure functions in each provider module, unit-tested on recorded bodies.
"""

from __future__ import annotations

import logging
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

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """Quotes for several instruments; one instrument's failure never fails the others."""
        ...

    def history(self, instrument: Instrument, period: Period) -> History: ...

    def profile(self, instrument: Instrument) -> Profile: ...


class UpstreamObserver(Protocol):
    """Told about every HTTP request sent upstream (statistics, later budgets and health)."""

    def upstream_call(self, provider: str, endpoint: str, error: ProviderError | None) -> None: ...


class HttpProvider:
    """Shared plumbing of live providers: session, timeout, auth header, one transient retry."""

    name = "http"

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        api_key: str,
        timeout: float,
        observer: UpstreamObserver,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._observer = observer
        self.clock = clock

    def auth_headers(self, api_key: str) -> dict[str, str]:
        raise NotImplementedError

    def check_body(self, endpoint: str, response: requests.Response) -> Any:
        """Return the parsed body or raise a classified ProviderError (body read first)."""
        raise NotImplementedError

    def error(self, message: str, kind: FailureKind, **extra: Any) -> ProviderError:
        return ProviderError(message, provider=self.name, kind=kind, **extra)

    def get(self, endpoint: str, params: Mapping[str, str]) -> Any:
        """GET with one retry, for transient failures only (timeouts, 5xx, non-JSON)."""
        try:
            return self._attempt(endpoint, params)
        except ProviderError as first:
            if not first.is_transient:
                raise
            log.info("%s %s: retrying after transient failure: %s", self.name, endpoint, first)
            return self._attempt(endpoint, params)

    def _attempt(self, endpoint: str, params: Mapping[str, str]) -> Any:
        error: ProviderError | None = None
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
            self._observer.upstream_call(self.name, endpoint, error)


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
