"""The key store's per-worker memory: a key is read again at most once a second, and while one
request reads it the others do not pile onto Redis."""

from __future__ import annotations

import threading

import fakeredis

from quantpulse.access.keys import RECHECK, KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingRedis(fakeredis.FakeRedis):
    """Counts digest look-ups; can hold one until told to go on."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.lookups = 0
        self.hold = threading.Event()
        self.held = threading.Event()
        self.holding = False

    def hget(self, name, key):  # type: ignore[no-untyped-def, override]
        if name.endswith("keys:digest"):
            self.lookups += 1
            if self.holding:
                self.held.set()
                self.hold.wait(5)
        return super().hget(name, key)


def test_a_key_is_read_again_once_a_second_and_once_at_a_time():
    client, clock = CountingRedis(), Clock()
    store = KeyStore(lambda: client, ["free"], clock=clock)
    record, key = store.create("acme", None, None)
    assert store.validate(key) is not None and store.validate(key) is not None
    assert client.lookups == 1

    clock.now += RECHECK + 0.1
    client.holding = True
    slow = threading.Thread(target=store.validate, args=(key,))
    slow.start()
    assert client.held.wait(5)
    others = [store.validate(key) for _ in range(20)]  # while the first reads it again
    client.hold.set()
    slow.join(5)

    assert all(principal is not None and principal.key_id == record.id for principal in others)
    assert client.lookups == 2
