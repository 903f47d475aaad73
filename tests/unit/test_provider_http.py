"""The HTTP choke point both live providers share: network failures, retry, the gate."""

from __future__ import annotations

import pytest
import requests

from quantpulse.errors import FailureKind, ProviderError
from quantpulse.symbols import Instrument

RELIANCE = Instrument("RELIANCE", "NSE")
PROFILE_URLS = {"twelvedata": "https://td.test/profile", "finnhub": "https://fh.test/stock/profile2"}


@pytest.mark.parametrize("provider_name", ["twelvedata", "finnhub"])
@pytest.mark.parametrize(
    "failure",
    [requests.ConnectionError("connection refused"), requests.ConnectTimeout(), requests.ReadTimeout()],
    ids=["connection-error", "connect-timeout", "read-timeout"],
)
def test_network_failures_are_transient_and_retried_once(request, upstream, observer, provider_name, failure):
    provider = request.getfixturevalue(provider_name)
    url = PROFILE_URLS[provider_name]
    upstream.get(url, body=failure)

    with pytest.raises(ProviderError, match=type(failure).__name__) as excinfo:
        provider.profile(RELIANCE)

    assert excinfo.value.kind is FailureKind.TRANSIENT
    assert len(upstream.calls) == 2
    endpoint = url.removeprefix("https://td.test").removeprefix("https://fh.test")
    assert observer.outcomes == [(provider_name, endpoint, FailureKind.TRANSIENT)] * 2
    assert len(observer.admitted) == 2, "each attempt is admitted (and paid for) separately"


@pytest.mark.parametrize("provider_name", ["twelvedata", "finnhub"])
def test_a_call_the_gate_refuses_is_never_sent(request, upstream, observer, provider_name):
    provider = request.getfixturevalue(provider_name)
    refusal = ProviderError("skipped", provider=provider_name, kind=FailureKind.RATE_LIMITED, scope="budget")

    def refuse(*args, **kwargs):
        raise refusal

    observer.admit = refuse

    with pytest.raises(ProviderError) as excinfo:
        provider.profile(RELIANCE)

    assert excinfo.value is refusal
    assert len(upstream.calls) == 0 and observer.calls == []
