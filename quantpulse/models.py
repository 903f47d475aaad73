"""Canonical market data: what every provider maps its own names and units onto.

Prices are ``Decimal`` from parse to response, so no float rounding creeps in; the response
schemas round them to 2 dp. The JSON codec here keeps them exact in the shared cache (as strings),
so ``redis-cli`` can read every entry and nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")

MARKET_OPEN = "OPEN"
MARKET_CLOSED = "CLOSED"
MARKET_UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Quote:
    symbol: str
    exchange: str
    company_name: str | None
    currency: str
    price: Decimal
    previous_close: Decimal
    change: Decimal
    change_percent: Decimal
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    volume: int
    market_state: str
    last_trade_at: datetime | None


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar; ``date`` is already in its wire form (date, or ISO time with offset)."""

    date: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True)
class History:
    interval: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Profile:
    name: str | None
    description: str | None
    sector: str | None
    industry: str | None
    market_cap: Decimal | None
    employees: int | None
    website: str | None
    currency: str


def to_primitive(value: Any) -> Any:
    """JSON-ready primitives of a model: Decimals as exact strings, datetimes as ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_primitive(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_primitive(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_primitive(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# No price, volume or market cap comes near this; a bigger value was not written by us.
_DECIMAL_LIMIT = Decimal("1e18")


def _finite_decimal(value: Any) -> Decimal:
    """A number as we write it: finite and of a sane size (rounding ``1E+30`` to 2 dp fails)."""
    number = Decimal(value)
    if not number.is_finite() or abs(number) >= _DECIMAL_LIMIT:
        raise ValueError(f"not a plausible amount: {value!r}")
    return number


# What JSON may hold for a plain hint.
_PLAIN: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (float, int), bool: (bool,)}


def decode(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a model from what ``to_primitive`` wrote, using its type hints."""
    hints = typing.get_type_hints(cls)
    return cls(**{name: _from_primitive(hints[name], value) for name, value in data.items()})


def _from_primitive(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_from_primitive(item, v) for v in value)
    if hint is Decimal:
        return _finite_decimal(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if dataclasses.is_dataclass(hint):
        return decode(hint, value)
    # JSON true is an int to Python, never to us.
    wrong_bool = isinstance(value, bool) is not (hint is bool)
    if hint in _PLAIN and (not isinstance(value, _PLAIN[hint]) or wrong_bool):
        raise TypeError(f"expected {hint.__name__}, got {type(value).__name__}")
    return value
