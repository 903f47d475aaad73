"""The fleet-wide credit budget on fakeredis: reservation, correction, windows, day limit."""

from __future__ import annotations

import fakeredis
import pytest

from quantpulse.upstream.budget import CreditBudget, Window

MINUTE = Window("minute", 60, 8)
DAY = Window("day", 86400, 800)
T0 = 1_800_000_000.0  # a minute boundary: 1_800_000_000 / 60 is whole


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def budget() -> CreditBudget:
    return CreditBudget({"twelvedata": (MINUTE, DAY), "finnhub": ()})


def test_reservations_stop_at_the_minute_limit(budget, client):
    grants = [budget.reserve(client, "twelvedata", 3, T0).granted for _ in range(3)]

    assert grants == [3, 3, 0]
    assert budget.left(client, "twelvedata", T0) == {"minute": 2, "day": 794}


def test_a_refusal_says_which_window_and_when_it_resets(budget, client):
    budget.reserve(client, "twelvedata", 8, T0)

    refusal = budget.reserve(client, "twelvedata", 1, T0 + 45)

    assert refusal.granted == 0
    assert refusal.refused_by == MINUTE
    assert refusal.retry_after == 16  # 15 s to the next minute, plus its one-second edge


def test_a_request_sent_at_the_edge_of_a_window_counts_in_both(budget, client):
    budget.reserve(client, "twelvedata", 3, T0 + 59.5)  # may arrive in the next minute

    assert budget.left(client, "twelvedata", T0 + 59.5)["minute"] == 5
    assert budget.left(client, "twelvedata", T0 + 60)["minute"] == 5
    assert budget.reserve(client, "twelvedata", 6, T0 + 60).granted == 0


def test_nothing_is_charged_when_a_request_does_not_fit(budget, client):
    budget.reserve(client, "twelvedata", 6, T0)
    budget.reserve(client, "twelvedata", 3, T0)

    assert budget.left(client, "twelvedata", T0)["minute"] == 2


def test_a_batch_gets_what_is_left(budget, client):
    budget.reserve(client, "twelvedata", 5, T0)

    assert budget.reserve(client, "twelvedata", 20, T0, partial=True).granted == 3
    assert budget.reserve(client, "twelvedata", 20, T0, partial=True).granted == 0


def test_the_next_minute_starts_a_fresh_window(budget, client):
    budget.reserve(client, "twelvedata", 8, T0 + 30)

    assert budget.reserve(client, "twelvedata", 8, T0 + 60).granted == 8
    assert budget.left(client, "twelvedata", T0 + 60) == {"minute": 0, "day": 784}


def test_the_day_limit_holds_across_minutes(client):
    budget = CreditBudget({"twelvedata": (MINUTE, Window("day", 86400, 10))})
    budget.reserve(client, "twelvedata", 8, T0)

    refusal = budget.reserve(client, "twelvedata", 3, T0 + 60)

    assert refusal.granted == 0 and refusal.refused_by.name == "day"
    assert refusal.retry_after > 3600


def test_provider_headers_correct_the_count_upwards_only(budget, client):
    budget.reserve(client, "twelvedata", 2, T0)

    budget.correct(client, "twelvedata", "minute", left=3, now=T0)  # someone else spent credits
    assert budget.left(client, "twelvedata", T0)["minute"] == 3
    budget.correct(client, "twelvedata", "minute", left=8, now=T0)  # never gives credits back
    assert budget.left(client, "twelvedata", T0)["minute"] == 3


def test_a_provider_without_limits_is_never_refused(budget, client):
    assert not budget.limited("finnhub")
    assert budget.reserve(client, "finnhub", 1000, T0).granted == 1000
    assert budget.left(client, "finnhub", T0) == {}


def test_window_counts_are_readable_in_redis_and_never_expire(budget, client):
    budget.reserve(client, "twelvedata", 2, T0)

    assert client.hget("qp:v1:budget:twelvedata:minute", str(int(T0 // 60))) == b"2"
    assert client.ttl("qp:v1:budget:twelvedata:minute") == -1, "no eviction policy may drop a count"


def test_ended_windows_are_pruned_as_new_ones_are_charged(budget, client):
    for minute in range(5):
        budget.reserve(client, "twelvedata", 1, T0 + minute * 60)

    fields = sorted(int(field) for field in client.hkeys("qp:v1:budget:twelvedata:minute"))
    assert fields == [int(T0 // 60) + 3, int(T0 // 60) + 4]


def test_during_a_rolling_deploy_both_releases_share_one_budget(budget, client):
    """The previous release counted in a string key per window; both must see all charges."""
    previous_release_key = f"qp:v1:budget:twelvedata:minute:{int(T0 // 60)}"
    client.set(previous_release_key, 6, px=120_000)  # the previous release charged 6 of 8

    assert budget.left(client, "twelvedata", T0)["minute"] == 2
    assert budget.reserve(client, "twelvedata", 3, T0).granted == 0, "only 2 left across releases"
    assert budget.reserve(client, "twelvedata", 2, T0).granted == 2
    assert client.get(previous_release_key) == b"8", "the previous release sees this one's charges"
