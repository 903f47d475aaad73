"""Twelve Data adapter: ``/quote`` (single and comma batch), ``/time_series``, ``/profile``.

Quirks handled here (provider-fixtures README, T1–T11): errors arrive with HTTP 200 as
``{"status": "error"}``; numbers are strings; a batch answer is a map keyed by the symbols sent
while a single answer is flat; ``"status": "ok"`` on a time series is success; plan errors use
code 404 or 403 and are told from unknown symbols by their text; minute and day credit limits
share code 429 and differ only in the message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests

from quantpulse.errors import FailureKind, ProviderError, over_budget
from quantpulse.market import IST, from_epoch
from quantpulse.models import MARKET_CLOSED, MARKET_OPEN, MARKET_UNKNOWN, Bar, History, Profile, Quote
from quantpulse.periods import INTRADAY_BARS_PER_SESSION, Period, bar_date, normalise_bars
from quantpulse.providers.base import (
    HttpProvider,
    QuoteOutcome,
    json_or_none,
    price_move,
    to_decimal,
    to_volume,
)
from quantpulse.symbols import Instrument

MAX_OUTPUTSIZE = 5000
PROFILE_COST = 10  # credits per symbol (fixtures README, T5)
_PLAN_PHRASES = ("available starting with", "not available with your plan", "available exclusively")
_NOT_FOUND_PHRASES = ("**symbol** or **figi**", "**symbol** not found", "symbol not found")
_NO_DATA_PHRASE = "no data is available"


class TwelveData(HttpProvider):
    """Primary provider. Always sends the plain ticker with ``exchange=`` (never ``.NSE``)."""

    name = "twelvedata"
    profile_has_market_cap = False  # /profile has none; /statistics costs far more than a free plan

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"apikey {api_key}"}

    def check_body(self, endpoint: str, response: requests.Response) -> Any:
        body = json_or_none(response)
        if isinstance(body, dict) and body.get("status") == "error":
            if is_no_data(body):
                return {"values": [], "status": "ok"}
            raise self.classified(body, fallback_code=response.status_code)
        if body is None or response.status_code >= 400:
            raise self.error(
                f"HTTP {response.status_code} without a JSON body from {endpoint}",
                FailureKind.TRANSIENT,
            )
        return body

    def classified(self, body: dict[str, Any], fallback_code: int = 200) -> ProviderError:
        kind, scope, retry_after = classify_error(body, self.clock(), fallback_code)
        return self.error(str(body.get("message", "error")), kind, scope=scope, retry_after=retry_after)

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """One comma-batch request per exchange; a failed request fails only its own group."""
        by_exchange: dict[str, list[Instrument]] = defaultdict(list)
        for instrument in instruments:
            by_exchange[instrument.exchange].append(instrument)
        outcomes: dict[Instrument, QuoteOutcome] = {}
        for exchange, group in by_exchange.items():
            outcomes.update(self._quote_batch(exchange, group))
        return outcomes

    def _quote_batch(self, exchange: str, group: list[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """A batch costs a credit per symbol: send as many as the fleet's budget pays for now."""
        try:
            granted = self.gate.admit(self.name, "/quote", exchange, len(group), partial=True)
        except ProviderError as error:
            return dict.fromkeys(group, error)
        batch, rest = group[:granted], group[granted:]
        outcomes: dict[Instrument, QuoteOutcome] = dict.fromkeys(rest, over_budget(self.name, 60))
        params = {"symbol": ",".join(i.ticker for i in batch), "exchange": exchange}
        try:
            body = self.get("/quote", params, exchange=exchange, cost=len(batch), prepaid=True)
        except ProviderError as error:
            return {**outcomes, **dict.fromkeys(batch, error)}
        parsed = self.parse_quotes(body, batch)
        for outcome in parsed.values():
            if isinstance(outcome, ProviderError) and outcome.kind is FailureKind.PLAN:
                self.gate.learn(self.name, "/quote", exchange, outcome)  # the plan, not the symbol
                break
        return {**outcomes, **parsed}

    def parse_quotes(self, body: Any, group: Sequence[Instrument]) -> dict[Instrument, QuoteOutcome]:
        """Single shape for one symbol, map for several; per-symbol errors stay per symbol."""
        if len(group) == 1 and isinstance(body, dict) and "symbol" in body:
            return {group[0]: self._quote_or_error(body, group[0])}
        items = body if isinstance(body, dict) else {}
        return {i: self._quote_or_error(items.get(i.ticker), i) for i in group}

    def _quote_or_error(self, item: Any, instrument: Instrument) -> QuoteOutcome:
        if not isinstance(item, dict):
            return self.error(f"{instrument} missing from the answer", FailureKind.TRANSIENT)
        if item.get("status") == "error":
            return self.classified(item)
        quote = parse_quote(item, instrument)
        if quote is None:
            return self.error(f"{instrument}: quote without a price", FailureKind.TRANSIENT)
        return quote

    def history(self, instrument: Instrument, period: Period) -> History:
        today = self.clock().astimezone(IST).date()
        params = time_series_params(instrument, period, today)
        body = self.get("/time_series", params, exchange=instrument.exchange)
        return History(period.interval, parse_time_series(body, period))

    def profile(self, instrument: Instrument) -> Profile:
        params = {"symbol": instrument.ticker, "exchange": instrument.exchange}
        body = self.get("/profile", params, exchange=instrument.exchange, cost=PROFILE_COST)
        return parse_profile(body)


