"""The service on its own: the real adapters behind ``responses``, a recording gate, fakeredis.

What the service decides, not the cache or the adapters: which provider completes a profile,
where demo data stands in, how verdicts and failures come back, one fetch per instrument.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import responses

from quantpulse.api.rendering import RENDERERS
from quantpulse.bootstrap import local_cache
from quantpulse.cache.ahead import RefreshAhead
from quantpulse.cache.engine import CacheEngine
from quantpulse.cache.locks import FillLocks
from quantpulse.config import Settings
from quantpulse.errors import ProvidersExhausted, SymbolNotFound
from quantpulse.infra.counters import DEMO_SERVED, Stats
from quantpulse.infra.store import Store, Stores
from quantpulse.market import MarketCalendar
from quantpulse.providers.demo import DemoProvider
from quantpulse.service import Kinds, StockService
from quantpulse.service.chain import ProviderChain
from quantpulse.service.hot import HotAnswers
from quantpulse.symbols import parse_symbol
from tests.unit.conftest import FH_BASE, TD_BASE

TD_PROFILE = f"{TD_BASE}/profile"
TD_QUOTE = f"{TD_BASE}/quote"
FH_PROFILE = f"{FH_BASE}/stock/profile2"
FH_QUOTE = f"{FH_BASE}/quote"
RELIANCE = parse_symbol("RELIANCE")
_refreshers: list[ThreadPoolExecutor] = []


@pytest.fixture(autouse=True)
def refreshes_finish_within_their_test(upstream):
    """A background refresh a test started (a stale read) ends before the test's ``upstream``
    closes: left running, it would call the next test's mock."""
    yield
    while _refreshers:
        _refreshers.pop().shutdown(wait=True)


def make_service(
    store: Store, providers: list, *, allow_demo: bool = True, near_seconds: int = 0, **overrides
) -> StockService:
    settings = Settings(**{"market_hours": "always_open", **overrides})
    kinds = Kinds.from_settings(settings, MarketCalendar.from_settings(settings))
    stores = Stores(store)
    stats = Stats(store.client, stores.trouble)
    refresher = ThreadPoolExecutor(1)
    _refreshers.append(refresher)
    cache = CacheEngine(
        kinds.all(),
        stores,
        stats,
        FillLocks(5, max_hold=30),
        refresher,
        RefreshAhead(fraction=0, hot_reads=3, allowed=lambda: True),
        negative_ttl=60,
        failure_ttl=5,
        wait_timeout=5,
    )
    chain = ProviderChain(providers, allow_demo=allow_demo, idle_reason="no live provider configured")
    return StockService(
        settings=settings,
        kinds=kinds,
        chain=chain,
        demo=DemoProvider(),
        cache=cache,
        stats=stats,
        hot=HotAnswers(near_seconds, local_cache(), local_cache()),
        render=RENDERERS,
    )


@pytest.fixture
def service(store, twelvedata, finnhub) -> StockService:
    return make_service(store, [twelvedata, finnhub])


def test_a_twelvedata_profile_takes_its_market_cap_from_finnhub_in_the_same_fill(
    service, upstream, fixture_body, observer
):
    upstream.get(TD_PROFILE, json=fixture_body("twelvedata-profile-ok"))
    upstream.get(FH_PROFILE, json=fixture_body("finnhub-profile2-ok"))

    first = service.profile(RELIANCE)
    again = service.profile(RELIANCE)

    assert first.source == "twelvedata" and first.value.name.startswith("Reliance")
    assert first.value.market_cap == fixture_body("finnhub-profile2-ok")["marketCapitalization"] * 1_000_000
    assert [(p, e) for p, e, _ in observer.calls] == [
        ("twelvedata", "/profile"),
        ("finnhub", "/stock/profile2"),
    ]
    assert again.cache == "hit" and again.value == first.value


