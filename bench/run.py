"""QuantPulse benchmarks: ``python -m bench.run`` from the repository root.

Starts its own redis-server, fake upstream (in this process) and gunicorn instances, measures
(a) cached-read throughput (quote, history, profile), (b) cold storms, (c) expired-entry
storms, (d) a cold batch and (e) memory per worker, and prints and saves one table
(bench/results/latest.md and .json).
Every figure is a ratio against a baseline measured in the same run, next to its target. It
asserts nothing: a missed target is a MISS in the table, and the exit status is 0 unless the
benchmark itself crashes.
"""

from __future__ import annotations

import argparse

from bench import load
from bench.fleet import fleet, fleet_env, flush_redis, upstream, upstream_round_trip
from bench.memory import memory_rows
from bench.report import Report, Row
from bench.storms import batch_rows, cold_storm_rows, expired_storm_rows
from bench.throughput import throughput_rows
from tests.servers import RedisServer

COLUMNS = ("measurement", "result", "baseline", "ratio", "target", "verdict", "note")
NOTES = [
    "Baselines: (a) a bare Flask app doing one Redis GET per request of the same key, and Flask "
    "answering a constant JSON (the framework's ceiling), both in bench/baseline_app.py under "
    "the same gunicorn.conf.py; (b) and (d) one round trip straight to the fake upstream, timed by "
    "the same client; (c) the same 100-request storm on the entry while still fresh; (e) each "
    "worker's RSS before filling.",
    "Storm latencies are timed per request from send to last byte by one asyncio client whose "
    "connections are all opened before the storm is released (no thread per request).",
    "'server CPU/req' is the user+system time of the gunicorn workers during the measurement "
    "divided by the requests answered (from /proc/<pid>/stat).",
    "(e) Demo answers are never cached, and the fake knows only ~1,300 cacheable keys, so the run "
    "registers 10,000 synthetic listings T00001..T10000 in the in-process fake (no upstream "
    "latency, no Redis) and sends all of them to every worker over that worker's own keep-alive "
    "connection (found through /proc): each worker's store then holds real quote entries written "
    "by the normal fill path. The near cache (up to 2,000 entries per worker) is part of the growth.",
    "The machine may be shared: the load average at the end of the run is in the header.",
]


def main(argv: list[str] | None = None) -> int:
    """Run sections a-e, print the table and save it."""
    args = _arguments(argv)
    report = Report("QuantPulse benchmarks", COLUMNS, notes=list(NOTES))
    report.meta.update(load_generator=load.load_tool(), rounds=args.rounds, seconds=args.seconds)
    with upstream() as fake, RedisServer() as redis_server:
        rtt = upstream_round_trip(fake)
        report.details["upstream_round_trip_seconds"] = rtt
        _section("a. cached quote throughput")
        rows, details = throughput_rows(
            fake, redis_server, rounds=args.rounds, seconds=args.seconds, connections=args.connections
        )
        _extend(report, rows, details)
        flush_redis(redis_server)
        _section("b. cold storms and d. cold batches")
        with fleet(fleet_env(fake, redis_server)) as instances:
            _extend(report, cold_storm_rows(fake, instances, rtt))
            _extend(report, batch_rows(fake, instances, rtt))
        flush_redis(redis_server)
        _section("c. expired-entry storms (QUOTE_TTL=1)")
        with fleet(fleet_env(fake, redis_server, QUOTE_TTL="1")) as instances:
            _extend(report, expired_storm_rows(fake, instances))
        _section("e. memory per worker (embedded store)")
        _extend(report, *memory_rows(fake))
    report.rows.sort(key=lambda row: str(row["measurement"])[:2])  # b and d shared a fleet
    report.notes.insert(0, f"Load generator for (a): {report.meta['load_generator']}.")
    report.finish("latest")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="duration of each throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (median)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections for (a)")
    return parser.parse_args(argv)


def _section(name: str) -> None:
    print(f"... {name}", flush=True)


def _extend(report: Report, rows: list[Row], details: dict[str, object] | None = None) -> None:
    for row in rows:
        report.add(row)
    report.details.update(details or {})


if __name__ == "__main__":
    raise SystemExit(main())
