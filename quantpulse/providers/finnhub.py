"""Finnhub adapter: ``/quote``, ``/stock/candle``, ``/stock/profile2``.

Quirks handled here (provider-fixtures README, F1–F8): an unknown symbol is an all-zero quote or
an empty ``{}`` profile with HTTP 200; errors are ``{"error": text}`` whose status is not always
telling, so the text decides (auth vs entitlement); candles may be ``no_data``; market cap comes
in millions; quotes carry no volume and no name. Indian listings need ``.NS`` / ``.BO``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import Executor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.market import IST, MarketCalendar, from_epoch
from quantpulse.models import Bar, History, Profile, Quote
from quantpulse.periods import Period, bar_date, normalise_bars
from quantpulse.providers.base import (
    HttpProvider,
    QuoteOutcome,
    json_or_none,
    price_move,
    to_decimal,
    to_volume,
)
from quantpulse.symbols import Instrument

MILLION = Decimal(1_000_000)
_PROFILE = "/stock/profile2"
_QUOTE = "/quote"
_DEFAULT_RATE_LIMIT_WAIT = 60


class Finnhub(HttpProvider):
    """Fallback provider. No batch endpoint, so batches fan out over a bounded pool."""

    name = "finnhub"

    def __init__(self, *, executor: Executor, market: MarketCalendar | None = None, **kwargs: Any) -> None:
        """``market`` says whether the exchange trades (Finnhub's quote does not)."""
        super().__init__(**kwargs)
        self._executor = executor
        self._market = market or MarketCalendar()

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"X-Finnhub-Token": api_key}

    def check_body(self, endpoint: str, response: requests.Response) -> Any:
        body = json_or_none(response)
        error_text = body.get("error") if isinstance(body, dict) else None
        if error_text or response.status_code >= 400:
            raise self._classified(str(error_text or ""), response)
        if body is None:
            raise self.error(f"non-JSON answer from {endpoint}", FailureKind.TRANSIENT)
        if is_unknown_symbol(endpoint, body):
            raise self.error("no such symbol", FailureKind.NOT_FOUND)
        return body

    def _classified(self, text: str, response: requests.Response) -> ProviderError:
        """Classify by text first: the entitlement message has also come with a 401 (F5)."""
        lowered = text.lower()
        status = response.status_code
        message = text or f"HTTP {status}"
        if "invalid api key" in lowered:
            return self.error(message, FailureKind.AUTH)
        if "access to this resource" in lowered or status == 403:
            return self.error(message, FailureKind.PLAN)
        if status == 429 or "limit" in lowered:
            wait = _reset_wait(response.headers.get("X-Ratelimit-Reset"), self.clock())
            return self.error(message, FailureKind.RATE_LIMITED, scope="minute", retry_after=wait)
        if status == 401:
            return self.error(message, FailureKind.AUTH)
        return self.error(message, FailureKind.TRANSIENT)

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        if len(instruments) == 1:
            return {instruments[0]: self._quote_outcome(instruments[0])}
        # Each call in the caller's context, so usage charges its credits to the right client.
        contexts = [contextvars.copy_context() for _ in instruments]
        outcomes = self._executor.map(
            lambda pair: pair[0].run(self._quote_outcome, pair[1]), zip(contexts, instruments, strict=True)
        )
        return dict(zip(instruments, outcomes, strict=True))

    def _quote_outcome(self, instrument: Instrument) -> QuoteOutcome:
        try:
            body = self._get(_QUOTE, instrument)
        except ProviderError as error:
            return error
        return parse_quote(body, instrument, self._market.state(self.clock(), instrument.exchange))

    def history(self, instrument: Instrument, period: Period) -> History:
        """``no_data`` also answers unknown symbols, so an empty answer is checked with a quote."""
        body = self._get("/stock/candle", instrument, candle_params(instrument, period, self.clock()))
        bars = parse_candles(body, period)
        if not bars:
            self._get(_QUOTE, instrument)  # raises NOT_FOUND on zeros
        return History(period.interval, bars)

    def profile(self, instrument: Instrument) -> Profile:
        return parse_profile(self._get(_PROFILE, instrument))

    def _get(self, endpoint: str, instrument: Instrument, params: dict[str, str] | None = None) -> Any:
        params = params or {"symbol": instrument.finnhub_symbol}
        return self.get(endpoint, params, exchange=instrument.exchange)


