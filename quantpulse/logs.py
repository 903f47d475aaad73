"""Logging set-up, and the filter that keeps API keys and tokens out of every log line.

Keys travel only in headers, so they should never be logged; the redactor is the safety net for
the day a library or an exception message prints one anyway. It works at record creation (a
log-record factory), so it covers every logger and handler, gunicorn's included.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

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


def configure_logging(level: str) -> None:
    """Honour LOG_LEVEL; leave handlers alone when a host (gunicorn, pytest) set them up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
