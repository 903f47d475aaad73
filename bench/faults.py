"""Fault suite: ``python -m bench.faults`` from the repository root.

Two gunicorn instances x 4 workers on one redis-server, against the fake upstream (in this
process, answering in 300 ms). Each fault runs under a steady background load and is reported
with the requests sent, 5xx answers (target 0), answers by source and cache state, upstream calls
and, where it applies, the recovery time. Saved as bench/results/faults.md and .json; asserts
nothing, exits 0 unless the suite itself crashes.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from bench.background import HOT_SYMBOLS, Seen, SteadyLoad, Tally, cold_paths
from bench.fleet import (
    LOCK_TTL,
    PROVIDER_TIMEOUT,
    WORKERS,
    Answer,
    Call,
    fleet,
    fleet_env,
    one,
    storm,
    upstream,
)
from bench.malformed import malformed_calls
from bench.report import Report, counts, verdict
from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer, wait_until

# Hot quotes stay fresh for the whole suite (no refresh-ahead either), so upstream traffic comes
# only from the cold clients and the faults; a 5 s circuit cooldown keeps recoveries short.
SUITE_ENV = {"QUOTE_TTL": "600", "CIRCUIT_COOLDOWN": "5"}
LEAD_IN = 1.5  # seconds of load before a fault
LEAD_OUT = 1.0  # and after recovery
REDIS_OUTAGE = 3.0
LOCK_SYMBOL = "BAJAJ-AUTO"
LOCK_WAITERS = 40
FLAPS = 4
FLAP_ERRORS = 3
FLAP_SECONDS = 1.0
HANG_SECONDS = 9.0
HANG_COLD_CLIENTS = 4
RECOVERY_TIMEOUT = 30.0
MALFORMED_TOTAL = 600
MALFORMED_CONCURRENCY = 40
COLUMNS = (
    "fault",
    "requests",
    "5xx",
    "transport errors",
    "sources",
    "cache",
    "p99 / slowest",
    "upstream calls",
    "recovery",
    "target",
    "verdict",
    "note",
)
NOTES = [
    "Background load: client threads sending one request at a time with a 20 ms pause, "
    "round-robin over both instances; hot clients poll 6 warm quotes, cold clients ask for a "
    "never-asked history or profile each time (so they reach the upstream).",
    f"Suite settings on top of the e2e fleet's (PROVIDER_TIMEOUT={PROVIDER_TIMEOUT}, "
    f"LOCK_TTL={LOCK_TTL}, gevent workers): "
    + ", ".join(f"{name}={value}" for name, value in SUITE_ENV.items())
    + " (the default CIRCUIT_COOLDOWN of 30 s would only lengthen the provider recoveries).",
    "'transport errors' are requests that got no HTTP answer at all (connection refused or reset); "
    "they are expected only where workers are killed.",
    "Percentiles are per request, from send to last byte.",
]


@dataclass
class Suite:
    """The fleet under test and what the faults need to steer it."""

    fake: FakeProviderServer
    redis: RedisServer
    instances: list[Gunicorn]
    fresh: Iterator[str] = field(default_factory=cold_paths)

    @property
    def first(self) -> Gunicorn:
        return self.instances[0]

    @property
    def second(self) -> Gunicorn:
        return self.instances[1]

    def load(self, *, hot_clients: int, cold_clients: int) -> SteadyLoad:
        return SteadyLoad(self.instances, self.fresh, hot_clients=hot_clients, cold_clients=cold_clients)

    def warm(self) -> None:
        """Hot quotes cached fleet-wide, then a clean upstream count."""
        storm([Call(f"{i.url}/stock/{symbol}") for i in self.instances for symbol in HOT_SYMBOLS])
        self.fake.reset()

    def next_fresh(self) -> str:
        return next(self.fresh)

    def twelvedata_state(self) -> str:
        """Twelve Data's health as the status page reports it (ok, cooldown, disabled)."""
        answer = one(Call(f"{self.first.url}/stock/service/status"))
        providers = answer.body["status"]["provider_status"]["providers"] if answer.status == 200 else {}
        return str(providers.get("twelvedata", {}).get("state", f"unknown ({answer.status})"))


@dataclass(frozen=True)
class FaultResult:
    """What one fault produced: every answer seen, upstream calls, the recovery time."""

    name: str
    seen: list[Seen]
    upstream: dict[str, int]
    recovery: float | None = None
    has_recovery: bool = False
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        tally = Tally.of(self.seen)
        recovered = self.recovery is not None or not self.has_recovery
        return {
            "fault": self.name,
            "requests": tally.requests,
            "5xx": tally.server_errors,
            "transport errors": tally.transport_errors,
            "sources": counts(tally.sources, ("twelvedata", "finnhub", "demo")),
            "cache": counts(tally.caches, ("hit", "miss", "stale", "coalesced")),
            "p99 / slowest": f"{tally.p99:.2f} s / {tally.slowest:.2f} s",
            "upstream calls": counts(Counter(self.upstream), ("twelvedata", "finnhub")),
            "recovery": _recovery(self.recovery, self.has_recovery),
            "target": "0 5xx" + (", recovers" if self.has_recovery else ""),
            "verdict": verdict(tally.server_errors == 0 and recovered),
            "note": self.note,
        }


