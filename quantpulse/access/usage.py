"""Usage per client and per UTC day, fleet-wide in Redis, counted without a round trip per request.

Each worker adds up its requests in memory and a flusher thread writes the sums every
``FLUSH_INTERVAL`` seconds in one pipeline (``HINCRBY``/``ZINCRBY``), so the cached hot path pays
nothing extra. A client is ``key:<id>`` for a valid API key, else ``anonymous`` (one bucket for
all anonymous traffic). Upstream credits are charged to the client whose request caused the
fill: the HTTP layer names the payer of the request it serves (``paying``), the upstream guard
reports what it spends (``charge``), and a background refresh carries its payer along.

Redis layout, every key expiring ``retention_days`` after its day:
``qp:v1:usage:{day}:{client}`` hash (``requests``, ``ep:<endpoint>``, ``st:2xx``...,
``credits``), ``qp:v1:usage:{day}:{client}:symbols`` and ``qp:v1:usage:{day}:symbols`` sorted
sets (requests per instrument), ``qp:v1:usage:{day}:clients`` set.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from quantpulse.infra.background import Background, every
from quantpulse.infra.namespace import NAMESPACE

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
FLUSH_INTERVAL = 0.5
ENDPOINTS = ("quote", "historical", "profile", "batch", "stream", "ws", "status", "usage", "other")
TOP_SYMBOLS = 10
_PAYER: contextvars.ContextVar[str | None] = contextvars.ContextVar("quantpulse_payer", default=None)


def client_of(key_id: str | None) -> str:
    return f"key:{key_id}" if key_id else ANONYMOUS


def _hash(day: str, client: str) -> str:
    return f"{NAMESPACE}:usage:{day}:{client}"


@dataclass(frozen=True)
class Hit:
    """One answered request, as usage counts it."""

    client: str
    endpoint: str
    status: int
    symbol: str | None = None


class UsageRecorder:
    def __init__(
        self,
        client: Callable[[], redis.Redis],
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``client``: the shared store's client, asked at each flush (the store may fail over)."""
        self._client = client
        self._retention = retention_days
        self._clock = clock
        self._guard = threading.Lock()
        self._fields: Counter[tuple[str, str]] = Counter()  # (hash, field) -> increment
        self._symbols: Counter[tuple[str, str]] = Counter()  # (sorted set, member) -> increment
        self._clients: set[tuple[str, str]] = set()  # (day, client)
        self._flusher = Background("usage-flusher", every(FLUSH_INTERVAL, self.flush, "usage flush"))
        self._day_number, self._day_name = -1, ""

    # ---- counting (per request, in memory) ----------------------------------------------

    def record(self, hit: Hit) -> None:
        day = self._day()
        bucket = _hash(day, hit.client)
        status_class = "st:2xx" if hit.status == 101 else f"st:{hit.status // 100}xx"  # 101: a WebSocket
        with self._guard:
            self._fields[bucket, "requests"] += 1
            self._fields[bucket, f"ep:{hit.endpoint}"] += 1
            self._fields[bucket, status_class] += 1
            if hit.status == 429:
                self._fields[bucket, "st:429"] += 1
            if hit.symbol:
                self._symbols[f"{bucket}:symbols", hit.symbol] += 1
                self._symbols[f"{NAMESPACE}:usage:{day}:symbols", hit.symbol] += 1
            self._clients.add((day, hit.client))
        self._flusher.ensure()

    @staticmethod
    def start_paying(client: str) -> contextvars.Token[str | None]:
        """Upstream credits spent from here on, in this context, are charged to ``client``."""
        return _PAYER.set(client)

    @staticmethod
    def stop_paying(token: contextvars.Token[str | None]) -> None:
        _PAYER.reset(token)

    def charge(self, provider: str, credits: int) -> None:
        """One upstream call let through: counted per provider for the fleet, and its credits
        charged to whoever is paying in this context (if anyone: the hub's reads are no one's)."""
        day = self._day()
        payer = _PAYER.get()
        with self._guard:
            self._fields[f"{NAMESPACE}:usage:{day}:upstream", f"{provider}:calls"] += 1
            self._fields[f"{NAMESPACE}:usage:{day}:upstream", f"{provider}:credits"] += credits
            if payer is not None:
                self._fields[_hash(day, payer), "credits"] += credits
        self._flusher.ensure()

    # ---- reading (status, reports) ------------------------------------------------------

    def report(self, client: str, days: int) -> dict[str, Any]:
        """One client's ``<usage>`` over the last ``days`` UTC days (today included)."""
        store = self._client()
        dates = self._dates(days)
        pipe = store.pipeline(transaction=False)
        for day in dates:
            pipe.hgetall(_hash(day, client))
        for day in dates:
            pipe.zrange(f"{_hash(day, client)}:symbols", 0, -1, withscores=True)
        answers = pipe.execute()
        per_day = [{k.decode(): int(v) for k, v in fields.items()} for fields in answers[: len(dates)]]
        return _usage(dates, per_day, _merge_ranks(answers[len(dates) :]))

    def clients(self, days: int) -> list[str]:
        store = self._client()
        pipe = store.pipeline(transaction=False)
        for day in self._dates(days):
            pipe.smembers(f"{NAMESPACE}:usage:{day}:clients")
        return sorted({member.decode() for members in pipe.execute() for member in members})

    def upstream(self, days: int, providers: Iterable[str]) -> dict[str, dict[str, int]]:
        """Upstream calls and credits per provider over the last ``days``, fleet-wide."""
        store = self._client()
        pipe = store.pipeline(transaction=False)
        for day in self._dates(days):
            pipe.hgetall(f"{NAMESPACE}:usage:{day}:upstream")
        totals: Counter[str] = Counter()
        for fields in pipe.execute():
            totals.update({k.decode(): int(v) for k, v in fields.items()})
        return {p: {"calls": totals[f"{p}:calls"], "credits": totals[f"{p}:credits"]} for p in providers}

    def top_symbols(self, days: int, limit: int = TOP_SYMBOLS) -> list[list[Any]]:
        store = self._client()
        pipe = store.pipeline(transaction=False)
        for day in self._dates(days):
            pipe.zrange(f"{NAMESPACE}:usage:{day}:symbols", 0, -1, withscores=True)
        return _merge_ranks(pipe.execute(), limit)

    # ---- flushing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write the sums gathered since the last flush; kept for the next one if Redis refuses."""
        with self._guard:
            fields, symbols, clients = self._fields, self._symbols, self._clients
            self._fields, self._symbols, self._clients = Counter(), Counter(), set()
        if not (fields or symbols or clients):
            return
        expire = self._retention * 86400 + 86400
        try:
            pipe = self._client().pipeline(transaction=True)  # all of it or none of it
            for (name, field), amount in fields.items():
                pipe.hincrby(name, field, amount)
                pipe.expire(name, expire)
            for (name, member), amount in symbols.items():
                pipe.zincrby(name, amount, member)
                pipe.expire(name, expire)
            for day, client in clients:
                pipe.sadd(f"{NAMESPACE}:usage:{day}:clients", client)
                pipe.expire(f"{NAMESPACE}:usage:{day}:clients", expire)
            pipe.execute()
        except redis.TimeoutError as error:  # it may have been applied: lost rather than doubled
            log.debug("usage: a flush timed out (%s); its counts are dropped", error)
        except redis.RedisError as error:
            log.debug("usage: could not flush (%s); kept for the next flush", error)
            with self._guard:
                self._fields.update(fields)
                self._symbols.update(symbols)
                self._clients.update(clients)

    def _day(self) -> str:
        """Today (UTC), worked out once a day rather than on every count."""
        number = int(self._clock() // 86400)
        if number != self._day_number:
            self._day_name = datetime.fromtimestamp(number * 86400, UTC).date().isoformat()
            self._day_number = number
        return self._day_name

    def _dates(self, days: int) -> list[str]:
        today = date.fromisoformat(self._day())
        return [(today - timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def _usage(dates: list[str], per_day: list[dict[str, int]], top: list[list[Any]]) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    for fields in per_day:
        totals.update(fields)
    return {
        "requests": totals["requests"],
        "daily": [
            {"date": day, "requests": fields.get("requests", 0)}
            for day, fields in zip(dates, per_day, strict=True)
        ],
        "by_endpoint": {name: totals[f"ep:{name}"] for name in ENDPOINTS},
        "by_status": {name: totals[f"st:{name}"] for name in ("2xx", "4xx", "5xx", "429")},
        "top_symbols": top,
        "upstream_credits": totals["credits"],
    }


def _merge_ranks(days: list[list[tuple[bytes, float]]], limit: int = TOP_SYMBOLS) -> list[list[Any]]:
    """The busiest instruments over several days: ``[["RELIANCE:NSE", 12], ...]``."""
    totals: Counter[str] = Counter()
    for ranked in days:
        for member, score in ranked:
            totals[member.decode()] += int(score)
    return [[name, count] for name, count in totals.most_common(limit)]
