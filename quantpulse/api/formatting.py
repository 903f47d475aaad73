"""Human-readable amounts the front end shows as they are (docs/api.md quote and profile bodies)."""

from __future__ import annotations

from decimal import Decimal

LAKH_CRORE = Decimal("1e12")
CRORE = Decimal("1e7")
LAKH = Decimal("1e5")


def format_volume(volume: int) -> str:
    """``12.35M`` from a million (2 dp), ``850.0K`` from a thousand (1 dp), else the integer."""
    if volume >= 1_000_000:
        return f"{volume / 1_000_000:.2f}M"
    if volume >= 1_000:
        return f"{volume / 1_000:.1f}K"
    return str(volume)


def format_market_cap(amount: Decimal | None, currency: str = "INR") -> str:
    """Indian notation for INR: lakh crore, crore, lakh; other currencies as a plain amount."""
    if amount is None:
        return "N/A"
    if currency != "INR":
        return f"{currency} {amount:,.0f}"
    if amount >= LAKH_CRORE:
        return f"₹{amount / LAKH_CRORE:.2f}L Cr"
    if amount >= CRORE:
        return f"₹{amount / CRORE:,.2f} Cr"
    if amount >= LAKH:
        return f"₹{amount / LAKH:.2f}L"
    return f"₹{amount:,.0f}"
