"""Provider order, verdicts and fallback reasons, with in-memory fake providers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from quantpulse.errors import FailureKind, ProviderError, SymbolNotFound
from quantpulse.service.chain import ProviderChain, ProvidersExhausted
from quantpulse.symbols import Instrument

RELIANCE = Instrument("RELIANCE", "NSE")
TCS = Instrument("TCS", "NSE")


class ScriptedProvider:
    """Answers each instrument with a scripted value or error, and records what it was asked."""

    def __init__(self, name: str, answers: dict[Instrument, object]) -> None:
        self.name = name
        self.answers = answers
        self.asked: list[list[Instrument]] = []

    def quotes(self, instruments: Sequence[Instrument]) -> dict[Instrument, object]:
        self.asked.append(list(instruments))
        return {i: self.answers[i] for i in instruments}


def failure(provider: str, kind: FailureKind, retry_after: int | None = None) -> ProviderError:
    return ProviderError("boom", provider=provider, kind=kind, retry_after=retry_after)


def fetch(chain: ProviderChain, *instruments: Instrument) -> dict:
    return chain.fetch(list(instruments), lambda provider, pending: provider.quotes(pending))


def test_first_provider_answer_wins_without_a_fallback_reason():
    primary = ScriptedProvider("twelvedata", {RELIANCE: "price"})
    fallback = ScriptedProvider("finnhub", {})

    result = fetch(ProviderChain([primary, fallback], allow_demo=True, idle_reason="-"), RELIANCE)

    assert result[RELIANCE].value == "price"
    assert result[RELIANCE].source == "twelvedata"
    assert result[RELIANCE].fallback_reason is None
    assert fallback.asked == []


def test_non_verdict_failures_move_on_and_are_named_in_the_reason():
    primary = ScriptedProvider(
        "twelvedata", {RELIANCE: failure("twelvedata", FailureKind.PLAN), TCS: "tcs price"}
    )
    fallback = ScriptedProvider("finnhub", {RELIANCE: "reliance price"})

    result = fetch(ProviderChain([primary, fallback], allow_demo=True, idle_reason="-"), RELIANCE, TCS)

    assert fallback.asked == [[RELIANCE]]
    assert result[RELIANCE].source == "finnhub"
    assert result[RELIANCE].fallback_reason == "twelvedata: plan"
    assert result[TCS].source == "twelvedata"


def test_not_found_is_a_verdict_and_nobody_else_is_asked():
    primary = ScriptedProvider("twelvedata", {RELIANCE: failure("twelvedata", FailureKind.NOT_FOUND)})
    fallback = ScriptedProvider("finnhub", {RELIANCE: "price"})

    result = fetch(ProviderChain([primary, fallback], allow_demo=True, idle_reason="-"), RELIANCE)

    assert isinstance(result[RELIANCE], SymbolNotFound)
    assert fallback.asked == []


def test_exhausted_chain_reports_every_failure_and_the_soonest_retry():
    primary = ScriptedProvider("twelvedata", {RELIANCE: failure("twelvedata", FailureKind.RATE_LIMITED, 40)})
    fallback = ScriptedProvider("finnhub", {RELIANCE: failure("finnhub", FailureKind.RATE_LIMITED, 12)})

    result = fetch(ProviderChain([primary, fallback], allow_demo=False, idle_reason="-"), RELIANCE)

    error = result[RELIANCE]
    assert isinstance(error, ProvidersExhausted)
    assert error.reason == "twelvedata: rate_limited; finnhub: rate_limited"
    assert error.headers() == {"Retry-After": "12"}


@pytest.mark.parametrize("allow_demo", [True, False])
def test_empty_chain_says_why_nothing_was_asked(allow_demo):
    chain = ProviderChain([], allow_demo=allow_demo, idle_reason="no live provider configured")

    error = fetch(chain, RELIANCE)[RELIANCE]

    assert isinstance(error, ProvidersExhausted)
    assert error.reason == "no live provider configured"
    assert chain.allow_demo is allow_demo
