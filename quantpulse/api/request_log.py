"""One JSON access-log line per request, with its ``X-Request-ID`` and how the answer was served."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time

from flask import Flask, Response, g, request

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
access_log = logging.getLogger("quantpulse.access")


class _RequestIds:
    """Unique ids without a syscall per request: a random prefix per process, then a counter.

    (``uuid4`` reads the OS's random source every time, a measurable part of a cached hit.)
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():  # a forked worker must not repeat its parent's ids
            self._pid, self._prefix = os.getpid(), secrets.token_hex(8)
        return f"{self._prefix}{next(self._counter):016x}"  # 32 hex digits, as uuid4().hex


_ids = _RequestIds()


def elapsed() -> float:
    """Seconds from this request's start to its answer (its log line and its latency metric
    agree); for a WebSocket, to the handshake, not to the end of the session (``answered``)."""
    return g.get("answered_at", time.perf_counter()) - g.get("started", time.perf_counter())


def answered() -> None:
    """The answer went out now, though the view goes on (a WebSocket session)."""
    g.answered_at = time.perf_counter()


def request_id(given: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a new one."""
    return given if given and _REQUEST_ID.fullmatch(given) else _ids.next()


def register_request_log(app: Flask) -> None:
    """``X-Request-ID`` accepted (when sane) or made, returned, and one JSON line per request."""

    @app.before_request
    def start() -> None:
        g.request_id = request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        rid = g.get("request_id") or _ids.next()
        response.headers["X-Request-ID"] = rid
        log_request(
            request_id=rid,
            method=request.method,
            route=request.url_rule.rule if request.url_rule else None,
            path=request.path,
            symbol=(request.view_args or {}).get("symbol"),
            status=response.status_code,
            seconds=elapsed(),
            cache=g.get("cache_result"),
            source=g.get("source"),
        )
        return response


def log_request(
    *,
    request_id: str,
    method: str,
    route: str | None,
    path: str,
    symbol: str | None,
    status: int,
    seconds: float,
    cache: str | None,
    source: str | None,
) -> None:
    """The request's access-log line (for the Flask path and the cached-hit path alike)."""
    if access_log.isEnabledFor(logging.INFO):
        fields = {
            "request_id": request_id,
            "method": method,
            "route": route,
            "path": path,
            "symbol": symbol,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "cache": cache,
            "source": source,
        }
        access_log.info("%s %s %s", method, path, status, extra={"fields": fields})


def note_answer(cache: str | None, source: str | None) -> None:
    """Views tell the request log how the answer was served."""
    g.cache_result, g.source = cache, source
