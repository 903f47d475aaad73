"""The one error taxonomy and the one JSON envelope every error is rendered in.

``{"detail": {"error": <title>, "message": <sentence>, "hint": <optional>}}`` is what the
original front end reads (``detail.message``), for our own errors, Werkzeug's HTTP errors,
validation errors and unexpected exceptions alike.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 30


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
    """No live provider could answer; stale or demo data may still be served instead."""

    def __init__(self, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(
            f"No data source can serve this request right now ({reason}).",
            retry_after=retry_after,
            hint="Try again later.",
        )
        self.reason = reason


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

    def summary(self) -> str:
        scope = f" ({self.scope})" if self.scope else ""
        return f"{self.provider}: {self.kind.value}{scope}"


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
        scope="budget",
    )


def budget_unreachable(provider: str) -> ProviderError:
    """The shared budget cannot be read or charged: a budgeted provider fails closed."""
    return skipped_call(
        provider,
        FailureKind.TRANSIENT,
        "the fleet's credit budget is unreachable",
        retry_after=1,
        scope="budget",
    )


def error_body(title: str, message: str, hint: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"error": title, "message": message}
    if hint:
        detail["hint"] = hint
    return {"detail": detail}


def error_response(
    status: int,
    title: str,
    message: str,
    *,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(title, message, hint))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _http_exception_message(error: HTTPException) -> str:
    """Validation errors from webargs arrive as an HTTPException carrying ``data.messages``."""
    messages = (getattr(error, "data", None) or {}).get("messages")
    if not messages:
        return error.description or error.name
    return "; ".join(_flatten_messages(messages))


def _flatten_messages(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            # webargs nests errors under the location ("query", "json"): not useful to a reader.
            label = prefix if key in {"query", "json", "view_args", "_schema"} else str(key)
            out.extend(_flatten_messages(value, label))
        return out
    if isinstance(messages, list | tuple):
        return [m for item in messages for m in _flatten_messages(item, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def handle_quantpulse_error(error: QuantPulseError) -> Response:
    return error_response(error.status, error.title, error.message, hint=error.hint, headers=error.headers())


def handle_http_exception(error: HTTPException) -> Response:
    """Flask's own 404/405/413 and webargs' validation errors (400), in our envelope."""
    status = error.code or 500
    message, hint = _http_exception_message(error), None
    if status == 429:  # Flask-Limiter's description is the limit itself, e.g. "3 per 1 minute"
        message = f"Too many requests from this client (limit: {message})."
        hint = "Wait the number of seconds in the Retry-After header."
    title = "Bad request" if status == 400 else error.name
    headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
    if status == 405 and "Allow" in headers:
        hint = f"Allowed methods: {headers['Allow']}"
    return error_response(status, title, message, hint=hint, headers=headers)


def handle_unexpected(error: Exception) -> Response:
    """Last resort: log the traceback, send the envelope without it."""
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error")
    return error_response(500, "Internal error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(QuantPulseError, handle_quantpulse_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
