"""API keys: ``python -m bench.keys`` from the repository root (``make bench-keys``).

Issue #13's target: cached quote throughput with a valid API key at least 0.9x that of anonymous
traffic under the same limit (``RATE_LIMIT`` equal to the key's tier), measured in the same run.

One gunicorn instance of 4 gevent workers (as for bench.run's (a) rows) runs with
``RATE_LIMIT`` and ``API_TIER_BENCH`` both set to the same huge limit, so nothing is refused and
both kinds of request go through Flask and Flask-Limiter (Redis): a keyed request is counted
against its tier across all routes, an anonymous one against ``RATE_LIMIT`` per route and
address. A second instance, the same but without ``RATE_LIMIT``, serves anonymous requests on
the cached-hit path (before Flask) for context. Both share a real redis-server and the fake
upstream. wrk drives the warm ``GET /stock/RELIANCE`` with and without ``X-API-Key`` in
interleaved rounds. It prints one table and saves it as bench/results/keys.md and .json; it
asserts nothing: a missed target is a MISS in the table.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import requests

from bench import load
from bench.fleet import cpu_seconds, fleet, median, upstream
from bench.report import Report, Row, verdict
from bench.streams import server_problems
from tests.servers import Gunicorn, RedisServer

COLUMNS = ("measurement", "result", "baseline", "ratio", "target", "verdict", "note")
WORKERS = 4  # as bench.run's (a) rows: one instance of 4 workers per server under test
LIMIT = "100000000/minute"  # RATE_LIMIT and the tier's limit: the same, and never reached
TIER = "bench"
ADMIN_TOKEN = "bench-admin-token"
PATH = "/stock/RELIANCE"
TARGET = 0.9
WARMUP_SECONDS = 2
# The rounds outlast the default TTLs: keep the entry fresh so every read is a cached hit.
TTLS = {"QUOTE_TTL": "3600", "HISTORICAL_TTL": "3600", "PROFILE_TTL": "86400"}
NOTES = [
    "Servers: gunicorn with the repository's gunicorn.conf.py, 4 gevent workers per instance, "
    f"one real redis-server, the fake Twelve Data/Finnhub in this process; ADMIN_TOKEN set and "
    f"API_TIER_BENCH={LIMIT}; API_KEYS left at its default (optional). 'limited' = the instance "
    f"with RATE_LIMIT={LIMIT}; 'lane' = an identical instance without RATE_LIMIT, where an "
    "anonymous cached read is answered before Flask (the cached-hit path).",
    "One key of tier 'bench' is created through POST /admin/keys before the rounds; keyed runs send "
    "it as X-API-Key on every request (wrk -H). Keyed requests are limited by the tier across all "
    "routes (one Flask-Limiter application limit per key id); anonymous ones by RATE_LIMIT per "
    "route and address; both counted in Redis (sliding-window counter).",
    "Each run: wrk, one thread, keep-alive connections, --latency, on the warm GET /stock/RELIANCE, "
    f"after a {WARMUP_SECONDS} s warm-up run with the same headers. Rounds are interleaved and the "
    "order rotates each round, so each kind of traffic runs in each position; figures are medians "
    "of the rounds, each ratio the median of the per-round ratios.",
    "'server CPU/req' is the user+system time of the instance's gunicorn workers during the run "
    "divided by the requests answered (/proc/<pid>/stat); 'Redis CPU/req' and 'Redis commands/req' "
    "come from redis-server's INFO cpu and commandstats before and after the run (the whole "
    "server: usage flushes and key checks included).",
    "Answers: wrk's 'Non-2xx or 3xx responses' and socket error counts over every measured and "
    "warm-up run; wrk cannot tell 200 from another 2xx, so one request of each kind is also sent "
    "before the rounds and its status, cache and X-RateLimit-Limit header checked.",
    "The machine may be shared: the load average at the end of the run is in the header.",
]


@dataclass(frozen=True)
class Target:
    """One kind of traffic: which instance, and whether the key is sent."""

    name: str
    server: str
    keyed: bool


TARGETS = (
    Target("keyed", "limited", keyed=True),
    Target("anonymous", "limited", keyed=False),
    Target("anonymous, no RATE_LIMIT", "lane", keyed=False),
)


@dataclass(frozen=True)
class Run:
    """One measured run of one target."""

    throughput: load.Throughput
    warmup: load.Throughput
    cpu_ms_per_request: float
    redis_cpu_ms_per_request: float
    redis_commands: dict[str, int]  # per command, run during the measured run (scripts' included)

    @property
    def redis_commands_per_request(self) -> float:
        return sum(self.redis_commands.values()) / max(1, self.throughput.requests)

    @property
    def key_lookups_per_worker_second(self) -> float:
        """Key checks that went to Redis: each writes the key's last use (HSET) once."""
        seconds = self.throughput.requests / max(1e-9, self.requests_per_second)
        return self.redis_commands.get("hset", 0) / (seconds * WORKERS)

    @property
    def requests_per_second(self) -> float:
        return self.throughput.requests_per_second

    @property
    def p99_ms(self) -> float:
        return self.throughput.p99_ms


