"""The Flask side of the error taxonomy: every error, ours or the framework's, in one envelope."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from quantpulse.errors import QuantPulseError, error_body

log = logging.getLogger(__name__)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(QuantPulseError, handle_quantpulse_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(redis.RedisError, handle_store_error)
    app.register_error_handler(Exception, handle_unexpected)


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


def handle_store_error(error: redis.RedisError) -> Response:
    """A route that has nothing to serve without the shared store (keys, usage): a 503 to retry,
    not a 500 (data routes never get here: they fall back to the worker's own store)."""
    log.warning("shared store refused a request it is needed for: %s", type(error).__name__)
    return error_response(
        503,
        "Service unavailable",
        "The shared store did not answer; try again shortly.",
        headers={"Retry-After": "5"},
    )


def handle_unexpected(error: Exception) -> Response:
    """Last resort: log the traceback, send the envelope without it."""
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error")
    return error_response(500, "Internal error", "An unexpected error occurred.")
