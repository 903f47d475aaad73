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
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

MASK = "***"
WRITE_INTERVAL = 0.05  # seconds a log line may wait before it is written
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
        # Our lines say none of these; each costs a lookup per record (the logging HOWTO's
        # "Optimization" section): the caller's file and line, thread, process.
        logging._srcfile = None  # type: ignore[attr-defined]
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        lines = BatchedLines(sys.stderr, JsonFormatter())
        root.addHandler(lines)
        atexit.register(lines.stop)  # what is still pending at exit is written, not lost
        # A forked child (gunicorn --preload) inherits the pending lines but not the thread
        # that writes them: it starts afresh.
        os.register_at_fork(after_in_child=lines.start)
    root.setLevel(level)


class BatchedLines(logging.Handler):
    """Records are gathered from any thread without waking anyone; a writer thread formats
    what has gathered every ``interval`` and writes it in one call.

    Formatting a JSON line in the request's own thread cost a tenth of a cached hit; handing
    each record to a queue instead still woke the writer, and wrote, once per request. A line
    may now wait up to ``interval`` before it shows.
    """

    def __init__(
        self, stream: TextIO, formatter: logging.Formatter, interval: float = WRITE_INTERVAL
    ) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self._stream = stream
        self._interval = interval
        self._pending: deque[logging.LogRecord] = deque()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Only gathered here (a deque append needs no lock); filters and format come later."""
        self._pending.append(record)
        return True

    def start(self) -> None:
        """Start the writer (again in a forked child, whose copy of the pending lines is the
        parent's to write)."""
        self._pending = deque()
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout=2)
        self.write_pending()

    def write_pending(self) -> None:
        """Format and write what has gathered; a record that cannot be formatted is reported as
        logging reports handler errors (``handleError``) and skipped, never a reason to stop."""
        lines = []
        while True:
            try:
                record = self._pending.popleft()
            except IndexError:  # empty (``stop`` and the writer may both be draining)
                break
            try:
                if self.filter(record):
                    lines.append(f"{self.format(record)}\n")
            except Exception:
                self.handleError(record)
        if lines:
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError):  # the stream is closed (interpreter exit): nowhere to say it
                return

    def _write_forever(self) -> None:
        while not self._stopping.wait(self._interval):
            self.write_pending()


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
