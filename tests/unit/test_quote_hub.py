"""The live-quote hub: one read per due instrument, changes only, fills heard, slow streams dropped."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

import pytest

from quantpulse.errors import SymbolNotFound
from quantpulse.models import MARKET_OPEN, Quote
from quantpulse.service import Answer, Watched
from quantpulse.streaming.hub import MAILBOX_LIMIT, QuoteHub, Subscriber, Update, label
from quantpulse.symbols import Instrument

RELIANCE = Instrument("RELIANCE", "NSE")
TCS = Instrument("TCS", "NSE")


def answer(instrument: Instrument, price: str, fetched_at: float = 1000.0) -> Answer[Quote]:
    quote = Quote(
        symbol=instrument.ticker,
        exchange=instrument.exchange,
        company_name=instrument.ticker.title(),
        currency="INR",
        price=Decimal(price),
        previous_close=Decimal("100"),
        change=Decimal(price) - 100,
        change_percent=Decimal("1"),
        open=None,
        high=None,
        low=None,
        volume=1,
        market_state=MARKET_OPEN,
        last_trade_at=None,
    )
    return Answer(instrument, quote, "twelvedata", "hit", fetched_at)


class FakeReader:
    """The service as the hub sees it: settable answers, every read recorded."""

    def __init__(self) -> None:
        self.answers: dict[Instrument, Watched] = {}
        self.reads: list[list[Instrument]] = []

    def set(self, instrument: Instrument, price: str, fetched_at: float, recheck_at: float = 1e12) -> None:
        self.answers[instrument] = Watched(answer(instrument, price, fetched_at), recheck_at)

    def watch(self, instruments: Sequence[Instrument]) -> dict[Instrument, Watched]:
        self.reads.append(list(instruments))
        return {instrument: self.answers[instrument] for instrument in instruments}

    def watch_key(self, instrument: Instrument) -> str:
        return f"quote:{instrument.exchange}:{instrument.ticker}"


class Ledger:
    def __init__(self) -> None:
        self.names: Counter[str] = Counter()

    def watching(self, names: list[str]) -> None:
        self.names.update(names)

    def unwatched(self, names: list[str]) -> None:
        self.names.subtract(names)


class CountingStats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount


@pytest.fixture
def reader() -> FakeReader:
    reader = FakeReader()
    reader.set(RELIANCE, "101", 1000)
    reader.set(TCS, "201", 1000)
    return reader


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


class SteppedHub(QuoteHub):
    """The hub without its background loop: the test calls ``refresh_due`` itself."""

    def _ensure_loop(self) -> None:
        pass


@pytest.fixture
def hub(reader: FakeReader, ledger: Ledger) -> QuoteHub:
    return SteppedHub(reader, CountingStats(), ledger)  # type: ignore[arg-type]


@pytest.fixture
def looping_hub(reader: FakeReader, ledger: Ledger) -> QuoteHub:
    return QuoteHub(reader, CountingStats(), ledger)  # type: ignore[arg-type]


def prices(subscriber: Subscriber) -> list[tuple[str, str]]:
    return [(u.instrument.ticker, str(u.outcome.value.price)) for u in subscriber.take()]  # type: ignore[union-attr]


def test_a_new_stream_gets_a_snapshot_of_each_instrument(hub: QuoteHub, reader: FakeReader) -> None:
    stream = Subscriber()
    hub.subscribe(stream, [RELIANCE, TCS])

    assert prices(stream) == [("RELIANCE", "101"), ("TCS", "201")]
    assert reader.reads == [[RELIANCE, TCS]]


def test_a_fill_heard_is_read_once_and_pushed_to_every_watcher_only_when_it_changed(
    hub: QuoteHub, reader: FakeReader
) -> None:
    streams = [Subscriber() for _ in range(3)]
    for stream in streams:
        hub.subscribe(stream, [RELIANCE])
        stream.take()
    reader.reads.clear()

    reader.set(RELIANCE, "101", 1060)  # refreshed, same price: nothing to tell
    hub.heard_fill([reader.watch_key(RELIANCE)])
    hub.refresh_due()
    assert [prices(stream) for stream in streams] == [[], [], []]

    reader.set(RELIANCE, "105.5", 1120)
    hub.heard_fill([reader.watch_key(RELIANCE), "quote:NSE:UNWATCHED"])
    hub.refresh_due()
    assert [prices(stream) for stream in streams] == [[("RELIANCE", "105.5")]] * 3
    assert reader.reads == [[RELIANCE], [RELIANCE]]  # one read per fill for all watchers


def test_an_instrument_is_read_again_when_its_quote_goes_stale(reader: FakeReader) -> None:
    now = [1000.0]
    hub = SteppedHub(reader, CountingStats(), Ledger(), clock=lambda: now[0])  # type: ignore[arg-type]
    reader.set(RELIANCE, "101", 1000, recheck_at=1060)
    hub.subscribe(Subscriber(), [RELIANCE])
    reader.reads.clear()

    now[0] = 1059.0
    hub.refresh_due()
    assert reader.reads == []
    now[0] = 1060.0
    hub.refresh_due()
    assert reader.reads == [[RELIANCE]]


def test_an_instrument_nobody_watches_is_never_read_again(
    hub: QuoteHub, reader: FakeReader, ledger: Ledger
) -> None:
    first, second = Subscriber(), Subscriber()
    hub.subscribe(first, [RELIANCE, TCS])
    hub.subscribe(second, [RELIANCE])
    assert +ledger.names == Counter({"RELIANCE:NSE": 1, "TCS:NSE": 1})

    hub.unsubscribe(first)
    assert +ledger.names == Counter({"RELIANCE:NSE": 1})
    hub.unsubscribe(second, [RELIANCE])
    reader.reads.clear()

    hub.heard_fill([reader.watch_key(RELIANCE), reader.watch_key(TCS)])
    hub.refresh_due()
    assert reader.reads == []
    assert +ledger.names == Counter()


def test_an_older_quote_arriving_after_a_newer_one_is_not_sent() -> None:
    stream = Subscriber()
    assert stream.offer(Update(RELIANCE, answer(RELIANCE, "105", fetched_at=1060)))
    assert not stream.offer(Update(RELIANCE, answer(RELIANCE, "101", fetched_at=1000)))
    assert prices(stream) == [("RELIANCE", "105")]


def test_an_error_is_sent_once_and_the_quote_again_once_it_recovers() -> None:
    stream = Subscriber()
    missing = SymbolNotFound.of(RELIANCE)
    assert stream.offer(Update(RELIANCE, missing))
    assert not stream.offer(Update(RELIANCE, SymbolNotFound.of(RELIANCE)))
    assert stream.offer(Update(RELIANCE, answer(RELIANCE, "101")))
    assert [type(u.outcome).__name__ for u in stream.take()] == ["SymbolNotFound", "Answer"]


def test_a_stream_that_stops_reading_is_dropped_not_buffered_without_bound() -> None:
    dropped = threading.Event()
    stream = Subscriber(on_drop=dropped.set)
    for n in range(MAILBOX_LIMIT):
        assert stream.offer(Update(RELIANCE, answer(RELIANCE, str(100 + n), fetched_at=1000 + n)))

    assert not stream.offer(Update(RELIANCE, answer(RELIANCE, "999", fetched_at=5000)))
    assert stream.closed and stream.dropped and dropped.is_set()
    assert len(stream.take()) == MAILBOX_LIMIT


def test_closing_the_hub_ends_every_stream_watching_or_not(hub: QuoteHub) -> None:
    streams = [Subscriber() for _ in range(3)]
    for stream in streams:
        hub.open(stream)
    hub.subscribe(streams[0], [RELIANCE])  # the others watch nothing (yet)

    hub.close_all()
    late = Subscriber()
    hub.open(late)

    assert hub.closing and all(stream.closed and stream.wake.is_set() for stream in streams)
    assert late.closed, "a stream starting on a stopping worker ends at once"


def test_the_hub_loop_pushes_a_heard_fill_within_a_second(looping_hub: QuoteHub, reader: FakeReader) -> None:
    hub = looping_hub
    stream = Subscriber()
    hub.subscribe(stream, [RELIANCE])  # starts the loop
    stream.take()
    stream.wake.clear()

    reader.set(RELIANCE, "110", 1100)
    started = time.monotonic()
    hub.heard_fill([reader.watch_key(RELIANCE)])

    assert stream.wake.wait(1.0), "no push within a second of the fill"
    assert time.monotonic() - started < 1.0
    assert prices(stream) == [("RELIANCE", "110")]
    hub.close_all()


def test_streams_name_instruments_ticker_then_exchange() -> None:
    assert label(Instrument("M&M", "BSE")) == "M&M:BSE"


def test_a_new_watch_due_sooner_than_the_loop_sleeps_is_read_on_time(
    looping_hub: QuoteHub, reader: FakeReader
) -> None:
    hub = looping_hub
    hub.subscribe(Subscriber(), [TCS])  # the loop starts and, with nothing due, sleeps IDLE_WAIT
    time.sleep(0.1)
    stream = Subscriber()
    reader.set(RELIANCE, "101", 1000, recheck_at=time.time() + 0.3)
    hub.subscribe(stream, [RELIANCE])
    stream.take()
    stream.wake.clear()
    reader.set(RELIANCE, "102", 1001, recheck_at=time.time() + 60)

    assert stream.wake.wait(1.5), "the stale quote was not read again in time"
    assert prices(stream) == [("RELIANCE", "102")]
    hub.close_all()


def test_an_error_after_a_quote_is_sent() -> None:
    stream = Subscriber()
    assert stream.offer(Update(RELIANCE, answer(RELIANCE, "101", fetched_at=1000)))
    assert stream.offer(Update(RELIANCE, SymbolNotFound.of(RELIANCE)))


def test_a_fill_heard_during_its_own_read_is_read_again_after_a_second_not_at_once() -> None:
    """A fill the hub's own read caused (or one that keeps failing) must not loop."""
    now = [1000.0]
    reader = FakeReader()
    hub = SteppedHub(reader, CountingStats(), Ledger(), clock=lambda: now[0])  # type: ignore[arg-type]

    def watch_and_fill(instruments: Sequence[Instrument]) -> dict[Instrument, Watched]:
        hub.heard_fill([reader.watch_key(RELIANCE)])  # as if this read filled it
        return {i: Watched(answer(i, "101"), recheck_at=now[0]) for i in instruments}

    reader.watch = watch_and_fill  # type: ignore[method-assign]
    hub.subscribe(Subscriber(), [RELIANCE])
    reads = []
    reader.watch = lambda instruments: reads.append(list(instruments)) or watch_and_fill(instruments)  # type: ignore[method-assign]

    hub.refresh_due()
    assert reads == []
    now[0] += 1.0
    hub.refresh_due()
    assert reads == [[RELIANCE]]


def test_dropping_unwatched_instruments_purges_their_queued_updates() -> None:
    stream = Subscriber()
    stream.offer(Update(RELIANCE, answer(RELIANCE, "101")))
    stream.offer(Update(TCS, answer(TCS, "201")))
    stream.forget([RELIANCE])
    assert prices(stream) == [("TCS", "201")]