Runs = dict[str, list[Run]]


# --- measuring -----------------------------------------------------------------------------


def create_key(instance: Gunicorn) -> str:
    """A fresh key of the bench tier, through the operator's route."""
    answer = requests.post(
        f"{instance.url}/admin/keys",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "bench", "tier": TIER},
        timeout=10,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"POST /admin/keys answered {answer.status_code}: {answer.text}")
    return str(answer.json()["key"])


def spot_check(instance: Gunicorn, headers: Mapping[str, str]) -> dict[str, Any]:
    """One request as the load sends it: status, where the answer came from, the limit applied."""
    answer = requests.get(f"{instance.url}{PATH}", headers=dict(headers), timeout=30)
    try:
        info = answer.json().get("service_info", {})
    except ValueError:
        info = {}
    return {
        "status": answer.status_code,
        "cache": info.get("cache"),
        "source": info.get("source"),
        "x_ratelimit_limit": answer.headers.get("X-RateLimit-Limit"),
    }


def redis_counters(redis_server: RedisServer) -> tuple[float, dict[str, int]]:
    """redis-server's CPU seconds so far, and the calls of each command (those run by scripts
    included)."""
    cpu = redis_server.info("cpu")
    stats = redis_server.cli("INFO", "commandstats")
    calls = {name: int(count) for name, count in re.findall(r"cmdstat_([^:\s]+):calls=(\d+)", stats)}
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls


def measure(
    instance: Gunicorn,
    redis_server: RedisServer,
    headers: Mapping[str, str],
    *,
    seconds: float,
    connections: int,
) -> Run:
    url = f"{instance.url}{PATH}"
    warmup = load.measure(url, seconds=WARMUP_SECONDS, connections=connections, headers=headers)
    workers = instance.worker_pids()
    cpu = cpu_seconds(workers)
    redis_cpu, redis_calls = redis_counters(redis_server)
    result = load.measure(url, seconds=seconds, connections=connections, headers=headers)
    answered = max(1, result.requests)
    cpu_ms = (cpu_seconds(workers) - cpu) * 1000 / answered
    redis_cpu_after, redis_calls_after = redis_counters(redis_server)
    commands = {
        name: calls - redis_calls.get(name, 0)
        for name, calls in redis_calls_after.items()
        if name != "info" and calls != redis_calls.get(name, 0)
    }
    return Run(result, warmup, cpu_ms, (redis_cpu_after - redis_cpu) * 1000 / answered, commands)


def run_rounds(
    instances: Mapping[str, Gunicorn],
    redis_server: RedisServer,
    key: str,
    *,
    rounds: int,
    seconds: float,
    connections: int,
) -> Runs:
    """Every target once per round, the order rotated each round."""
    runs: Runs = {target.name: [] for target in TARGETS}
    for number in range(rounds):
        order = TARGETS[number % len(TARGETS) :] + TARGETS[: number % len(TARGETS)]
        for target in order:
            print(f"... round {number + 1}: {target.name} ({seconds:g} s)", flush=True)
            headers = {"X-API-Key": key} if target.keyed else {}
            runs[target.name].append(
                measure(
                    instances[target.server], redis_server, headers, seconds=seconds, connections=connections
                )
            )
    return runs


def own_usage(instance: Gunicorn, key: str) -> dict[str, Any]:
    """The key's own usage report (GET /usage), for the notes."""
    answer = requests.get(f"{instance.url}/usage?days=1", headers={"X-API-Key": key}, timeout=10)
    try:
        return {"status": answer.status_code, "body": answer.json()}
    except ValueError:
        return {"status": answer.status_code, "body": answer.text[:500]}


# --- the table -----------------------------------------------------------------------------