# --- faults --------------------------------------------------------------------------------


def redis_killed(suite: Suite) -> FaultResult:
    """SIGKILL Redis under load, restart it on the same port; recovery = sharing works again."""
    probes: list[Seen] = []

    def shared_again() -> bool:
        path = suite.next_fresh()
        filled = one(Call(f"{suite.first.url}{path}"))
        read = one(Call(f"{suite.second.url}{path}"))
        probes.extend([Seen.of(filled), Seen.of(read)])
        return read.cache == "hit"

    with suite.load(hot_clients=3, cold_clients=1) as load:
        time.sleep(LEAD_IN)
        suite.redis.kill()
        time.sleep(REDIS_OUTAGE)
        ready = one(Call(f"{suite.first.url}/health/ready"))
        suite.redis.start()
        recovery = time_until(shared_again, since=time.monotonic())
        time.sleep(LEAD_OUT)
    return FaultResult(
        f"Redis SIGKILLed under load, restarted after {REDIS_OUTAGE:g} s",
        load.seen() + probes,
        _upstream(suite.fake),
        recovery,
        has_recovery=True,
        note=f"/health/ready during the outage: {ready.status}; recovery = from the restart until a "
        "new key filled on instance A is a hit on instance B",
    )


def lock_holder_killed(suite: Suite) -> FaultResult:
    """The fill stalls upstream; every worker of the instance holding the lock is SIGKILLed."""
    path, lock_key = f"/stock/{LOCK_SYMBOL}", f"qp:v1:lock:quote:NSE:{LOCK_SYMBOL}"
    with suite.load(hot_clients=4, cold_clients=0) as load, ThreadPoolExecutor(2) as pool:
        time.sleep(LEAD_IN)
        suite.fake.set_mode("twelvedata", "stall", times=1, stall_seconds=20)
        owner = pool.submit(one, Call(f"{suite.first.url}{path}"), timeout=40)
        wait_until(lambda: suite.redis.cli("EXISTS", lock_key).strip() == "1", timeout=5, what="fill lock")
        waiting = pool.submit(storm, [Call(f"{suite.second.url}{path}")] * LOCK_WAITERS, timeout=40)
        time.sleep(0.3)
        killed = time.monotonic()
        for pid in suite.first.worker_pids():
            os.kill(pid, signal.SIGKILL)
        waiters = waiting.result()
        recovery = time.monotonic() - killed
        respawned = time_until(lambda: _serving(suite.first), since=killed)
        orphan = owner.result()
        time.sleep(LEAD_OUT)
    sources = counts(Counter(a.source for a in waiters if a.source), ("twelvedata", "finnhub", "demo"))
    return FaultResult(
        "fill-lock holder SIGKILLed (all 4 workers of instance A)",
        load.seen() + [Seen.of(answer) for answer in (*waiters, orphan)],
        _upstream(suite.fake),
        recovery,
        has_recovery=True,
        note=f"recovery = until all {LOCK_WAITERS} waiters on B were answered (bound LOCK_TTL + "
        f"2 x PROVIDER_TIMEOUT = {LOCK_TTL + 2 * PROVIDER_TIMEOUT} s); waiters: {sources}, statuses "
        f"{counts(Counter(a.status for a in waiters))}; the owner's own request: "
        f"{orphan.status or orphan.error}; A serving again after {_recovery(respawned, True)}",
    )


def provider_flapping(suite: Suite) -> FaultResult:
    """Twelve Data answers 502 a few times, then recovers, repeatedly."""
    with suite.load(hot_clients=2, cold_clients=2) as load:
        time.sleep(LEAD_IN)
        for _ in range(FLAPS):
            suite.fake.set_mode("twelvedata", "error_500", times=FLAP_ERRORS)
            time.sleep(FLAP_SECONDS)
            suite.fake.set_mode("twelvedata", "ok")
            time.sleep(FLAP_SECONDS)
        state = suite.twelvedata_state()
        recovery, probes = _until_twelvedata_serves(suite)
        time.sleep(LEAD_OUT)
    return FaultResult(
        f"Twelve Data flapping: {FLAPS} x ({FLAP_ERRORS} errors, then ok for {FLAP_SECONDS:g} s)",
        load.seen() + probes,
        _upstream(suite.fake),
        recovery,
        has_recovery=True,
        note=f"Twelve Data's state after the last flap: {state}; recovery = from the last flap until "
        "a new key is served by Twelve Data again",
    )


