"""In-process single flight: one fetch per key per process, the other callers wait for it.

The original backend held its lock while waiting for the upstream, so a second request for the
same key (or a batch naming a symbol twice) hung the worker. Here the lock only guards the
table of flights; waiting happens on a Future, outside any lock.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from typing import Any


class LocalFlights:
    """Who is fetching which key in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future[Any]] = {}

    def claim(self, keys: Iterable[Hashable]) -> tuple[list[Any], dict[Any, Future[Any]]]:
        """Split keys into those this caller must fetch and the flights it should wait on."""
        leading: list[Any] = []
        waiting: dict[Any, Future[Any]] = {}
        with self._lock:
            for key in keys:
                flight = self._flights.get(key)
                if flight is None:
                    self._flights[key] = Future()
                    leading.append(key)
                else:
                    waiting[key] = flight
        return leading, waiting

    def finish(self, key: Hashable, outcome: Any) -> None:
        """Hand the outcome (a value or an exception) to every waiter and close the flight."""
        with self._lock:
            flight = self._flights.pop(key, None)
        if flight is None:
            return
        if isinstance(outcome, BaseException):
            flight.set_exception(outcome)
        else:
            flight.set_result(outcome)
