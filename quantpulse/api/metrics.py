"""``/metrics`` in the Prometheus text format, built from the fleet-wide counters in the store.

Counters and histograms are counted per worker and flushed to the shared ``qp:v1:stats`` hash
(like every statistic here), so the numbers are correct under any number of gunicorn workers
without prometheus_client's multiprocess mode, and every instance reports the same fleet totals:
scrape one instance through the router (or take ``max`` across instances, never ``sum``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from quantpulse.api import components
from quantpulse.api.request_log import elapsed
from quantpulse.api.status import LIVE_PROVIDERS, PROVIDER_STATES, demo_only, provider_health
from quantpulse.errors import FailureKind
from quantpulse.infra import counters
from quantpulse.infra.counters import Stats
from quantpulse.infra.store import ERROR_KINDS
from quantpulse.streaming.registry import FleetStreams

blp = Blueprint("metrics", __name__)

_REQUESTS = re.compile(r"http:requests:(?P<endpoint>[^:]+):(?P<status>\d+)")
_CACHE_RESULTS = {
    "hit": counters.HITS,
    "miss": counters.MISSES,
    "stale": counters.STALE_SERVED,
    "coalesced": counters.COALESCED_WAITS,
}


def register_request_metrics(app: Flask, stats: Stats) -> None:
    """Count every request by endpoint and status, and its latency, into the fleet counters."""

    @app.after_request
    def count(response: Response) -> Response:
        stats.request(request.endpoint or "unmatched", response.status_code, elapsed())
        return response


@blp.route("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    # content_type, not mimetype: the constant already names its charset, which mimetype would repeat.
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class FleetCollector(Collector):
    """Turns one snapshot of the shared counters into metric families at scrape time."""

    def collect(self) -> Iterator[Any]:
        parts = components()
        counts, _, _ = parts.service.stats.snapshot()
        health = provider_health(parts.service, parts.guard)
        yield _requests(counts)
        yield _histogram(
            "quantpulse_request_duration_seconds",
            "Request latency.",
            counts,
            _endpoints(counts),
            counters.http_latency,
            "endpoint",
        )
        yield _cache_results(counts)
        yield _histogram(
            "quantpulse_fill_wakeup_seconds",
            "From a fill's write to a waiter in another worker settling on it.",
            counts,
            {"fill"},
            lambda _: counters.FILL_WAKEUP,
            "event",
        )
        yield _redis_errors(counts)
        yield from _upstream(counts)
        yield _budget(health)
        yield _provider_states(health)
        yield GaugeMetricFamily(
            "quantpulse_demo_only",
            "1 when no live provider is configured at all: demo data by design, not a fault.",
            value=int(demo_only(parts.service)),
        )
        yield _counter(
            "quantpulse_lock_takeovers_total",
            "Fill locks taken over from a dead owner.",
            counts[counters.LOCK_TAKEOVERS],
        )
        yield _counter(
            "quantpulse_background_refreshes_total",
            "Stale or hot keys refreshed in the background.",
            counts[counters.REFRESHES],
        )
        yield _counter(
            "quantpulse_demo_served_total", "Answers made of demo data.", counts[counters.DEMO_SERVED]
        )
        yield from _streams(parts.streams.registry.fleet(), counts)


def _streams(fleet: FleetStreams, counts: Counter[str]) -> Iterator[Any]:
    """Live streams; a count the store could not give right now is left out, not shown as 0."""
    if fleet.open is not None:
        yield GaugeMetricFamily(
            "quantpulse_streams_open", "Live-quote streams open, fleet-wide.", value=fleet.open
        )
    if fleet.instruments is not None:
        yield GaugeMetricFamily(
            "quantpulse_streams_instruments",
            "Instruments watched by live streams, fleet-wide.",
            value=fleet.instruments,
        )
    yield _counter(
        "quantpulse_stream_pushes_total",
        "Quote and error events sent to live streams.",
        counts[counters.STREAM_PUSHES],
    )


def _endpoints(counts: Counter[str]) -> set[str]:
    return {match["endpoint"] for name in counts if (match := _REQUESTS.fullmatch(name))}


def _requests(counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "quantpulse_requests", "HTTP requests by endpoint and status.", labels=["endpoint", "status"]
    )
    for name, value in sorted(counts.items()):
        if match := _REQUESTS.fullmatch(name):
            family.add_metric([match["endpoint"], match["status"]], value)
    return family


def _histogram(
    name: str, doc: str, counts: Counter[str], keys: set[str], histogram_of: Any, label: str
) -> Any:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key in sorted(keys):
        histogram = histogram_of(key)
        cumulative, buckets = 0, []
        for bound in (*counters.LATENCY_BUCKETS, "+Inf"):
            cumulative += counts[f"{histogram}:bucket:{bound}"]
            buckets.append((str(bound), cumulative))
        family.add_metric([key], buckets, sum_value=counts[f"{histogram}:sum_us"] / 1_000_000)
    return family


def _cache_results(counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily("quantpulse_cache_results", "Cache lookups by result.", labels=["result"])
    for result, name in _CACHE_RESULTS.items():
        family.add_metric([result], counts[name])
    return family


def _redis_errors(counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "quantpulse_redis_errors", "Failed Redis commands by kind (answers still served).", labels=["kind"]
    )
    for kind in ERROR_KINDS:
        family.add_metric([kind], counts[counters.redis_errors_counter(kind)])
    return family


def _upstream(counts: Counter[str]) -> Iterator[Any]:
    calls = CounterMetricFamily(
        "quantpulse_upstream_calls", "HTTP requests sent upstream.", labels=["provider"]
    )
    failures = CounterMetricFamily(
        "quantpulse_upstream_failures", "Failed upstream requests by kind.", labels=["provider", "kind"]
    )
    for provider in LIVE_PROVIDERS:
        calls.add_metric([provider], counts[counters.calls_counter(provider)])
        for kind in FailureKind:
            failures.add_metric([provider, kind.value], counts[counters.failures_counter(provider, kind)])
    yield calls
    yield failures
    yield _histogram(
        "quantpulse_upstream_duration_seconds",
        "Upstream request latency.",
        counts,
        set(LIVE_PROVIDERS),
        counters.upstream_latency,
        "provider",
    )


def _budget(health: dict[str, dict[str, Any]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "quantpulse_budget_left", "Credits left in the current window.", labels=["provider", "window"]
    )
    for provider, status in health.items():
        for window, left in (status["budget"] or {}).items():
            if left is not None:
                family.add_metric([provider, window.removesuffix("_left")], left)
    return family


def _provider_states(health: dict[str, dict[str, Any]]) -> GaugeMetricFamily:
    """One series per provider and state, 1 for the state it is in (as the status route says)."""
    family = GaugeMetricFamily(
        "quantpulse_provider_state",
        "Live provider state: ok, cooldown, disabled (key rejected) or not_configured.",
        labels=["provider", "state"],
    )
    for provider, status in health.items():
        for state in PROVIDER_STATES:
            family.add_metric([provider, state], int(status["state"] == state))
    return family


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), doc, value=value)
