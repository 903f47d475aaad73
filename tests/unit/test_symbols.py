"""Symbol grammar and normalisation (docs/api.md, "Symbols")."""

from __future__ import annotations

import pytest

from quantpulse.errors import InvalidSymbol
from quantpulse.symbols import Instrument, parse_symbol


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("reliance", Instrument("RELIANCE", "NSE")),
        ("  RELIANCE  ", Instrument("RELIANCE", "NSE")),
        ("RELIANCE.NS", Instrument("RELIANCE", "NSE")),
        ("reliance.ns", Instrument("RELIANCE", "NSE")),
        ("RELIANCE:NSE", Instrument("RELIANCE", "NSE")),
        ("RELIANCE.BO", Instrument("RELIANCE", "BSE")),
        ("RELIANCE:BSE", Instrument("RELIANCE", "BSE")),
        ("M&M", Instrument("M&M", "NSE")),
        ("m&m.bo", Instrument("M&M", "BSE")),
        ("BAJAJ-AUTO", Instrument("BAJAJ-AUTO", "NSE")),
        ("RELIANCE.NSE", Instrument("RELIANCE.NSE", "NSE")),  # well-formed: a provider says 404
        ("3MINDIA", Instrument("3MINDIA", "NSE")),
        ("A" * 20, Instrument("A" * 20, "NSE")),
    ],
)
def test_well_formed_symbols_resolve_to_one_instrument(raw, expected):
    assert parse_symbol(raw).resolve("NSE") == expected


def test_default_exchange_applies_only_without_a_suffix():
    assert parse_symbol("TCS").resolve("BSE") == Instrument("TCS", "BSE")
    assert parse_symbol("TCS.NS").resolve("BSE") == Instrument("TCS", "NSE")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "RELIANCE:NYSE",
        ":NSE",
        ".NS",
        "-RELIANCE",
        "&M",
        "RELI ANCE",
        "RELI$NCE",
        "A" * 21,
        "ÄPFEL",
        "ıtc",  # upper-cases to ITC: non-ASCII must never fold into a real ticker
        "ﬁ",
        "quotes",
        "SERVICE",
        "quotes.ns",
        "RELIANCE.NS.NS:NSE:",
    ],
)
def test_malformed_symbols_and_reserved_words_are_rejected(raw):
    with pytest.raises(InvalidSymbol) as excinfo:
        parse_symbol(raw)

    assert excinfo.value.status == 400
    assert excinfo.value.hint


def test_error_message_shortens_a_very_long_symbol():
    with pytest.raises(InvalidSymbol) as excinfo:
        parse_symbol("X" * 5000)

    assert len(excinfo.value.message) < 100


def test_finnhub_symbol_carries_the_exchange_suffix():
    assert Instrument("RELIANCE", "NSE").finnhub_symbol == "RELIANCE.NS"
    assert Instrument("RELIANCE", "BSE").finnhub_symbol == "RELIANCE.BO"
