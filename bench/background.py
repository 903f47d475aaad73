"""Steady background load for the fault suite, and the tally of what came back.

A few client threads, each sending one request at a time with a short pause between them, so
the fleet is busy but not saturated and a fault's effect shows instead of queueing. Hot clients
poll warm quotes; cold clients ask for a never-asked key each time, so they reach the upstream.
The load stops at ``max_seconds`` or ``max_requests``, whichever comes first.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from bench.fleet import Answer, Call, one, percentile
from tests.fakes.provider_server import SYNTHETIC_TICKERS
from tests.servers import Gunicorn

HOT_SYMBOLS = ("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN")
COLD_PERIODS = ("1d", "5d", "1mo", "3mo", "6mo", "1y")
PAUSE = 0.02


@dataclass(frozen=True)
class Seen:
    """One answer, reduced to what the fault report counts."""

    status: int  # 0: no HTTP answer (connection refused or reset)
    source: str | None
    cache: str | None
    seconds: float

    @classmethod
    def of(cls, answer: Answer) -> Seen:
        return cls(answer.status, answer.source, answer.cache, answer.seconds)


@dataclass(frozen=True)
class Tally:
    """Counts over a set of answers."""

    requests: int
    server_errors: int
    transport_errors: int
    sources: Counter[str]
    caches: Counter[str]
    statuses: Counter[int]
    p99: float
    slowest: float

    @classmethod
    def of(cls, seen: Sequence[Seen]) -> Tally:
        return cls(
            requests=len(seen),
            server_errors=sum(s.status >= 500 for s in seen),
            transport_errors=sum(s.status == 0 for s in seen),
            sources=Counter(s.source for s in seen if s.source),
            caches=Counter(s.cache for s in seen if s.cache),
            statuses=Counter(s.status for s in seen),
            p99=percentile([s.seconds for s in seen], 99),
            slowest=max((s.seconds for s in seen), default=0.0),
        )


def cold_paths() -> Iterator[str]:
    """Paths of keys nobody asked for yet: histories and profiles of the fake's synthetic listings."""
    tickers = [*SYNTHETIC_TICKERS, *(f"{ticker}.BO" for ticker in SYNTHETIC_TICKERS)]
    histories = (f"/stock/{t}/historical?period={p}" for p, t in itertools.product(COLD_PERIODS, tickers))
    profiles = (f"/stock/{t}/profile" for t in tickers)
    return itertools.chain(histories, profiles)


class SteadyLoad:
    """Background clients over ``instances``, recording every answer (a context manager)."""

    def __init__(
        self,
        instances: Sequence[Gunicorn],
        fresh: Iterator[str],
        *,
        hot_clients: int = 3,
        cold_clients: int = 1,
        max_seconds: float = 60.0,
        max_requests: int = 20_000,
    ) -> None:
        self._urls = [instance.url for instance in instances]
        self._fresh = fresh
        self._clients = [self._hot_paths] * hot_clients + [self._cold_paths] * cold_clients
        self._deadline = 0.0
        self._max_seconds = max_seconds
        self._budget = itertools.count()
        self._max_requests = max_requests
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> SteadyLoad:
        self._deadline = time.monotonic() + self._max_seconds
        self._threads = [
            threading.Thread(target=self._run, args=(paths(), index), daemon=True)
            for index, paths in enumerate(self._clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def _run(self, paths: Iterable[str], index: int) -> None:
        for number, path in enumerate(paths):
            if self._stop.is_set() or time.monotonic() > self._deadline:
                return
            if next(self._budget) >= self._max_requests:
                return
            url = self._urls[(index + number) % len(self._urls)]
            seen = Seen.of(one(Call(f"{url}{path}")))
            with self._lock:
                self._seen.append(seen)
            self._stop.wait(PAUSE)

    def _hot_paths(self) -> Iterator[str]:
        return (f"/stock/{symbol}" for symbol in itertools.cycle(HOT_SYMBOLS))

    def _cold_paths(self) -> Iterator[str]:
        return _shared(self._fresh, self._lock)


def _shared(paths: Iterator[str], lock: threading.Lock) -> Iterator[str]:
    """Draw from one iterator in several threads."""
    while True:
        with lock:
            path = next(paths, None)
        if path is None:
            return
        yield path