def _ratio(runs: Runs, target: str, baseline: str, metric: Any) -> float:
    """Median of the per-round ratios: rounds are interleaved, so each ratio shares its conditions."""
    return median([metric(a) / metric(b) for a, b in zip(runs[target], runs[baseline], strict=True)])


def _rate(series: Sequence[Run]) -> str:
    rate = median([run.requests_per_second for run in series])
    cpu = median([run.cpu_ms_per_request for run in series])
    return f"{rate:,.0f} req/s ({cpu:.2f} ms server CPU/req)"


def _p99(series: Sequence[Run]) -> str:
    return f"{median([run.p99_ms for run in series]):.1f} ms"


def _per_round(series: Sequence[Run]) -> str:
    return " / ".join(f"{run.requests_per_second:,.0f}" for run in series)


def _redis(series: Sequence[Run]) -> str:
    cpu = median([run.redis_cpu_ms_per_request for run in series])
    calls = median([run.redis_commands_per_request for run in series])
    return f"Redis {cpu:.3f} ms CPU/req, {calls:.2f} commands/req"


def answers_summary(runs: Runs) -> tuple[int, int, int, str]:
    """Requests sent (measured and warm-up runs), non-2xx answers, socket errors, and a note."""
    every = [t for series in runs.values() for run in series for t in (run.throughput, run.warmup)]
    sent = sum(t.requests for t in every)
    non_2xx = sum(t.non_2xx for t in every)
    sockets = sum(t.socket_errors for t in every)
    per_target = "; ".join(
        f"{name}: {sum(r.throughput.requests + r.warmup.requests for r in series):,} requests, "
        f"{sum(r.throughput.non_2xx + r.warmup.non_2xx for r in series)} non-2xx, "
        f"{sum(r.throughput.socket_errors + r.warmup.socket_errors for r in series)} socket errors"
        for name, series in runs.items()
    )
    return sent, non_2xx, sockets, per_target


def _usage_counted(usage: Mapping[str, Any]) -> str:
    body = usage.get("body")
    if usage.get("status") != 200 or not isinstance(body, dict):
        return f"GET /usage answered {usage.get('status')}"
    statuses = " ".join(f"{name}={count:,}" for name, count in (body.get("by_status") or {}).items())
    return (
        f"GET /usage counted {body.get('requests'):,} keyed requests ({statuses}) "
        "(wrk counts only answers read before it stopped; up to one per connection per run more were sent)"
    )


def _key_lookups_row(runs: Runs) -> Row:
    keyed = runs["keyed"]
    lookups = median([run.key_lookups_per_worker_second for run in keyed])
    per_request = median(
        [run.redis_commands.get("hset", 0) / max(1, run.throughput.requests) for run in keyed]
    )
    return Row(
        "key checks that read Redis during the keyed runs, per worker per second",
        f"{lookups:.1f}",
        "1 (RECHECK = 1 s)",
        lookups,
        "—",
        verdict(None),
        "counted as HSETs of the key's last use (one per look-up, besides its 2 HGETs); "
        f"{per_request:.3f} look-ups per request; per round "
        + " / ".join(f"{run.key_lookups_per_worker_second:.1f}" for run in keyed)
        + f"; {WORKERS} workers",
    )


