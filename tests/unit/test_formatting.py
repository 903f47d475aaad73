"""Human-readable amounts (docs/api.md quote and profile bodies)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantpulse.api.formatting import format_market_cap, format_volume


@pytest.mark.parametrize(
    ("volume", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1.0K"),
        (850_000, "850.0K"),
        (999_949, "999.9K"),
        (1_000_000, "1.00M"),
        (12_345_678, "12.35M"),
        (5_123_456, "5.12M"),
    ],
)
def test_volume_formatting(volume, text):
    assert format_volume(volume) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "N/A"),
        (Decimal("19960000000000"), "₹19.96L Cr"),
        (Decimal("1e12"), "₹1.00L Cr"),
        (Decimal("25000000000"), "₹2,500.00 Cr"),
        (Decimal("1e7"), "₹1.00 Cr"),
        (Decimal("500000"), "₹5.00L"),
        (Decimal("50000"), "₹50,000"),
    ],
)
def test_inr_market_cap_uses_lakh_and_crore(amount, text):
    assert format_market_cap(amount) == text


def test_other_currencies_get_a_plain_amount():
    assert format_market_cap(Decimal("1234567"), "USD") == "USD 1,234,567"
