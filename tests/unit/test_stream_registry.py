"""The fleet's record of open streams: per-client slots, leases that lapse, counts for status."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from quantpulse.infra.background import Background
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, embedded_store
from quantpulse.streaming.registry import LEASE, StreamRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def renewed_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests renew on their own clock; the background keeper would renew on its own time."""
    monkeypatch.setattr(Background, "ensure", lambda self: None)


def registry_on(server: fakeredis.FakeServer, clock: Clock, limit: int = 2) -> StreamRegistry:
    """One worker's registry; several on one server stand in for a fleet."""
    stores = Stores(Store(fakeredis.FakeRedis(server=server), BACKEND_REDIS), fallback=embedded_store(10))
    return StreamRegistry(stores, limit, clock=clock)


def test_a_client_gets_its_slots_fleet_wide_and_one_back_when_a_stream_closes(server, clock):
    first, second = registry_on(server, clock), registry_on(server, clock)
    one = first.open("203.0.113.7")
    two = second.open("203.0.113.7")

    assert one is not None and two is not None
    assert first.open("203.0.113.7") is None, "the limit counts both workers' streams"
    assert second.open("198.51.100.1") is not None, "another client has its own slots"
    first.close(one)
    assert second.open("203.0.113.7") is not None
    assert first.fleet().open == 3


def test_a_dead_workers_slots_lapse_after_the_lease(server, clock):
    dead, alive = registry_on(server, clock), registry_on(server, clock)
    dead.open("203.0.113.7")
    dead.open("203.0.113.7")
    assert alive.open("203.0.113.7") is None

    clock.now += LEASE + 1  # the dead worker renewed nothing
    assert alive.open("203.0.113.7") is not None
    assert alive.fleet().open == 1


def test_renewal_extends_live_slots_and_never_revives_a_closed_one(server, clock):
    registry = registry_on(server, clock)
    kept, closed = registry.open("203.0.113.7"), registry.open("203.0.113.7")
    assert kept is not None and closed is not None
    registry.close(closed)
    registry._held.add(closed)  # a renewal that read its slots just before the close

    clock.now += LEASE / 2
    registry.renew()
    clock.now += LEASE / 2 + 1

    assert registry.fleet().open == 1, "the kept slot was extended, the closed one stayed gone"


def test_watched_instruments_are_counted_once_across_workers_and_follow_the_hub(server, clock):
    first, second = registry_on(server, clock), registry_on(server, clock)
    first.watching(["RELIANCE:NSE", "TCS:NSE"])
    second.watching(["TCS:NSE"])
    assert first.fleet().instruments == 2

    first.unwatched(["RELIANCE:NSE"])
    first.watching(["RELIANCE:NSE"])  # crossed on the way: the hub no longer watches it
    first.follow(lambda: ["TCS:NSE"])
    second.follow(lambda: ["TCS:NSE"])
    clock.now += LEASE / 2
    first.renew()
    second.renew()
    clock.now += LEASE / 2 + 1

    assert first.fleet().instruments == 1


def test_a_store_that_refuses_lets_the_stream_in_and_counts_are_unknown(clock):
    broken = fakeredis.FakeServer()
    broken.connected = False
    registry = registry_on(broken, clock, limit=1)

    assert registry.open("203.0.113.7") is not None
    assert registry.open("203.0.113.7") is not None, "the limit cannot be checked: let in"
    registry._stores.note(registry._stores.primary, redis.ConnectionError("down"))
    assert registry.fleet().open is None
