"""Push wake-ups for fill waiters: a fill publishes its keys, every process wakes its waiters.

One subscriber thread per process listens on one channel, on the worker's one pub/sub
connection. Waiters register an Event for their keys *before* re-reading the store, so a fill
that lands in between is never missed. Waking is by push, not by polling at a fixed interval;
the wait itself is still bounded by the caller.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import redis

from quantpulse.infra.store import retry_idempotent

log = logging.getLogger(__name__)

MAX_BACKOFF = 0.5  # seconds between resubscribe attempts while the store is away


class Waiter:
    """Woken by a push; remembers when the fill it was woken for was written."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.written_at: float | None = None

    def wake(self, written_at: float | None) -> None:
        self.written_at = written_at
        self.event.set()


# A push is a JSON list of the keys written, then ``"@<epoch seconds>"``: a worker of the previous
# release (which reads a plain list of keys) still wakes on it during a rolling deploy.
_WRITTEN_AT = "@"


def _decode(data: bytes) -> tuple[list[str], float | None]:
    """The keys of a push, and when they were written (None from the previous release)."""
    items = [str(item) for item in json.loads(data)]
    keys = [item for item in items if not item.startswith(_WRITTEN_AT)]
    stamps = [float(item[1:]) for item in items if item.startswith(_WRITTEN_AT)]
    return keys, (stamps[0] if stamps else None)


class FillNotifier:
    def __init__(
        self, client: redis.Redis, channel: str, on_error: Callable[[redis.RedisError], object] = bool
    ) -> None:
        """``on_error`` hears of every Redis error the listener meets (to count it)."""
        self._client = client
        self._on_error = on_error
        self._channel = channel
        self._guard = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)
        self._listener: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._observers: list[Callable[[list[str]], object]] = []

    def observe(self, observer: Callable[[list[str]], object]) -> None:
        """Also tell ``observer`` the keys of every fill, from any process (on the listener's
        thread: it must be quick), once the listener runs (``listen``)."""
        self._observers.append(observer)

    def listen(self) -> bool:
        """Start listening now rather than on the first wait; true once subscribed."""
        self._ensure_listener()
        return self.subscribed

    @contextmanager
    def waiting_for(self, keys: Iterable[str]) -> Iterator[Waiter]:
        """A waiter woken when any of ``keys`` is published; registered for the block's duration."""
        self._ensure_listener()
        waiter = Waiter()
        keys = list(keys)
        with self._guard:
            for key in keys:
                self._waiters[key].add(waiter)
        try:
            yield waiter
        finally:
            with self._guard:
                for key in keys:
                    self._waiters[key].discard(waiter)
                    if not self._waiters[key]:
                        del self._waiters[key]

    def publish(self, client: redis.Redis, keys: list[str], written_at: float) -> None:
        """Tell every process (this one directly, in case the store is not the shared one) that
        ``keys`` were written at ``written_at`` (epoch seconds: wake-ups are timed from it).

        A duplicate push only wakes waiters twice, so a broken connection is retried: a lost
        push would hold every waiter of the fleet until the lock lapsed.
        """
        self._wake(keys, written_at)
        message = json.dumps([*keys, f"{_WRITTEN_AT}{written_at}"])
        retry_idempotent(lambda: client.publish(self._channel, message))

    def _dispatch(self, data: bytes) -> None:
        """One push; a malformed one (not ours) is ignored, never a reason to resubscribe."""
        try:
            keys, written_at = _decode(data)
        except (ValueError, TypeError):
            log.debug("fill listener: ignoring a malformed push %r", data[:100])
            return
        self._wake(keys, written_at)

    def _wake(self, keys: list[str], written_at: float | None) -> None:
        with self._guard:
            waiters = [waiter for key in keys for waiter in self._waiters.get(key, ())]
        for waiter in waiters:
            waiter.wake(written_at)
        for observer in self._observers:
            try:
                observer(keys)
            except Exception:  # an observer's bug must not cost the fleet its wake-ups
                log.exception("fill observer failed on %d keys", len(keys))

    def _ensure_listener(self) -> None:
        """Started on first use, after gunicorn has forked, so every worker has its own."""
        if self._subscribed.is_set():
            return
        with self._guard:
            if self._listener is not None and self._listener.is_alive():
                return
            self._listener = threading.Thread(target=self._listen, name="fill-listener", daemon=True)
            self._listener.start()
        self._subscribed.wait(0.5)

    @property
    def subscribed(self) -> bool:
        """False while the listener is (re)connecting: pushes may be missed, so waiters poll."""
        return self._subscribed.is_set()

    def _listen(self) -> None:
        """Subscribe and dispatch forever; on a store error, back off briefly and subscribe again."""
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                self._subscribed.set()
                backoff = 0.05
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message["data"])
            except redis.RedisError as error:
                self._on_error(error)
                log.debug("fill listener: %s; resubscribing in %.2f s", error, backoff)
            except Exception:  # never die: a dead listener would leave waiters on slow polling
                log.exception("fill listener failed; resubscribing")
            finally:
                # Give the one subscriber connection back (its pool holds exactly one).
                self._subscribed.clear()
                pubsub.close()
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
