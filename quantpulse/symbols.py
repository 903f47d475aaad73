"""Symbol grammar and exchange resolution (docs/api.md, "Symbols").

``RELIANCE``, ``reliance``, ``RELIANCE.NS`` and ``RELIANCE:NSE`` name one instrument, so they
share one cache entry. Anything outside the grammar is rejected here and never reaches a provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quantpulse.errors import InvalidSymbol

_TICKER = re.compile(r"[A-Z0-9][A-Z0-9&.\-]{0,19}")
_SUFFIXES = {".NS": "NSE", ":NSE": "NSE", ".BO": "BSE", ":BSE": "BSE"}
_FINNHUB_SUFFIX = {"NSE": "NS", "BSE": "BO"}
RESERVED_WORDS = frozenset({"QUOTES", "SERVICE", "STREAM", "WS"})
SYMBOL_HINT = (
    "Use an NSE/BSE ticker such as RELIANCE, M&M or BAJAJ-AUTO, optionally with .NS, .BO, :NSE or :BSE."
)


@dataclass(frozen=True, order=True)
class Instrument:
    """One listing: a ticker on an exchange. Hashable, so it keys caches and batches."""

    ticker: str
    exchange: str

    @property
    def finnhub_symbol(self) -> str:
        """Finnhub names Indian listings with a Yahoo-style suffix."""
        return f"{self.ticker}.{_FINNHUB_SUFFIX[self.exchange]}"

    def __str__(self) -> str:
        return f"{self.ticker}:{self.exchange}"


@dataclass(frozen=True)
class ParsedSymbol:
    """A symbol that passed the grammar; the exchange is None when no suffix chose one."""

    ticker: str
    exchange: str | None

    def resolve(self, default_exchange: str) -> Instrument:
        return Instrument(self.ticker, self.exchange or default_exchange)


def parse_symbol(raw: str) -> ParsedSymbol:
    """Upper-case, strip one exchange suffix, check the grammar; raise InvalidSymbol otherwise."""
    if not raw.isascii():  # "ıtc".upper() is "ITC": never let case folding invent a ticker
        raise InvalidSymbol(f"{_printable(raw)!r} is not a valid symbol.", hint=SYMBOL_HINT)
    text = raw.strip().upper()
    exchange = None
    for suffix, name in _SUFFIXES.items():
        if text.endswith(suffix) and len(text) > len(suffix):
            text, exchange = text[: -len(suffix)], name
            break
    if not _TICKER.fullmatch(text):
        raise InvalidSymbol(f"{_printable(raw)!r} is not a valid symbol.", hint=SYMBOL_HINT)
    if text in RESERVED_WORDS:
        raise InvalidSymbol(f"{text!r} is a reserved word, not a symbol.", hint=SYMBOL_HINT)
    return ParsedSymbol(text, exchange)


def _printable(raw: str, limit: int = 40) -> str:
    """Echo bad input back shortened, so an error body never balloons."""
    return raw if len(raw) <= limit else raw[:limit] + "…"