def is_no_data(body: dict[str, Any]) -> bool:
    """An empty date range is a successful answer with no bars, not an error (docs/api.md)."""
    return _NO_DATA_PHRASE in str(body.get("message", "")).lower()


def classify_error(
    body: dict[str, Any], now: datetime, http_status: int = 200
) -> tuple[FailureKind, str | None, int | None]:
    """Kind, rate-limit scope and retry-after of an error body; text first, codes second.

    Twelve Data reports plan errors with code 404 ("available starting with Grow plan"): they
    are not unknown symbols, so the plan phrases are checked before any code.
    """
    message = str(body.get("message", "")).lower()
    code = _int(body.get("code")) or http_status
    if "api credits" in message or code == 429:
        if "for the day" in message:
            return FailureKind.RATE_LIMITED, "day", _seconds_to_next_utc_day(now)
        return FailureKind.RATE_LIMITED, "minute", 60 - now.astimezone(UTC).second
    if "apikey" in message or code == 401:
        return FailureKind.AUTH, None, None
    if any(phrase in message for phrase in _PLAN_PHRASES) or code == 403:
        return FailureKind.PLAN, None, None
    if any(phrase in message for phrase in _NOT_FOUND_PHRASES):
        return FailureKind.NOT_FOUND, None, None
    return FailureKind.TRANSIENT, None, None


def parse_quote(item: dict[str, Any], instrument: Instrument) -> Quote | None:
    """A quote from one (flat) quote object; None when it carries no usable price."""
    price = to_decimal(item.get("close"))
    if price is None:
        return None
    previous_close = to_decimal(item.get("previous_close")) or price
    change, percent = price_move(
        price, previous_close, to_decimal(item.get("change")), to_decimal(item.get("percent_change"))
    )
    is_open = item.get("is_market_open")
    return Quote(
        symbol=instrument.ticker,
        exchange=instrument.exchange,
        company_name=(item.get("name") or "").strip() or None,
        currency=item.get("currency") or "INR",
        price=price,
        previous_close=previous_close,
        change=change,
        change_percent=percent,
        open=to_decimal(item.get("open")),
        high=to_decimal(item.get("high")),
        low=to_decimal(item.get("low")),
        volume=to_volume(item.get("volume")),
        market_state=MARKET_UNKNOWN if is_open is None else (MARKET_OPEN if is_open else MARKET_CLOSED),
        last_trade_at=from_epoch(item.get("last_quote_at") or item.get("timestamp")),
    )


def time_series_params(instrument: Instrument, period: Period, today: date) -> dict[str, str]:
    """Intraday periods are counted in bars (sessions, plus one for a session in progress)."""
    params = {
        "symbol": instrument.ticker,
        "exchange": instrument.exchange,
        "interval": period.interval,
        "timezone": "Asia/Kolkata",
    }
    if period.intraday:
        per_session = INTRADAY_BARS_PER_SESSION[period.interval]
        params["outputsize"] = str(per_session * ((period.sessions or 1) + 1))
        return params
    params["outputsize"] = str(MAX_OUTPUTSIZE)
    start = period.start_date(today)
    if start is not None:
        params["start_date"] = start.isoformat()
    return params


def parse_time_series(body: dict[str, Any], period: Period) -> tuple[Bar, ...]:
    bars = []
    for value in body.get("values") or ():
        bar = _parse_bar(value, period)
        if bar is not None:
            bars.append(bar)
    return normalise_bars(bars, period)


def _parse_bar(value: dict[str, Any], period: Period) -> Bar | None:
    open_, high, low, close = (to_decimal(value.get(k)) for k in ("open", "high", "low", "close"))
    stamp = str(value.get("datetime") or "")
    if open_ is None or high is None or low is None or close is None or not stamp:
        return None
    if period.intraday:
        stamp = bar_date(datetime.fromisoformat(stamp).replace(tzinfo=IST), intraday=True)
    else:
        stamp = stamp[:10]
    return Bar(stamp, open_, high, low, close, to_volume(value.get("volume")))


def parse_profile(body: dict[str, Any]) -> Profile:
    """Twelve Data's profile has no market capitalisation; that field stays unknown."""
    return Profile(
        name=body.get("name") or None,
        description=body.get("description") or None,
        sector=body.get("sector") or None,
        industry=body.get("industry") or None,
        market_cap=None,
        employees=_int(body.get("employees")),
        website=body.get("website") or None,
        currency=body.get("currency") or "INR",
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _seconds_to_next_utc_day(now: datetime) -> int:
    now = now.astimezone(UTC)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return int((tomorrow - now).total_seconds()) + 1
