"""Stream tokens: a key stands behind one stream, opened within a minute, reconnected for a day."""

from __future__ import annotations

import fakeredis
import pytest

from quantpulse.access.keys import TOKEN_OPENS_WITHIN, KeyStore, Principal


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> KeyStore:
    client = fakeredis.FakeRedis()
    return KeyStore(lambda: client, ["free"], clock=clock)


def issued(store: KeyStore) -> tuple[str, Principal]:
    record, _ = store.create("acme", None, None)
    return record.id, Principal(record.id, record.name, record.tier)


def test_a_token_opens_one_stream_and_the_browsers_reconnects_of_it(store):
    _, principal = issued(store)
    token, expires = store.stream_token(principal)

    assert store.redeem(token, reconnect=False) == principal
    assert store.redeem(token, reconnect=False) is None, "a second stream"
    assert store.redeem(token, reconnect=True) == principal, "the same stream, reconnecting"
    assert expires.isoformat().endswith("+00:00")


def test_a_token_not_used_within_a_minute_opens_nothing(store, clock):
    _, principal = issued(store)
    token, _ = store.stream_token(principal)
    clock.now += TOKEN_OPENS_WITHIN + 1
    assert store.redeem(token, reconnect=False) is None


def test_a_revoked_keys_token_opens_nothing_and_its_streams_learn_it(store, clock):
    key_id, principal = issued(store)
    token, _ = store.stream_token(principal)
    assert store.live(key_id)
    store.revoke(key_id)
    clock.now += 1.1  # past the worker's one-second trust

    assert store.redeem(token, reconnect=True) is None
    assert not store.live(key_id)


def test_an_unknown_token_opens_nothing(store):
    assert store.redeem("made-up", reconnect=False) is None


def test_a_token_first_used_too_late_stays_refused_even_as_a_reconnect(store, clock):
    _, principal = issued(store)
    token, _ = store.stream_token(principal)
    clock.now += TOKEN_OPENS_WITHIN + 1
    assert store.redeem(token, reconnect=False) is None
    assert store.redeem(token, reconnect=True) is None


def test_rotating_the_key_retires_its_tokens(store):
    key_id, principal = issued(store)
    token, _ = store.stream_token(principal)
    store.rotate(key_id)
    assert store.redeem(token, reconnect=False) is None
