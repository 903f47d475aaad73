"""Built-in facts about NSE large caps, so names never cost an upstream call.

The service names a quote from here when its provider sent no name (docs/api.md, ``companyName``),
and demo data starts from these prices and share counts. Figures are approximate (late 2025,
post split/bonus); names are the companies' registered names in the usual "Ltd" form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


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


_IT = "Information Technology"
_IT_SERVICES = "Computers - Software & Consulting"
_FINANCE = "Financial Services"
_PRIVATE_BANK = "Private Sector Bank"
_FMCG = "Fast Moving Consumer Goods"
_AUTO = "Automobile and Auto Components"
_CARS = "Passenger Cars & Utility Vehicles"
_OIL = "Oil Gas & Consumable Fuels"

_TABLE = (
    Company(
        "RELIANCE",
        "Reliance Industries Ltd",
        _OIL,
        "Refineries & Marketing",
        Decimal("1500"),
        13_532_000_000,
        347_000,
        "https://www.ril.com",
    ),
    Company(
        "TCS",
        "Tata Consultancy Services Ltd",
        _IT,
        _IT_SERVICES,
        Decimal("3150"),
        3_618_000_000,
        600_000,
        "https://www.tcs.com",
    ),
    Company(
        "HDFCBANK",
        "HDFC Bank Ltd",
        _FINANCE,
        _PRIVATE_BANK,
        Decimal("990"),
        15_300_000_000,
        214_000,
        "https://www.hdfcbank.com",
    ),
    Company(
        "INFY",
        "Infosys Ltd",
        _IT,
        _IT_SERVICES,
        Decimal("1550"),
        4_150_000_000,
        320_000,
        "https://www.infosys.com",
    ),
    Company(
        "ICICIBANK",
        "ICICI Bank Ltd",
        _FINANCE,
        _PRIVATE_BANK,
        Decimal("1380"),
        7_130_000_000,
        130_000,
        "https://www.icicibank.com",
    ),
    Company(
        "HINDUNILVR",
        "Hindustan Unilever Ltd",
        _FMCG,
        "Diversified FMCG",
        Decimal("2450"),
        2_350_000_000,
        21_000,
        "https://www.hul.co.in",
    ),
    Company(
        "ITC",
        "ITC Ltd",
        _FMCG,
        "Diversified FMCG",
        Decimal("405"),
        12_510_000_000,
        37_000,
        "https://www.itcportal.com",
    ),
    Company(
        "SBIN",
        "State Bank of India",
        _FINANCE,
        "Public Sector Bank",
        Decimal("950"),
        9_230_000_000,
        232_000,
        "https://sbi.co.in",
    ),
    Company(
        "BHARTIARTL",
        "Bharti Airtel Ltd",
        "Telecommunication",
        "Telecom - Cellular & Fixed line services",
        Decimal("2100"),
        6_000_000_000,
        20_000,
        "https://www.airtel.in",
    ),
    Company(
        "KOTAKBANK",
        "Kotak Mahindra Bank Ltd",
        _FINANCE,
        _PRIVATE_BANK,
        Decimal("2100"),
        1_990_000_000,
        116_000,
        "https://www.kotak.com",
    ),
    Company(
        "LT",
        "Larsen & Toubro Ltd",
        "Construction",
        "Civil Construction",
        Decimal("3900"),
        1_375_000_000,
        60_000,
        "https://www.larsentoubro.com",
    ),
    Company(
        "AXISBANK",
        "Axis Bank Ltd",
        _FINANCE,
        _PRIVATE_BANK,
        Decimal("1200"),
        3_100_000_000,
        104_000,
        "https://www.axisbank.com",
    ),
    Company(
        "BAJFINANCE",
        "Bajaj Finance Ltd",
        _FINANCE,
        "Non Banking Financial Company (NBFC)",
        Decimal("1000"),
        6_220_000_000,
        64_000,
        "https://www.bajajfinserv.in",
    ),
    Company(
        "ASIANPAINT",
        "Asian Paints Ltd",
        "Consumer Durables",
        "Paints",
        Decimal("2850"),
        959_000_000,
        8_000,
        "https://www.asianpaints.com",
    ),
    Company(
        "MARUTI",
        "Maruti Suzuki India Ltd",
        _AUTO,
        _CARS,
        Decimal("15600"),
        314_400_000,
        40_000,
        "https://www.marutisuzuki.com",
    ),
    Company(
        "M&M",
        "Mahindra & Mahindra Ltd",
        _AUTO,
        _CARS,
        Decimal("3650"),
        1_243_000_000,
        40_000,
        "https://www.mahindra.com",
    ),
    Company(
        "BAJAJ-AUTO",
        "Bajaj Auto Ltd",
        _AUTO,
        "2/3 Wheelers",
        Decimal("8900"),
        279_000_000,
        10_000,
        "https://www.bajajauto.com",
    ),
    Company(
        "SUNPHARMA",
        "Sun Pharmaceutical Industries Ltd",
        "Healthcare",
        "Pharmaceuticals",
        Decimal("1750"),
        2_399_000_000,
        43_000,
        "https://sunpharma.com",
    ),
    Company(
        "TITAN",
        "Titan Company Ltd",
        "Consumer Durables",
        "Gems, Jewellery And Watches",
        Decimal("3800"),
        888_000_000,
        8_000,
        "https://www.titancompany.in",
    ),
    Company(
        "WIPRO",
        "Wipro Ltd",
        _IT,
        _IT_SERVICES,
        Decimal("245"),
        10_480_000_000,
        233_000,
        "https://www.wipro.com",
    ),
    Company(
        "HCLTECH",
        "HCL Technologies Ltd",
        _IT,
        _IT_SERVICES,
        Decimal("1600"),
        2_714_000_000,
        223_000,
        "https://www.hcltech.com",
    ),
    Company(
        "ULTRACEMCO",
        "UltraTech Cement Ltd",
        "Construction Materials",
        "Cement & Cement Products",
        Decimal("11800"),
        294_700_000,
        23_000,
        "https://www.ultratechcement.com",
    ),
    Company(
        "NTPC",
        "NTPC Ltd",
        "Power",
        "Power Generation",
        Decimal("330"),
        9_697_000_000,
        16_000,
        "https://www.ntpc.co.in",
    ),
    Company(
        "POWERGRID",
        "Power Grid Corporation of India Ltd",
        "Power",
        "Power - Transmission",
        Decimal("290"),
        9_300_000_000,
        8_500,
        "https://www.powergrid.in",
    ),
    Company(
        "ONGC",
        "Oil & Natural Gas Corporation Ltd",
        _OIL,
        "Oil Exploration & Production",
        Decimal("245"),
        12_580_000_000,
        25_000,
        "https://ongcindia.com",
    ),
    Company(
        "TATAMOTORS",
        "Tata Motors Ltd",
        _AUTO,
        _CARS,
        Decimal("680"),
        3_680_000_000,
        90_000,
        "https://www.tatamotors.com",
    ),
    Company(
        "TATASTEEL",
        "Tata Steel Ltd",
        "Metals & Mining",
        "Iron & Steel Products",
        Decimal("170"),
        12_480_000_000,
        78_000,
        "https://www.tatasteel.com",
    ),
)

COMPANIES: Mapping[str, Company] = {company.ticker: company for company in _TABLE}


def lookup(ticker: str) -> Company | None:
    """The table entry for a ticker; exchange-independent, as both listings are one company."""
    return COMPANIES.get(ticker.upper())


def company_name(ticker: str) -> str | None:
    company = lookup(ticker)
    return company.name if company else None
