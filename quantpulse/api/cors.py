"""CORS for browsers: allow-listed origins only, and ``Vary: Origin`` on every answer.

flask-cors decides the headers on the Flask path; the cached-hit path asks the same library,
with the same options, once per origin (``BrowserHeaders``), so the two can never disagree.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_cors import CORS
from flask_cors.core import get_cors_headers, get_cors_options
from werkzeug.datastructures import Headers

from quantpulse.config import Settings

ORIGINS_KEPT = 64  # distinct Origin values whose headers the cached-hit path remembers


def cors_options(settings: Settings) -> dict[str, Any]:
    return {
        "origins": list(settings.allowed_origins),
        "methods": ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        # Request headers: flask-cors allows any (X-API-Key, Last-Event-ID among them).
        "expose_headers": [
            "Retry-After",
            "X-Request-ID",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ],
        "always_send": False,
        "vary_header": False,  # ours says it once, for every answer
    }


def register_cors(app: Flask, settings: Settings) -> None:
    """flask-cors for requests from browsers; ``Vary: Origin`` always, for shared caches."""
    CORS(app, **cors_options(settings))
    # flask-cors matches its resources on every response, a good part of a cached hit; without an
    # Origin header (no browser) it would add nothing anyway.
    flask_cors_hook = app.after_request_funcs[None].pop()

    @app.after_request
    def cors_for_browsers(response: Response) -> Response:
        if "Origin" in request.headers:
            response = flask_cors_hook(response)
        vary = response.headers.get("Vary")
        if not vary:
            response.headers["Vary"] = "Origin"
        elif "origin" not in (part.strip().lower() for part in vary.split(",")):
            response.headers["Vary"] = f"{vary}, Origin"
        return response


class BrowserHeaders:
    """The CORS headers of a simple GET, by its ``Origin``, as flask-cors would add them."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self._options = get_cors_options(app, cors_options(settings))
        self._by_origin: dict[str | None, list[tuple[str, str]]] = {None: [("Vary", "Origin")]}

    def get(self, origin: str | None) -> list[tuple[str, str]] | None:
        """The headers to add, or ``None`` for an origin not seen before once enough are kept
        (the caller takes the Flask path: any number of made-up origins costs no memory)."""
        headers = self._by_origin.get(origin)
        if headers is None and len(self._by_origin) < ORIGINS_KEPT:
            cors = get_cors_headers(self._options, Headers({"Origin": origin}), "GET")
            headers = [(name, str(value)) for name, value in cors.items()] + [("Vary", "Origin")]
            self._by_origin[origin] = headers
        return headers