def is_unknown_symbol(endpoint: str, body: Any) -> bool:
    """Finnhub's not-found verdicts: an all-zero quote (F1) or an empty profile (F4)."""
    if endpoint == _QUOTE and isinstance(body, dict):
        return not body.get("t") or (not body.get("c") and not body.get("pc"))
    if endpoint == _PROFILE:
        return not body
    return False


def parse_quote(body: dict[str, Any], instrument: Instrument, market_state: str) -> Quote:
    """Finnhub sends no market state, so it comes from the exchange clock at ``now``."""
    price = to_decimal(body.get("c")) or Decimal(0)
    previous_close = to_decimal(body.get("pc")) or price
    change, percent = price_move(price, previous_close, to_decimal(body.get("d")), to_decimal(body.get("dp")))
    return Quote(
        symbol=instrument.ticker,
        exchange=instrument.exchange,
        company_name=None,
        currency="INR",
        price=price,
        previous_close=previous_close,
        change=change,
        change_percent=percent,
        open=to_decimal(body.get("o")),
        high=to_decimal(body.get("h")),
        low=to_decimal(body.get("l")),
        volume=0,
        market_state=market_state,
        last_trade_at=from_epoch(body.get("t")),
    )


def candle_params(instrument: Instrument, period: Period, now: datetime) -> dict[str, str]:
    if period.intraday:
        start = now - timedelta(days=period.lookback_days())
    else:
        first_day = period.start_date(now.astimezone(IST).date())
        start = datetime.combine(first_day, datetime.min.time(), IST) if first_day else None
    return {
        "symbol": instrument.finnhub_symbol,
        "resolution": period.resolution,
        "from": str(int(start.timestamp()) if start else 0),
        "to": str(int(now.timestamp())),
    }


def parse_candles(body: dict[str, Any], period: Period) -> tuple[Bar, ...]:
    """Parallel arrays, oldest first; ``{"s": "no_data"}`` is a valid empty answer."""
    if body.get("s") != "ok":
        return ()
    columns = [body.get(k) or [] for k in ("t", "o", "h", "l", "c", "v")]
    bars = []
    for stamp, *values in zip(*columns, strict=False):
        open_, high, low, close, volume = (to_decimal(v) for v in values)
        moment = from_epoch(stamp)
        if moment is None or open_ is None or high is None or low is None or close is None:
            continue
        bars.append(Bar(bar_date(moment, period.intraday), open_, high, low, close, to_volume(volume)))
    return normalise_bars(bars, period)


def parse_profile(body: dict[str, Any]) -> Profile:
    """Finnhub gives market cap in millions and one industry label, used here as the sector."""
    market_cap = to_decimal(body.get("marketCapitalization"))
    return Profile(
        name=body.get("name") or None,
        description=None,
        sector=body.get("finnhubIndustry") or None,
        industry=None,
        market_cap=market_cap * MILLION if market_cap else None,
        employees=None,
        website=body.get("weburl") or None,
        currency=body.get("currency") or "INR",
    )


def _reset_wait(header: str | None, now: datetime) -> int:
    """X-Ratelimit-Reset is taken as epoch seconds (unverified upstream; see fixtures README)."""
    reset = to_decimal(header)
    if reset is None:
        return _DEFAULT_RATE_LIMIT_WAIT
    return max(1, min(int(reset) - int(now.timestamp()), _DEFAULT_RATE_LIMIT_WAIT))
