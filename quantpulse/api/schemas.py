"""Marshmallow schemas: one set validates what clients send, the other shapes what they get.

The OpenAPI document (issue #5) is generated from these same classes by flask-smorest, so
the docs cannot drift from the code. Response schemas dump ``service.Answer`` objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from quantpulse.api.formatting import format_market_cap, format_volume
from quantpulse.periods import DEFAULT_PERIOD, SUPPORTED_PERIODS
from quantpulse.symbols import ParsedSymbol, parse_symbol

CENT = Decimal("0.01")
# docs/api.md's symbol grammar as a JSON Schema pattern, for the docs (parse_symbol is the authority).
SYMBOL_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9&.\-]{0,19}(\.(NS|BO|ns|bo)|:(NSE|BSE|nse|bse))?\s*$"
# OpenAPI types of computed fields (apispec cannot infer them from a function).
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
STRING = {"type": "string"}


class Money(fields.Float):
    """A Decimal price written as a JSON number rounded to 2 dp (Flask would send a string)."""

    def _serialize(self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else float(value.quantize(CENT, rounding=ROUND_HALF_UP))


class UtcTimestamp(fields.String):
    """ISO 8601 in UTC with a ``Z``, to the second, as docs/api.md shows."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- input -------------------------------------------------------------------------------


class Symbol(fields.String):
    """A symbol in docs/api.md's grammar, loaded as a ParsedSymbol.

    A bad one raises InvalidSymbol rather than a ValidationError, so the 400 keeps its hint.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> ParsedSymbol:
        return parse_symbol(super()._deserialize(value, attr, data, **kwargs))


class SymbolPathSchema(Schema):
    symbol = Symbol(
        required=True,
        metadata={
            "description": "NSE/BSE ticker, case-insensitive, optional .NS/.BO/:NSE/:BSE suffix; "
            "'quotes', 'service', 'stream' and 'ws' are reserved words.",
            "example": "RELIANCE",
            "pattern": SYMBOL_PATTERN,
        },
    )


class HistoryQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    period = fields.String(
        load_default=DEFAULT_PERIOD,
        validate=validate.OneOf(SUPPORTED_PERIODS, error="Must be one of: {choices}."),
        metadata={"description": "How far back the bars reach."},
    )

    @pre_load
    def _lower_case(self, data: Any, **kwargs: Any) -> Any:
        """``1MO`` means ``1mo``; an empty ``period=`` means the default."""
        period = data.get("period")
        if not isinstance(period, str):
            return data
        period = period.strip().lower()
        return {"period": period} if period else {}


class BatchQuerySchema(Schema):
    """``symbols=A&symbols=B`` and ``symbols=A,B`` are both accepted."""

    class Meta:
        unknown = EXCLUDE

    symbols = fields.List(fields.String(), load_default=list)


class BatchBodySchema(Schema):
    """The JSON body must be exactly ``{"symbols": [strings]}``; no body loads as None."""

    symbols = fields.List(fields.String(), load_default=None)

    @pre_load
    def _require_object(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict):
            raise ValidationError('The body must be a JSON object {"symbols": [...]}.')
        return data


# ---- output ------------------------------------------------------------------------------


class ServiceInfoSchema(Schema):
    """The truth about one response: where the data came from and how the cache served it."""

    source = fields.String()
    cached = fields.Boolean(dump_only=True)
    cache = fields.String(validate=validate.OneOf(["hit", "miss", "stale", "coalesced"]))
    age_seconds = fields.Function(lambda answer: answer.age_seconds(), metadata=NUMBER)
    stale = fields.Boolean(dump_only=True)
    fallback_reason = fields.String(allow_none=True)


class _AnswerSchema(Schema):
    symbol = fields.String(attribute="instrument.ticker")
    exchange = fields.String(attribute="instrument.exchange")
    isDemoData = fields.Boolean(attribute="is_demo", dump_only=True)
    service_info = fields.Nested(ServiceInfoSchema)


class QuoteSchema(_AnswerSchema):
    companyName = fields.String(attribute="value.company_name")
    marketState = fields.String(
        attribute="value.market_state", validate=validate.OneOf(["OPEN", "CLOSED", "UNKNOWN"])
    )
    currency = fields.String(attribute="value.currency")
    currentPrice = Money(attribute="value.price")
    previousClose = Money(attribute="value.previous_close")
    change = Money(attribute="value.change")
    changePercent = Money(attribute="value.change_percent")
    open = Money(attribute="value.open", allow_none=True)
    high = Money(attribute="value.high", allow_none=True)
    low = Money(attribute="value.low", allow_none=True)
    volume = fields.Integer(attribute="value.volume")
    volumeFormatted = fields.Function(lambda answer: format_volume(answer.value.volume), metadata=STRING)
    timestamp = UtcTimestamp(attribute="fetched_at_utc")
    lastTradeAt = UtcTimestamp(attribute="value.last_trade_at", allow_none=True)


class BarSchema(Schema):
    date = fields.String()
    open = Money()
    high = Money()
    low = Money()
    close = Money()
    volume = fields.Integer()


class HistorySchema(_AnswerSchema):
    period = fields.String(attribute="period.name")
    interval = fields.String(attribute="value.interval")
    data = fields.List(fields.Nested(BarSchema), attribute="value.bars")
    dataPoints = fields.Function(lambda answer: len(answer.value.bars), metadata=INTEGER)
    timestamp = UtcTimestamp(attribute="fetched_at_utc")


class ProfileSchema(_AnswerSchema):
    name = fields.String(attribute="value.name", allow_none=True)
    description = fields.String(attribute="value.description", allow_none=True)
    sector = fields.String(attribute="value.sector", allow_none=True)
    industry = fields.String(attribute="value.industry", allow_none=True)
    marketCap = fields.Function(
        lambda answer: _whole(answer.value.market_cap), metadata={**INTEGER, "nullable": True}
    )
    marketCapFormatted = fields.Function(
        lambda answer: format_market_cap(answer.value.market_cap, answer.value.currency),
        metadata=STRING,
    )
    employees = fields.Integer(attribute="value.employees", allow_none=True)
    website = fields.String(attribute="value.website", allow_none=True)
    timestamp = UtcTimestamp(attribute="fetched_at_utc")


class BatchErrorSchema(Schema):
    error = fields.String(attribute="title")
    message = fields.String()
    status = fields.Integer()


class BatchSchema(Schema):
    quotes = fields.Dict(keys=fields.String(), values=fields.Nested(QuoteSchema))
    errors = fields.Dict(keys=fields.String(), values=fields.Nested(BatchErrorSchema))
    total_requested = fields.Integer()
    successful = fields.Function(lambda result: len(result.quotes), metadata=INTEGER)
    failed = fields.Function(lambda result: len(result.errors), metadata=INTEGER)


def _whole(amount: Decimal | None) -> int | None:
    return None if amount is None else int(amount.to_integral_value(rounding=ROUND_HALF_UP))


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})
    service = fields.String(metadata={"example": "quantpulse-backend"})


class ReadySchema(Schema):
    status = fields.String(validate=validate.OneOf(["ready", "degraded"]))
    backend = fields.String(validate=validate.OneOf(["redis", "embedded"]))
    reason = fields.String(allow_none=True)


class StatusSchema(Schema):
    """The status document (docs/api.md, "Service status"); its nested counters are documented there."""

    timestamp = fields.String()
    status = fields.Dict()
    endpoints = fields.Dict(keys=fields.String(), values=fields.String())


class CacheDropSchema(Schema):
    symbol = fields.String()
    exchange = fields.String()
    deleted = fields.Integer()