def test_a_finnhub_profile_is_never_completed_from_twelvedata(service, upstream, fixture_body, observer):
    """Twelve Data's profile has no market cap: asking it again would spend 10 credits for nothing."""
    upstream.get(TD_PROFILE, json=fixture_body("twelvedata-error-plan"))
    body = {k: v for k, v in fixture_body("finnhub-profile2-ok").items() if k != "marketCapitalization"}
    upstream.get(FH_PROFILE, json=body)

    answer = service.profile(RELIANCE)

    assert answer.source == "finnhub" and answer.value.market_cap is None
    assert [(p, e) for p, e, _ in observer.calls] == [
        ("twelvedata", "/profile"),
        ("finnhub", "/stock/profile2"),
    ]


def test_an_empty_finnhub_profile_leaves_the_market_cap_null_not_the_profile_missing(
    service, upstream, fixture_body
):
    upstream.get(TD_PROFILE, json=fixture_body("twelvedata-profile-ok"))
    upstream.get(FH_PROFILE, json=fixture_body("finnhub-profile2-unknown"))

    answer = service.profile(RELIANCE)

    assert answer.source == "twelvedata" and answer.value.market_cap is None


def test_every_provider_failing_serves_flagged_demo_data_with_the_reasons(
    service, store, upstream, fixture_body
):
    upstream.get(TD_QUOTE, status=502, body="<html>bad gateway</html>")
    upstream.get(FH_QUOTE, status=502, body="<html>bad gateway</html>")

    answer = service.quote(RELIANCE)

    assert answer.is_demo and answer.source == "demo" and not answer.cached
    assert "twelvedata" in answer.fallback_reason and "finnhub" in answer.fallback_reason
    assert store.client.get("qp:v1:quote:NSE:RELIANCE") is None, "demo data is never cached as real"
    service.stats.flush()
    assert service.stats.snapshot()[0][DEMO_SERVED] == 1


def test_a_forced_provider_that_fails_is_a_503_not_demo(store, twelvedata, upstream):
    upstream.get(TD_QUOTE, status=502, body="<html>bad gateway</html>")
    service = make_service(store, [twelvedata], allow_demo=False)

    with pytest.raises(ProvidersExhausted, match="twelvedata"):
        service.quote(RELIANCE)


def test_a_not_found_verdict_is_a_404_cached_for_every_kind(service, upstream, fixture_body, observer):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-error-symbol-not-found"))

    with pytest.raises(SymbolNotFound, match="ZZZZ"):
        service.quote(parse_symbol("ZZZZ"))
    with pytest.raises(SymbolNotFound, match="ZZZZ"):
        service.profile(parse_symbol("zzzz.ns"))

    assert len(observer.calls) == 1, "the verdict is final and cached for the instrument"


def test_a_batch_fetches_each_instrument_once_whatever_its_spellings(service, upstream, fixture_body):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))

    result = service.quotes(["reliance", "RELIANCE.NS", "RELIANCE:NSE", "bad!"])

    assert set(result.quotes) == {"reliance", "RELIANCE.NS", "RELIANCE:NSE"}
    assert {answer.value.price for answer in result.quotes.values()} == {
        result.quotes["reliance"].value.price
    }
    assert set(result.errors) == {"bad!"} and result.total_requested == 4
    assert len(upstream.calls) == 1


def test_hot_answers_skip_the_store_and_keep_their_rendered_body(store, twelvedata, upstream, fixture_body):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], near_seconds=5)
    first = service.quote(RELIANCE)
    store.client.delete("qp:v1:quote:NSE:RELIANCE")  # gone from the store, still hot

    hot = service.quote(RELIANCE)

    assert hot.cache == "hit" and hot.value == first.value and len(upstream.calls) == 1
    assert hot.rendered is first.rendered, "rendered once for the entry, then kept"
    service.stats.flush()
    assert service.stats.snapshot()[0]["cache:hits"] == 1, "a hot hit counts like any hit"


def test_hot_answers_are_never_served_past_their_ttl(store, twelvedata, upstream, fixture_body):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], near_seconds=5, quote_ttl=1)
    service.quote(RELIANCE)
    time.sleep(1.1)

    assert service.quote(RELIANCE).cache == "stale", "past its TTL: from the store, as stale"


def test_an_admin_drop_forgets_the_hot_answer_too(store, twelvedata, upstream, fixture_body):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], near_seconds=5)
    service.quote(RELIANCE)

    service.forget(service.instrument(RELIANCE))

    assert service.quote(RELIANCE).cache == "miss" and len(upstream.calls) == 2


