"""(e) Memory per worker with 10,000 distinct cached quotes on the embedded store.

How the 10,000 entries are made, honestly: demo answers are never cached (by design), and the
fake upstream knows 51 companies, i.e. about 1,300 cacheable keys (quote, profile and 11
history periods, on NSE and BSE). So this benchmark registers 10,000 extra synthetic listings,
T00001..T10000, in the table of the fake running in this process (copies of its SYN01 template;
no file under tests/ changes) and points an instance without Redis at it, with no upstream
latency. Every worker then gets all 10,000 tickers as 500 cold batches of 20 over its own
keep-alive connection, so each worker's store holds 10,000 real quote entries written by the
normal fill path (the entry count is read from each worker's own status page).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from bench.fleet import fleet, median
from bench.report import Row, verdict
from bench.workers import WorkerConnection, connect_to_every_worker, rss_kib
from tests.fakes.provider_server import COMPANIES, FakeProviderServer

ENTRIES = 10_000
BATCH = 20
WORKERS = 4
TICKERS = tuple(f"T{index:05d}" for index in range(1, ENTRIES + 1))
WARMUP_TICKERS = tuple(f"W{index:05d}" for index in range(1, BATCH + 1))
CACHE_SIZES = (10_000, 2_000)


def register_listings(tickers: Sequence[str]) -> None:
    """Teach the in-process fake these tickers (a bench-only extension of its reference table)."""
    template = COMPANIES["SYN01"]
    COMPANIES.update(
        {
            ticker: dataclasses.replace(template, symbol=ticker, name=f"Synthetic {ticker} Ltd.")
            for ticker in tickers
        }
    )


def memory_rows(fake: FakeProviderServer) -> tuple[list[Row], dict[str, object]]:
    """Fill every worker with the same 10,000 quotes under each CACHE_MAX_SIZE; rows and raw figures."""
    register_listings(TICKERS + WARMUP_TICKERS)
    latency, fake.latency = fake.latency, 0.0
    try:
        runs = {size: _fill_workers(fake, size) for size in CACHE_SIZES}
    finally:
        fake.latency = latency
    rows = [row for size, workers in runs.items() for row in _rows(size, workers)]
    rows.append(_bound_row(runs))
    return rows, {"memory_per_worker": {str(size): workers for size, workers in runs.items()}}


def _fill_workers(fake: FakeProviderServer, cache_size: int) -> list[dict[str, int]]:
    """RSS of every worker before and after it cached all the tickers, and its entry count."""
    env = {**fake.service_env(), "CACHE_MAX_SIZE": str(cache_size)}  # no REDIS_URL: embedded store
    with fleet(env, instances=1, workers=WORKERS) as [instance]:
        workers = connect_to_every_worker(instance)
        try:
            for worker in workers:
                _send_batches(worker, WARMUP_TICKERS)  # code paths loaded before the "before" figure
            before = {worker.pid: rss_kib(worker.pid) for worker in workers}
            threads = [threading.Thread(target=_send_batches, args=(worker, TICKERS)) for worker in workers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return [
                {
                    "pid": worker.pid,
                    "rss_before_kib": before[worker.pid],
                    "rss_after_kib": rss_kib(worker.pid),
                    "entries": _entry_count(worker),
                }
                for worker in workers
            ]
        finally:
            for worker in workers:
                worker.close()


def _send_batches(worker: WorkerConnection, tickers: Sequence[str]) -> None:
    for start in range(0, len(tickers), BATCH):
        batch = tickers[start : start + BATCH]
        status, body = worker.request("POST", f"/stock/quotes?symbols={','.join(batch)}")
        if status != 200 or body["successful"] != len(batch):
            raise RuntimeError(f"worker {worker.pid} did not cache a batch: {status} {str(body)[:300]}")


def _entry_count(worker: WorkerConnection) -> int:
    status, body = worker.request("GET", "/stock/service/status")
    if status != 200:
        raise RuntimeError(f"status page answered {status}")
    return int(body["status"]["cache_stats"]["total_entries"])


def _growth_mib(workers: list[dict[str, int]]) -> list[float]:
    return [(w["rss_after_kib"] - w["rss_before_kib"]) / 1024 for w in workers]


def _rows(cache_size: int, workers: list[dict[str, int]]) -> list[Row]:
    growth = _growth_mib(workers)
    before = median([w["rss_before_kib"] / 1024 for w in workers])
    after = median([w["rss_after_kib"] / 1024 for w in workers])
    entries = [w["entries"] for w in workers]
    return [
        Row(
            f"e. RSS per worker after {ENTRIES:,} distinct quotes, CACHE_MAX_SIZE={cache_size:,}",
            f"+{median(growth):.1f} MiB (workers {', '.join(f'+{g:.1f}' for g in growth)})",
            f"RSS before filling {before:.1f} MiB",
            after / before,
            "—",
            verdict(None),
            "includes the near cache (up to 2,000 entries) and allocator slack",
        ),
        Row(
            f"e. entries held per worker (status page), CACHE_MAX_SIZE={cache_size:,}",
            ", ".join(f"{count:,}" for count in entries),
            f"CACHE_MAX_SIZE {cache_size:,}",
            max(entries) / cache_size,
            "<= CACHE_MAX_SIZE",
            verdict(max(entries) <= cache_size),
            f"{ENTRIES:,} distinct tickers sent to every worker",
        ),
    ]


def _bound_row(runs: dict[int, list[dict[str, int]]]) -> Row:
    """What each entry beyond the smaller bound costs: the difference between the two runs."""
    large, small = max(runs), min(runs)
    saved = median(_growth_mib(runs[large])) - median(_growth_mib(runs[small]))
    extra_entries = median([w["entries"] for w in runs[large]]) - median([w["entries"] for w in runs[small]])
    return Row(
        f"e. RSS per extra cached entry (CACHE_MAX_SIZE {large:,} vs {small:,})",
        f"{saved * 1024 / max(1, extra_entries):.2f} KiB per entry",
        f"{saved:.1f} MiB per worker saved by the {small:,} bound",
        median(_growth_mib(runs[small])) / median(_growth_mib(runs[large])),
        "—",
        verdict(None),
        "ratio: growth with the small bound / growth with the large one",
    )
