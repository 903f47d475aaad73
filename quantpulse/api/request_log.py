"""One JSON access-log line per request, with its ``X-Request-ID`` and how the answer was served."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

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