def provider_hanging(suite: Suite) -> FaultResult:
    """Twelve Data accepts requests and answers nothing for longer than PROVIDER_TIMEOUT."""
    with suite.load(hot_clients=2, cold_clients=HANG_COLD_CLIENTS) as load:
        time.sleep(LEAD_IN)
        suite.fake.set_mode("twelvedata", "stall", stall_seconds=PROVIDER_TIMEOUT * 3)
        time.sleep(HANG_SECONDS)
        state = suite.twelvedata_state()
        suite.fake.set_mode("twelvedata", "ok")
        recovery, probes = _until_twelvedata_serves(suite)
        time.sleep(LEAD_OUT)
    bound = 2 * PROVIDER_TIMEOUT
    return FaultResult(
        f"Twelve Data hanging ({PROVIDER_TIMEOUT * 3} s stalls, PROVIDER_TIMEOUT={PROVIDER_TIMEOUT}) "
        f"for {HANG_SECONDS:g} s",
        load.seen() + probes,
        _upstream(suite.fake),
        recovery,
        has_recovery=True,
        note=f"a cold request pays at most 2 timed-out attempts ({bound} s) before Finnhub answers, "
        f"until the circuit opens; Twelve Data's state at the end of the hang: {state}; recovery = from "
        "the end of the hang until Twelve Data serves a new key again",
    )


def malformed_at_volume(suite: Suite) -> FaultResult:
    """Bad symbols, bad JSON, deep nesting, long query strings and oversize bodies, many times over."""
    catalogue = malformed_calls([suite.first.url, suite.second.url])
    kinds = [catalogue[i % len(catalogue)] for i in range(MALFORMED_TOTAL)]
    answers: list[Answer] = []
    with suite.load(hot_clients=2, cold_clients=1) as load:
        for start in range(0, MALFORMED_TOTAL, MALFORMED_CONCURRENCY):
            answers += storm([call for _, call in kinds[start : start + MALFORMED_CONCURRENCY]])
    by_kind: dict[str, Counter[int]] = {}
    for (kind, _), answer in zip(kinds, answers, strict=True):
        by_kind.setdefault(kind, Counter())[answer.status] += 1
    return FaultResult(
        f"{MALFORMED_TOTAL} malformed or oversize requests, {MALFORMED_CONCURRENCY} at a time",
        load.seen() + [Seen.of(answer) for answer in answers],
        _upstream(suite.fake),
        note="statuses by kind: "
        + "; ".join(f"{kind} {counts(statuses)}" for kind, statuses in by_kind.items()),
        details={"statuses_by_kind": {kind: dict(statuses) for kind, statuses in by_kind.items()}},
    )


FAULTS: Sequence[Callable[[Suite], FaultResult]] = (
    redis_killed,
    lock_holder_killed,
    provider_flapping,
    provider_hanging,
    malformed_at_volume,
)


# --- helpers -------------------------------------------------------------------------------


def time_until(check: Callable[[], bool], *, since: float, timeout: float = RECOVERY_TIMEOUT) -> float | None:
    """Seconds from ``since`` until ``check()`` holds, polling; None if it never did in time."""
    while time.monotonic() - since < timeout:
        if check():
            return time.monotonic() - since
        time.sleep(0.2)
    return None


def _until_twelvedata_serves(suite: Suite) -> tuple[float | None, list[Seen]]:
    probes: list[Seen] = []

    def twelvedata_serves() -> bool:
        answer = one(Call(f"{suite.instances[len(probes) % 2].url}{suite.next_fresh()}"))
        probes.append(Seen.of(answer))
        return answer.source == "twelvedata"

    return time_until(twelvedata_serves, since=time.monotonic()), probes


def _serving(instance: Gunicorn) -> bool:
    return len(instance.worker_pids()) == WORKERS and one(Call(f"{instance.url}/health")).status == 200


def _upstream(fake: FakeProviderServer) -> dict[str, int]:
    return {provider: fake.calls(provider) for provider in ("twelvedata", "finnhub")}


def _recovery(seconds: float | None, has_recovery: bool) -> str:
    if not has_recovery:
        return "—"
    return f"{seconds:.1f} s" if seconds is not None else f"not within {RECOVERY_TIMEOUT:g} s"


def main(argv: list[str] | None = None) -> int:
    """Start the fleet once and run every fault on it, in order."""
    argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0]).parse_args(
        argv
    )
    report = Report("QuantPulse fault suite", COLUMNS, notes=list(NOTES))
    with upstream() as fake, RedisServer() as redis_server, ExitStack() as stack:
        instances = stack.enter_context(fleet(fleet_env(fake, redis_server, **SUITE_ENV)))
        suite = Suite(fake, redis_server, instances)
        for fault in FAULTS:
            print(f"... {fault.__name__}", flush=True)
            suite.warm()
            result = fault(suite)
            report.add(result.row())
            report.details[fault.__name__] = {
                "statuses": dict(Counter(s.status for s in result.seen)),
                **result.details,
            }
    report.finish("faults")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
