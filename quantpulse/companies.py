"""Built-in facts about NSE large caps, so names never cost an upstream call.

The service names a quote from here when its provider sent no name (docs/api.md, ``companyName``),
and demo data starts from these prices and share counts. Figures are approximate (late 2025,
post split/bonus); names are the companies' registered names in the usual "Ltd" form.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path


@dataclass(frozen=True)
class Company:
    ticker: str
    name: str
    sector: str
    industry: str
    price: Decimal
    shares: int
    employees: int
    website: str

    @property
    def description(self) -> str:
        return f"{self.name} is an NSE and BSE listed company in {self.sector} ({self.industry})."


_TABLE_FILE = Path(__file__).with_name("data") / "companies.json"


@functools.cache
def _companies() -> Mapping[str, Company]:
    """The table, read once per process from ``data/companies.json`` (data, not code)."""
    rows = json.loads(_TABLE_FILE.read_text(encoding="utf-8"))
    return {row["ticker"]: Company(**{**row, "price": Decimal(row["price"])}) for row in rows}


def lookup(ticker: str) -> Company | None:
    """The table entry for a ticker; exchange-independent, as both listings are one company."""
    return _companies().get(ticker.upper())


def all_companies() -> Mapping[str, Company]:
    return _companies()


def company_name(ticker: str) -> str | None:
    company = lookup(ticker)
    return company.name if company else None