def rows(
    runs: Runs, checks: Mapping[str, Mapping[str, Any]], usage: Mapping[str, Any], how: str
) -> list[Row]:
    keyed, anonymous, lane = (runs[target.name] for target in TARGETS)
    speed = _ratio(runs, "keyed", "anonymous", lambda run: run.requests_per_second)
    p99 = _ratio(runs, "keyed", "anonymous", lambda run: run.p99_ms)
    cpu = _ratio(runs, "keyed", "anonymous", lambda run: run.cpu_ms_per_request)
    vs_lane = _ratio(runs, "keyed", "anonymous, no RATE_LIMIT", lambda run: run.requests_per_second)
    anon_vs_lane = _ratio(runs, "anonymous", "anonymous, no RATE_LIMIT", lambda run: run.requests_per_second)
    sent, non_2xx, sockets, per_target = answers_summary(runs)
    spot = "; ".join(
        f"{name}: {check['status']}, cache {check['cache']}, X-RateLimit-Limit {check['x_ratelimit_limit']}"
        for name, check in checks.items()
    )
    all_ok = non_2xx == 0 and sockets == 0 and all(check["status"] == 200 for check in checks.values())
    return [
        Row(
            f"cached quote throughput with a valid API key vs anonymous, same limit ({LIMIT})",
            _rate(keyed),
            _rate(anonymous),
            speed,
            f">= {TARGET}x",
            verdict(speed >= TARGET),
            f"{how}; req/s per round keyed {_per_round(keyed)}, anonymous {_per_round(anonymous)}; "
            f"server CPU/req ratio {cpu:.2f}x; keyed {_redis(keyed)}; anonymous {_redis(anonymous)}",
        ),
        Row(
            "cached quote p99 latency, keyed vs anonymous (same runs)",
            _p99(keyed),
            _p99(anonymous),
            p99,
            "—",
            verdict(None),
            "wrk --latency distribution; per round keyed "
            + " / ".join(f"{run.p99_ms:.1f}" for run in keyed)
            + " ms, anonymous "
            + " / ".join(f"{run.p99_ms:.1f}" for run in anonymous)
            + " ms",
        ),
        Row(
            "context: keyed vs anonymous with RATE_LIMIT unset (cached-hit path, before Flask)",
            _rate(keyed),
            _rate(lane),
            vs_lane,
            "—",
            verdict(None),
            f"the lane instance: p99 {_p99(lane)}, req/s per round {_per_round(lane)}, {_redis(lane)}; "
            f"anonymous under RATE_LIMIT vs the lane: {anon_vs_lane:.3g}x",
        ),
        Row(
            "answers: every request answered 2xx, no socket errors (wrk), spot checks 200",
            f"{non_2xx} non-2xx, {sockets} socket errors",
            f"{sent:,} requests",
            None,
            "0",
            verdict(all_ok),
            f"{per_target}; spot checks before the rounds: {spot}; {_usage_counted(usage)}",
        ),
        _key_lookups_row(runs),
    ]


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    report = Report("QuantPulse API keys: keyed vs anonymous cached reads", COLUMNS, notes=list(NOTES))
    report.meta.update(
        load_generator=load.load_tool(),
        rounds=args.rounds,
        seconds=args.seconds,
        connections=args.connections,
        limit=LIMIT,
    )
    with upstream() as fake, RedisServer() as redis_server, ExitStack() as stack:
        env = {
            **fake.service_env(),
            **TTLS,
            "REDIS_URL": redis_server.url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            f"API_TIER_{TIER.upper()}": LIMIT,
        }
        print(f"... starting 2 instances x {WORKERS} workers", flush=True)
        instances = {
            "limited": stack.enter_context(fleet({**env, "RATE_LIMIT": LIMIT}, instances=1, workers=WORKERS))[
                0
            ],
            "lane": stack.enter_context(fleet(env, instances=1, workers=WORKERS))[0],
        }
        key = create_key(instances["limited"])
        filled = spot_check(instances["limited"], {})  # the one upstream call: RELIANCE is cached
        if filled["status"] != 200:
            raise RuntimeError(f"QuantPulse answered {filled['status']} for {PATH} while warming")
        checks = {
            target.name: spot_check(instances[target.server], {"X-API-Key": key} if target.keyed else {})
            for target in TARGETS
        }
        runs = run_rounds(
            instances,
            redis_server,
            key,
            rounds=args.rounds,
            seconds=args.seconds,
            connections=args.connections,
        )
        usage = own_usage(instances["limited"], key)
        problems = [line for instance in instances.values() for line in server_problems(instance.output())]
    how = f"{args.connections} connections, {args.seconds:g} s x {args.rounds} rounds"
    for row in rows(runs, checks, usage, how):
        report.add(row)
    report.notes.insert(0, f"Load generator: {report.meta['load_generator']}.")
    report.notes.append(
        f"Server logs (both instances): {len(problems)} line(s) at WARNING or above"
        + ("" if not problems else f"; first: {_shorten(problems[0])}")
        + "."
    )
    report.details.update(
        runs={
            name: [
                {
                    **run.throughput.__dict__,
                    "cpu_ms_per_request": run.cpu_ms_per_request,
                    "redis_cpu_ms_per_request": run.redis_cpu_ms_per_request,
                    "redis_commands": run.redis_commands,
                    "warmup": run.warmup.__dict__,
                }
                for run in series
            ]
            for name, series in runs.items()
        },
        spot_checks=checks,
        key_usage=usage,
        server_log_problems=problems[:50],
    )
    report.finish(args.name)
    return 0


def _shorten(line: str, limit: int = 300) -> str:
    return re.sub(r"\s+", " ", line)[:limit]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.keys", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="duration of each measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections")
    parser.add_argument("--name", default="keys", help="results file name under bench/results/")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
