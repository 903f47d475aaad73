"""The process's background threads: each started on first use (after gunicorn has forked, so
every worker has its own) and started again if it ever died."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Background:
    """One daemon thread running ``run``, at most one at a time."""

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self._name = name
        self._run = run
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def ensure(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()


def every(seconds: float, action: Callable[[], object], what: str) -> Callable[[], None]:
    """A loop running ``action`` every ``seconds``, forever: a failure is logged, never the end
    of it (a dead flusher or renewer would silently stop its work)."""

    def run() -> None:
        while True:
            time.sleep(seconds)
            try:
                action()
            except Exception:
                log.exception("%s failed", what)

    return run