def test_cached_answers_a_held_key_under_any_spelling_and_counts_each_hit(
    store, twelvedata, upstream, fixture_body
):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], near_seconds=5)
    assert service.cached("quote", "RELIANCE") is None, "nothing held yet: the caller goes the whole way"
    filled = service.quote(RELIANCE)

    answers = [service.cached("quote", spelling) for spelling in ("RELIANCE", "reliance", "RELIANCE.NS")]

    assert all(a is not None and a.cache == "hit" and a.value == filled.value for a in answers)
    assert all(a.rendered is filled.rendered for a in answers), "the body rendered at the fill"
    assert len(upstream.calls) == 1
    service.stats.flush()
    assert service.stats.snapshot()[0]["cache:hits"] == 3


@pytest.mark.parametrize(
    ("kind", "spelling", "variant"),
    [
        ("quote", "RELIANCE.BO", ""),  # another instrument
        ("quote", "bad!", ""),  # the full path gives it its 400
        ("history", "RELIANCE", "1mo"),  # another kind
        ("history", "RELIANCE", "bogus"),  # not a period
        ("quote", "RELIANCE", "1mo"),  # quotes have no variant
        ("history", "RELIANCE", ""),  # histories have one
        ("dividends", "RELIANCE", ""),  # not a kind
    ],
)
def test_cached_leaves_everything_else_to_the_full_path(
    store, twelvedata, upstream, fixture_body, kind, spelling, variant
):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], near_seconds=5)
    service.quote(RELIANCE)

    assert service.cached(kind, spelling, variant) is None


def test_cached_never_serves_a_held_answer_past_its_ttl(store, twelvedata, upstream, fixture_body):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], near_seconds=5, quote_ttl=1)
    service.quote(RELIANCE)
    assert service.cached("quote", "RELIANCE") is not None
    time.sleep(1.1)

    assert service.cached("quote", "RELIANCE") is None


def test_a_stale_answer_is_kept_while_its_refresh_runs_and_dropped_when_it_lands(
    store, twelvedata, upstream, fixture_body
):
    refresh_may_answer = threading.Event()
    calls = []

    def quote(request):
        calls.append(request.url)
        if len(calls) > 1:  # the background refresh waits for the test's word
            refresh_may_answer.wait(5)
        return 200, {}, json.dumps(fixture_body("twelvedata-quote-ok"))

    upstream.add_callback(responses.GET, TD_QUOTE, callback=quote)
    service = make_service(store, [twelvedata], near_seconds=5, quote_ttl=1, quote_stale_ttl=60)
    service.quote(RELIANCE)
    time.sleep(1.1)

    from_store = service.quote(RELIANCE)  # stale: served, and its refresh started
    kept = service.cached("quote", "RELIANCE")

    assert from_store.cache == "stale" and kept is not None and kept.cache == "stale"
    assert kept.value == from_store.value and kept.rendered is from_store.rendered
    service.stats.flush()
    assert service.stats.snapshot()[0]["cache:stale_served"] == 2
    refresh_may_answer.set()
    deadline = time.monotonic() + 3
    while service.cached("quote", "RELIANCE") is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.cached("quote", "RELIANCE") is None, "the refresh landed: the stale copy is gone"
    assert service.quote(RELIANCE).cache == "hit" and len(calls) == 2


def test_a_quote_fetched_after_a_settled_close_stays_fresh_until_the_next_open(
    store, twelvedata, upstream, fixture_body
):
    upstream.get(TD_QUOTE, json=fixture_body("twelvedata-quote-ok"))
    service = make_service(store, [twelvedata], market_hours="always_closed", quote_ttl=1)
    service.quote(RELIANCE)
    time.sleep(1.1)

    again = service.quote(RELIANCE)

    assert again.cache == "hit" and len(upstream.calls) == 1, "no upstream call while closed"
    kept_for = store.client.ttl("qp:v1:quote:NSE:RELIANCE")
    assert kept_for > 6 * 86400, "the store keeps it until the next open, then its stale window"
