"""One worker's live-quote engine: which instruments its open streams watch, read once per
freshness window, and pushed to every watching stream when they change.

The hub never calls a provider itself. It reads watched quotes through the service
(``StockService.watch``), so the fleet cache's single flight makes a window's refresh one
upstream call however many streams, workers and instances watch the instrument. It reads an
instrument again when its quote goes stale, or at once when a fill of it lands anywhere in the
fleet (the worker's one pub/sub connection, ``CacheEngine.on_fill``); an instrument nobody
watches any more is forgotten, so it is never read again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from quantpulse.errors import QuantPulseError
from quantpulse.infra import counters
from quantpulse.infra.background import Background
from quantpulse.infra.counters import Stats
from quantpulse.service import DEMO_SOURCE, MIN_RECHECK, Answer, Watched
from quantpulse.symbols import Instrument

log = logging.getLogger(__name__)

MAILBOX_LIMIT = 100  # updates a stream may fall behind by before it is dropped as too slow
IDLE_WAIT = 5.0  # seconds the hub sleeps with nothing due (a new watch wakes it sooner)


class QuoteReader(Protocol):
    def watch(self, instruments: Sequence[Instrument]) -> dict[Instrument, Watched]: ...
    def watch_key(self, instrument: Instrument) -> str: ...


class WatchLedger(Protocol):
    """Where the fleet learns which instruments this worker watches (``StreamRegistry``)."""

    def watching(self, names: list[str]) -> None: ...
    def unwatched(self, names: list[str]) -> None: ...


def label(instrument: Instrument) -> str:
    """How streams name an instrument: ``RELIANCE:NSE``."""
    return f"{instrument.ticker}:{instrument.exchange}"


@dataclass(frozen=True)
class Update:
    """What a stream sends for one instrument: its quote, or why there is none."""

    instrument: Instrument
    outcome: Answer[Any] | QuantPulseError

    @property
    def change(self) -> tuple[Any, ...]:
        """What a client would see change: the quote itself (not when or how it was served)."""
        outcome = self.outcome
        if isinstance(outcome, QuantPulseError):
            return ("error", outcome.status, outcome.message)
        return ("quote", outcome.value, outcome.source == DEMO_SOURCE)

    def is_older_than(self, other: Update) -> bool:
        """A quote fetched before the one already sent (errors have no age: always news)."""
        mine, theirs = self.outcome, other.outcome
        return isinstance(mine, Answer) and isinstance(theirs, Answer) and mine.fetched_at < theirs.fetched_at


class Subscriber:
    """One open stream's mailbox: the updates it has not sent yet, bounded.

    Only changes get in: an update equal to the last one let in for its instrument, or older
    than it, is ignored, so a snapshot read by the stream and a push read by the hub can arrive
    in either order. A stream that falls ``MAILBOX_LIMIT`` updates behind is closed, not
    buffered for without bound; ``on_drop`` can break a write it is stuck in.
    """

    def __init__(self, on_drop: Callable[[], object] = bool) -> None:
        self.wake = threading.Event()
        self._on_drop = on_drop
        self._guard = threading.Lock()
        self._mailbox: deque[Update] = deque()
        self._last: dict[Instrument, Update] = {}
        self.closed = False
        self.dropped = False

    def offer(self, update: Update) -> bool:
        """Let ``update`` in if it is news to this stream; true if it was."""
        with self._guard:
            if self.closed:
                return False
            last = self._last.get(update.instrument)
            if last is not None and (last.change == update.change or update.is_older_than(last)):
                return False
            if len(self._mailbox) >= MAILBOX_LIMIT:
                self.dropped = True
            else:
                self._last[update.instrument] = update
                self._mailbox.append(update)
        if self.dropped:
            self.close()
            self._on_drop()
            return False
        self.wake.set()
        return True

    def take(self) -> list[Update]:
        with self._guard:
            updates = list(self._mailbox)
            self._mailbox.clear()
        return updates

    def forget(self, instruments: Iterable[Instrument]) -> None:
        """Unwatched: a later subscription to one of them starts with a snapshot again."""
        gone = set(instruments)
        with self._guard:
            for instrument in gone:
                self._last.pop(instrument, None)
            self._mailbox = deque(update for update in self._mailbox if update.instrument not in gone)

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class QuoteHub:
    def __init__(
        self, reader: QuoteReader, stats: Stats, ledger: WatchLedger, clock: Callable[[], float] = time.time
    ) -> None:
        self._reader = reader
        self._stats = stats
        self._ledger = ledger
        self._clock = clock
        self._guard = threading.Lock()
        self._watchers: dict[Instrument, set[Subscriber]] = {}
        self._due: dict[Instrument, float] = {}
        self._by_key: dict[str, Instrument] = {}
        self._wake = threading.Event()
        self._loop = Background("quote-hub", self._run)
        self._open: set[Subscriber] = set()  # every stream of the worker, watching or not
        self._closing = False

    # ---- streams ------------------------------------------------------------------------

    def open(self, subscriber: Subscriber) -> None:
        """A stream starts (closed at once if the worker is stopping)."""
        with self._guard:
            self._open.add(subscriber)
        if self._closing:
            subscriber.close()

    def close(self, subscriber: Subscriber) -> None:
        """A stream ended, however it ended."""
        subscriber.close()
        self.unsubscribe(subscriber)
        with self._guard:
            self._open.discard(subscriber)

    def subscribe(self, subscriber: Subscriber, instruments: Sequence[Instrument]) -> None:
        """Watch ``instruments`` for ``subscriber``; their snapshot is read now, on the caller's
        thread (a cold one waits for its fill there, not in the hub)."""
        added = []
        with self._guard:
            for instrument in instruments:
                if instrument not in self._watchers:
                    self._watchers[instrument] = set()
                    self._by_key[self._reader.watch_key(instrument)] = instrument
                    added.append(label(instrument))
                self._watchers[instrument].add(subscriber)
        if added:
            self._ledger.watching(added)
        self._ensure_loop()
        watched = self._read(instruments)
        for instrument, seen in watched.items():
            self._offer(subscriber, Update(instrument, seen.outcome))
        self._wake.set()  # the loop may be asleep until later than these are due

    def unsubscribe(self, subscriber: Subscriber, instruments: Iterable[Instrument] | None = None) -> None:
        """Stop watching ``instruments`` (all of them by default) for ``subscriber``."""
        forgotten = []
        with self._guard:
            chosen = list(self._watchers) if instruments is None else list(instruments)
            for instrument in chosen:
                watchers = self._watchers.get(instrument)
                if watchers is None:
                    continue
                watchers.discard(subscriber)
                if not watchers:
                    self._forget(instrument)
                    forgotten.append(label(instrument))
        subscriber.forget(chosen)
        if forgotten:
            self._ledger.unwatched(forgotten)

    def labels(self) -> list[str]:
        """What this worker watches, as streams name it."""
        with self._guard:
            return [label(instrument) for instrument in self._watchers]

    def close_all(self) -> None:
        """The worker is stopping: every stream ends, so its client reconnects to another."""
        self._closing = True
        with self._guard:
            subscribers = set(self._open)
        for subscriber in subscribers:
            subscriber.close()
        self._wake.set()

    @property
    def closing(self) -> bool:
        return self._closing

    # ---- fills --------------------------------------------------------------------------

    def heard_fill(self, keys: list[str]) -> None:
        """A fill landed somewhere in the fleet (the pub/sub listener's thread: quick)."""
        with self._guard:
            hit = [self._by_key[key] for key in keys if key in self._by_key]
            for instrument in hit:
                self._due[instrument] = 0.0
        if hit:
            self._wake.set()

    # ---- the loop -----------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        """Started by the first stream, after gunicorn has forked."""
        self._loop.ensure()

    def _run(self) -> None:
        while not self._closing:
            try:
                self._wake.wait(self._sleep())
                self._wake.clear()
                self.refresh_due()
            except Exception:  # never die: every stream of the worker depends on this loop
                log.exception("live-quote hub: a round failed")
                time.sleep(1.0)

    def _sleep(self) -> float:
        with self._guard:
            soonest = min(self._due.values(), default=None)
        if soonest is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.0, soonest - self._clock()))

    def refresh_due(self) -> None:
        """Read every watched instrument that is due, in one read, and push what changed."""
        now = self._clock()
        with self._guard:
            due = [instrument for instrument, at in self._due.items() if at <= now]
            for instrument in due:
                self._due[instrument] = now + IDLE_WAIT  # until this read says better
        if not due:
            return
        for instrument, seen in self._read(due).items():
            with self._guard:
                watchers = list(self._watchers.get(instrument, ()))
            for subscriber in watchers:
                self._offer(subscriber, Update(instrument, seen.outcome))

    def _read(self, instruments: Sequence[Instrument]) -> Mapping[Instrument, Watched]:
        started = self._clock()
        watched = self._reader.watch(instruments)
        with self._guard:
            for instrument, seen in watched.items():
                if instrument not in self._watchers:
                    continue
                # A fill heard during the read (due 0.0) may be newer than what it saw, or may be
                # its own: read again, but not before a second has passed (no loop on a fill
                # that keeps failing, whatever FAILURE_TTL says).
                heard = self._due.get(instrument) == 0.0
                self._due[instrument] = started + MIN_RECHECK if heard else seen.recheck_at
        return watched

    def _offer(self, subscriber: Subscriber, update: Update) -> None:
        if subscriber.offer(update):
            self._stats.incr(counters.STREAM_PUSHES)

    def _forget(self, instrument: Instrument) -> None:
        """Nobody here watches it: never read again (called holding the guard)."""
        del self._watchers[instrument]
        self._due.pop(instrument, None)
        self._by_key = {key: i for key, i in self._by_key.items() if i != instrument}
