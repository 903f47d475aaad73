"""Kept answers: newer wins, a landed fill retracts them, and pushes reach observers safely."""

from __future__ import annotations

import time

import fakeredis

from quantpulse.bootstrap import local_cache
from quantpulse.cache.entry import CacheKey, Entry, Kind
from quantpulse.cache.notify import FillNotifier
from quantpulse.service.hot import HotAnswers

QUOTE = Kind("quote", dict, ttl=60, stale_ttl=300)
KEY = CacheKey(QUOTE, "NSE:RELIANCE")


def entry(age: float) -> Entry[dict]:
    return Entry({"price": 1.0}, "twelvedata", time.time() - age)


def hot() -> HotAnswers:
    return HotAnswers(5, local_cache(), local_cache())


def test_a_newer_kept_answer_is_never_replaced_by_an_older_one():
    answers = hot()
    fresh, stale = entry(1), entry(120)
    answers.put(KEY, fresh, "fresh", fresh.fetched_at + 60)
    answers.put(KEY, stale, "stale", stale.fetched_at + 360, refreshing=True)
    kept = answers.get(KEY, time.time())
    assert kept is not None and kept.answer == "fresh"


def test_a_landed_fill_retracts_the_kept_answer_and_refuses_a_late_stale_one():
    answers = hot()
    stale = entry(120)
    answers.put(KEY, stale, "stale", stale.fetched_at + 360, refreshing=True)

    answers.drop([KEY.redis_key])  # the refresh landed somewhere in the fleet

    assert answers.get(KEY, time.time()) is None
    answers.put(KEY, stale, "stale", stale.fetched_at + 360, refreshing=True)  # read before the fill
    assert answers.get(KEY, time.time()) is None
    fresh = entry(0)
    answers.put(KEY, fresh, "fresh", fresh.fetched_at + 60)  # read after it
    kept = answers.get(KEY, time.time())
    assert kept is not None and kept.answer == "fresh"


def test_dropping_while_other_threads_keep_answers_never_raises():
    """(cachelib's delete_many raised when a key came back between its delete and its check.)"""
    answers = hot()
    fresh = entry(0)
    for _ in range(1000):
        answers.put(KEY, fresh, "fresh", fresh.fetched_at + 60)
        answers.drop([KEY.redis_key, "qp:v1:quote:NSE:TCS"])


def test_a_failing_observer_costs_neither_the_wake_ups_nor_the_push():
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    notifier = FillNotifier(fakeredis.FakeRedis(server=server), "fills")
    heard: list[list[str]] = []

    def broken(keys: list[str]) -> None:
        raise RuntimeError("observer bug")

    notifier.observe(broken)
    notifier.observe(heard.append)
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("fills")

    with notifier.waiting_for(["k1"]) as waiter:
        notifier.publish(client, ["k1"], time.time())
        assert waiter.event.wait(1)
    assert ["k1"] in heard
    deadline = time.monotonic() + 2
    message = None
    while message is None and time.monotonic() < deadline:  # the subscription confirmation first
        message = listener.get_message(timeout=0.1)
    assert message is not None and b"k1" in message["data"]
