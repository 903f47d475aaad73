"""History periods (docs/api.md table): interval, Finnhub resolution and how far back each reaches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from quantpulse.market import IST, months_before
from quantpulse.models import Bar

DEFAULT_PERIOD = "1mo"
INTRADAY_BARS_PER_SESSION = {"5min": 75, "15min": 25}


@dataclass(frozen=True)
class Period:
    name: str
    interval: str
    resolution: str
    months: int | None = None
    sessions: int | None = None
    year_to_date: bool = False

    @property
    def intraday(self) -> bool:
        return self.sessions is not None

    def start_date(self, today: date) -> date | None:
        """First calendar day covered; None for intraday (counted in sessions) and ``max``."""
        if self.year_to_date:
            return date(today.year, 1, 1)
        if self.months is not None:
            return months_before(today, self.months)
        return None

    def lookback_days(self) -> int:
        """Calendar days that surely hold ``sessions`` sessions, weekends and holidays included."""
        return (self.sessions or 0) * 2 + 5


PERIODS: dict[str, Period] = {
    p.name: p
    for p in (
        Period("1d", "5min", "5", sessions=1),
        Period("5d", "15min", "15", sessions=5),
        Period("1mo", "1day", "D", months=1),
        Period("3mo", "1day", "D", months=3),
        Period("6mo", "1day", "D", months=6),
        Period("1y", "1day", "D", months=12),
        Period("2y", "1week", "W", months=24),
        Period("5y", "1week", "W", months=60),
        Period("10y", "1month", "M", months=120),
        Period("ytd", "1day", "D", year_to_date=True),
        Period("max", "1month", "M"),
    )
}
SUPPORTED_PERIODS = tuple(PERIODS)


def bar_date(moment: datetime, intraday: bool) -> str:
    """Wire form of a bar's time: ``YYYY-MM-DD`` for daily and longer, ISO with offset intraday."""
    local = moment.astimezone(IST)
    return local.isoformat(timespec="seconds") if intraday else local.date().isoformat()


def normalise_bars(bars: Iterable[Bar], period: Period) -> tuple[Bar, ...]:
    """Oldest first, one bar per date; intraday trimmed to the period's last sessions."""
    unique = {bar.date: bar for bar in bars}
    ordered = [unique[key] for key in sorted(unique)]
    if period.sessions:
        days = sorted({bar.date[:10] for bar in ordered})[-period.sessions :]
        ordered = [bar for bar in ordered if bar.date[:10] in days]
    return tuple(ordered)
