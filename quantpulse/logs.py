"""Logging: JSON lines, one per request with its id, and API keys kept out of every line.

Keys travel only in headers, so they should never be logged; the redactor is the safety net for
the day a library or an exception message prints one anyway. It works at record creation (a
log-record factory), so it covers every logger and handler, gunicorn's included.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

MASK = "***"
_MIN_SECRET_LENGTH = 6


class _Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._installed = False

    def add(self, secrets: Iterable[str | None]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH)
            if not self._installed:
                self._install()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def _install(self) -> None:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self._scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        self._installed = True

    def _scrub(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))


_redactor = _Redactor()


def redact_secrets(secrets: Iterable[str | None]) -> None:
    """Mask these values in every log record from now on (idempotent, process-wide)."""
    _redactor.add(secrets)


def redact(text: str) -> str:
    """``text`` with every registered secret masked, for output that is not a log record (CLI)."""
    return _redactor.redact(text)


def configure_logging(level: str) -> None:
    """JSON lines on stderr at LOG_LEVEL; a host that set up handlers itself (pytest) keeps them."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def log_level_at_least(level: int) -> Iterator[None]:
    """Hold back lines below ``level`` for the block (the CLI's quiet stderr), then restore."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(max(previous, level))
    try:
        yield
    finally:
        root.setLevel(previous)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, so platform log search can filter on fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
access_log = logging.getLogger("quantpulse.access")


def register_request_log(app: Flask) -> None:
    """``X-Request-ID`` accepted (when sane) or made, returned, and one JSON line per request."""

    @app.before_request
    def start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        fields = {
            "request_id": request_id,
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "path": request.path,
            "symbol": (request.view_args or {}).get("symbol"),
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
            "cache": g.get("cache_result"),
            "source": g.get("source"),
        }
        access_log.info(
            "%s %s %s", request.method, request.path, response.status_code, extra={"fields": fields}
        )
        return response


def note_answer(cache: str | None, source: str | None) -> None:
    """Views tell the request log how the answer was served."""
    g.cache_result, g.source = cache, source
