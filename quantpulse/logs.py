"""Logging: JSON lines, and API keys kept out of every line (the request log is api/request_log.py).

Keys travel only in headers, so they should never be logged; the redactor is the safety net for
the day a library or an exception message prints one anyway. It works at record creation (a
log-record factory), so it covers every logger and handler, gunicorn's included.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
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


def redact(text: str) -> str:
    """``text`` with every registered secret masked, for output that is not a log record (CLI)."""
    return _redactor.redact(text)


def configure_logging(level: str) -> None:
    """JSON lines on stderr at LOG_LEVEL; a host that set up handlers itself (pytest) keeps them.

    Lines are formatted and written by a listener thread, not by the request's own: a request
    only hands its record to a queue (formatting a JSON line cost a tenth of a cached hit).
    """
    root = logging.getLogger()
    if not root.handlers:
        sink = logging.StreamHandler()
        sink.setFormatter(JsonFormatter())
        lines = _QueuedLines(sink)
        root.addHandler(lines.handler)
        atexit.register(lines.stop)  # what is still queued at exit is written, not lost
        # A forked child (gunicorn --preload) inherits neither the listener's thread nor a queue
        # it can trust (the thread may have held its lock): it starts both afresh.
        os.register_at_fork(after_in_child=lines.start)
    root.setLevel(level)


class _HandOver(QueueHandler):
    """Queues the record as it is: the listener, in this same process, formats it."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _QueuedLines:
    """A queue that request threads hand records to, and the thread that writes them out."""

    def __init__(self, sink: logging.Handler) -> None:
        self._sink = sink
        self.handler = _HandOver(queue.SimpleQueue())
        self._listener: QueueListener | None = None
        self.start()

    def start(self) -> None:
        self.handler.queue = queue.SimpleQueue()
        self._listener = QueueListener(self.handler.queue, self._sink)
        self._listener.start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


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
