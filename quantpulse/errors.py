"""The one error taxonomy and the one JSON envelope every error is rendered in.

``{"detail": {"error": <title>, "message": <sentence>, "hint": <optional>}}`` is what the
original front end reads (``detail.message``), for our own errors, Werkzeug's HTTP errors,
validation errors and unexpected exceptions alike. Every layer raises these; only the HTTP layer
(``api/errors.py``) renders them, so nothing here knows Flask.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

DEFAULT_RETRY_AFTER = 30
BUDGET_SCOPE = "budget"  # a call the fleet's credit budget did not allow (or could not check)


class QuantPulseError(Exception):
    """Base of every expected failure: carries its HTTP status, title and hint."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def headers(self) -> dict[str, str]:
        return {}


class ConfigurationError(QuantPulseError):
    """A setting that makes the service unable to start."""

    title = "Configuration error"


class BadRequest(QuantPulseError):
    status = 400
    title = "Bad request"


class InvalidSymbol(BadRequest):
    title = "Invalid symbol"


class Unauthorized(QuantPulseError):
    status = 401
    title = "Unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(QuantPulseError):
    status = 403
    title = "Forbidden"


class RouteNotFound(QuantPulseError):
    """A route that exists only in some configurations (``/usage`` with API keys off)."""

    status = 404
    title = "Not Found"


class SymbolNotFound(QuantPulseError):
    """A live provider's verdict that the instrument does not exist."""

    status = 404
    title = "Symbol not found"

    @classmethod
    def of(cls, instrument: Any) -> SymbolNotFound:
        return cls(
            f"No listing found for {instrument.ticker} on {instrument.exchange}.",
            hint="Check the ticker; use .BO or :BSE for a BSE listing.",
        )


class TooManyStreams(QuantPulseError):
    """A client already holds ``STREAM_MAX_PER_CLIENT`` live-quote streams, fleet-wide."""

    status = 429
    title = "Too many streams"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class ServiceUnavailable(QuantPulseError):
    """Nothing fresh, stale or allowed demo can be served right now."""

    status = 503
    title = "Service unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after or DEFAULT_RETRY_AFTER

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ProvidersExhausted(ServiceUnavailable):
    """No live provider could answer; stale or demo data may still be served instead.

    ``reason`` is the text operators read; ``fallbacks`` say the same as data, for code.
    """

    def __init__(
        self, reason: str, *, retry_after: int | None = None, fallbacks: tuple[Fallback, ...] = ()
    ) -> None:
        super().__init__(
            f"No data source can serve this request right now ({reason}).",
            retry_after=retry_after,
            hint="Try again later.",
        )
        self.reason = reason
        self.fallbacks = fallbacks


class FailureKind(enum.StrEnum):
    """How an upstream call failed; decides retry, fallback and (later) cooldowns."""

    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    PLAN = "plan"
    AUTH = "auth"
    TRANSIENT = "transient"


class ProviderError(QuantPulseError):
    """An upstream failure, classified once at the provider's HTTP choke point."""

    status = 503
    title = "Upstream provider failed"
    kind: FailureKind

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: FailureKind,
        retry_after: int | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.kind = kind
        self.retry_after = retry_after
        self.scope = scope

    @property
    def is_verdict(self) -> bool:
        """A not-found answer is final: no other provider is asked."""
        return self.kind is FailureKind.NOT_FOUND

    @property
    def is_transient(self) -> bool:
        return self.kind is FailureKind.TRANSIENT

    @property
    def fallback(self) -> Fallback:
        return Fallback(self.provider, self.kind, self.scope)


@dataclass(frozen=True)
class Fallback:
    """Why one provider did not answer: it failed, or we chose not to call it (``scope``)."""

    provider: str
    kind: FailureKind
    scope: str | None = None

    def __str__(self) -> str:
        scope = f" ({self.scope})" if self.scope else ""
        return f"{self.provider}: {self.kind.value}{scope}"

    @property
    def budget_refused(self) -> bool:
        """The fleet's credit budget, not the provider, stopped this call."""
        return self.scope == BUDGET_SCOPE


def skipped_call(
    provider: str, kind: FailureKind, reason: str, *, retry_after: int | None = None, scope: str = "skipped"
) -> ProviderError:
    """A call we chose not to send (cooldown, disabled, budget), in the upstream failure taxonomy."""
    return ProviderError(
        f"{provider} skipped: {reason}", provider=provider, kind=kind, retry_after=retry_after, scope=scope
    )


def over_budget(provider: str, retry_after: int | None) -> ProviderError:
    return skipped_call(
        provider,
        FailureKind.RATE_LIMITED,
        "the fleet's credit budget is spent",
        retry_after=retry_after,
        scope=BUDGET_SCOPE,
    )


def budget_unreachable(provider: str) -> ProviderError:
    """The shared budget cannot be read or charged: a budgeted provider fails closed."""
    return skipped_call(
        provider,
        FailureKind.TRANSIENT,
        "the fleet's credit budget is unreachable",
        retry_after=1,
        scope=BUDGET_SCOPE,
    )


def error_body(title: str, message: str, hint: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"error": title, "message": message}
    if hint:
        detail["hint"] = hint
    return {"detail": detail}
