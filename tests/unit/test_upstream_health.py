"""Provider health on fakeredis: cooldowns, disabling, plan gates, the circuit and its probe."""

from __future__ import annotations

import fakeredis
import pytest

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.upstream.health import HealthSettings, ProviderHealth

NOW = 1_800_000_000.0


def failure(kind: FailureKind, retry_after: int | None = None, scope: str | None = None) -> ProviderError:
    return ProviderError("boom", provider="twelvedata", kind=kind, retry_after=retry_after, scope=scope)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def health() -> ProviderHealth:
    return ProviderHealth({"twelvedata": "key-a"}, HealthSettings(circuit_failures=3, circuit_cooldown=30))


def blocked(health, client, now=NOW, endpoint="/quote", exchange="NSE"):
    return health.blocked(client, "twelvedata", endpoint, exchange, now)


def test_a_healthy_provider_is_not_blocked(health, client):
    assert blocked(health, client) is None
    assert health.state(client, "twelvedata", NOW) == {"state": "ok", "cooldown_until": None}


def test_a_rate_limit_benches_the_provider_until_its_window_resets(health, client):
    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.RATE_LIMITED, 42), NOW)

    refusal = blocked(health, client, now=NOW + 2)

    assert refusal.kind is FailureKind.RATE_LIMITED and refusal.retry_after == 40
    assert refusal.scope == "skipped"
    assert health.state(client, "twelvedata", NOW)["cooldown_until"] == NOW + 42
    assert 41 <= client.pttl("qp:v1:health:twelvedata:cooldown") / 1000 <= 42


def test_a_day_limit_benches_for_the_day(health, client):
    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.RATE_LIMITED, 30000), NOW)

    assert blocked(health, client, now=NOW + 3600).retry_after == 30000 - 3600


def test_an_auth_failure_disables_until_the_key_changes(health, client):
    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.AUTH), NOW)

    assert blocked(health, client).kind is FailureKind.AUTH
    assert health.state(client, "twelvedata", NOW)["state"] == "disabled"
    new_key = ProviderHealth({"twelvedata": "key-b"})
    assert new_key.blocked(client, "twelvedata", "/quote", "NSE", NOW) is None


def test_a_plan_error_disables_only_that_endpoint_and_exchange(health, client):
    health.observe(client, "twelvedata", "/profile", "NSE", failure(FailureKind.PLAN), NOW)

    assert blocked(health, client, endpoint="/profile").kind is FailureKind.PLAN
    assert blocked(health, client, endpoint="/quote") is None
    assert blocked(health, client, endpoint="/profile", exchange="BSE") is None
    assert 6 * 3600 - 5 < client.ttl("qp:v1:health:twelvedata:plan:/profile:NSE") <= 6 * 3600


def test_not_found_and_success_do_not_bench(health, client):
    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.NOT_FOUND), NOW)
    health.observe(client, "twelvedata", "/quote", "NSE", None, NOW)

    assert blocked(health, client) is None


def test_repeated_transient_failures_open_the_circuit(health, client):
    for _ in range(2):
        health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.TRANSIENT), NOW)
    assert blocked(health, client) is None

    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.TRANSIENT), NOW)

    assert blocked(health, client).kind is FailureKind.TRANSIENT
    assert health.state(client, "twelvedata", NOW)["state"] == "cooldown"


def test_a_success_resets_the_transient_count(health, client):
    for outcome in (failure(FailureKind.TRANSIENT), failure(FailureKind.TRANSIENT), None):
        health.observe(client, "twelvedata", "/quote", "NSE", outcome, NOW)
    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.TRANSIENT), NOW)

    assert blocked(health, client) is None


def open_circuit(health, client) -> None:
    for _ in range(3):
        health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.TRANSIENT), NOW)
    client.delete("qp:v1:health:twelvedata:cooldown")  # as if the cooldown had run out


def test_after_the_cooldown_exactly_one_worker_probes(health, client):
    open_circuit(health, client)

    first, second = blocked(health, client), blocked(health, client)

    assert first is None, "the first caller becomes the probe"
    assert second is not None and "probing" in second.message


def test_a_successful_probe_closes_the_circuit(health, client):
    open_circuit(health, client)
    blocked(health, client)

    health.observe(client, "twelvedata", "/quote", "NSE", None, NOW)

    assert blocked(health, client) is None and blocked(health, client) is None


def test_a_failed_probe_reopens_the_circuit(health, client):
    open_circuit(health, client)
    blocked(health, client)

    health.observe(client, "twelvedata", "/quote", "NSE", failure(FailureKind.TRANSIENT), NOW)

    assert blocked(health, client).kind is FailureKind.TRANSIENT
