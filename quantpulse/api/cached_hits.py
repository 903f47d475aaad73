"""Cached hits answered before Flask: the most frequent request, at a fraction of its cost.

A cached quote is a few dictionary reads and a byte splice; Flask's request and response
objects, URL matching and hooks cost several times that. So the plain cases of the three hot
routes (``GET /stock/<symbol>``, ``/historical``, ``/profile``) are answered here when this
worker holds a fresh answer for them (``StockService.cached``), and everything else (misses,
stale entries, bad input, other methods, a request body, rate limits) goes to Flask unchanged.

A hit answered here keeps every contract of the Flask path: the same body bytes, the same
headers (``X-Request-ID``, CORS, ``Vary``), one access-log line, the request metrics and the
hit statistics. ``tests/integration/test_cached_hits.py`` holds the two paths equal.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from flask import Flask

from quantpulse.access.usage import ANONYMOUS, Hit, UsageRecorder
from quantpulse.api.cors import BrowserHeaders
from quantpulse.api.rendering import JSON, body
from quantpulse.api.request_log import log_request, request_id
from quantpulse.api.usage import USAGE_ENDPOINTS
from quantpulse.periods import DEFAULT_PERIOD
from quantpulse.service import Answer, StockService
from quantpulse.streaming.hub import label

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PATH = re.compile(r"/stock/(?P<symbol>[^/]+?)(?:/(?P<view>historical|profile))?")
_PERIOD = re.compile(r"period=(?P<name>[a-z0-9]+)")
_KINDS = {None: "quote", "historical": "history", "profile": "profile"}
PATHS_KEPT = 4096  # request paths matched to a route, per worker
LONGEST_PATH = 64  # longer paths (no symbol is that long) are Flask's to judge
LONGEST_QUERY = 32
# Headers only Flask judges: one whose answer the kept CORS headers do not cover (flask-cors
# reads it too), and a client's API key (checked, and counted, there).
_FLASK_ONLY_HEADERS = frozenset({"HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK", "HTTP_X_API_KEY"})


class Route(NamedTuple):
    """A path the cached-hit path may answer: which view, and what to look up."""

    endpoint: str
    rule: str
    kind: str
    symbol: str


class CachedHits:
    """WSGI middleware in front of Flask (``app.wsgi_app``)."""

    def __init__(
        self, app: Flask, service: StockService, browsers: BrowserHeaders, usage: UsageRecorder | None = None
    ) -> None:
        """``usage``: where anonymous hits are counted per day (with the shared store)."""
        self.app: Wsgi = app.wsgi_app  # what answers everything else (Flask)
        self._service = service
        self._browsers = browsers
        self._usage = usage
        self._rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
        self._routes = functools.lru_cache(maxsize=PATHS_KEPT)(self._route)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        held = self._held(environ)
        if held is None:
            return self.app(environ, start_response)
        route, cors, answer = held
        content = body(answer, route.kind)
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        start_response(
            "200 OK",
            [
                ("Content-Type", JSON),
                ("Content-Length", str(len(content))),
                ("X-Request-ID", rid),
                *cors,
            ],
        )
        seconds = time.perf_counter() - started
        log_request(
            request_id=rid,
            method="GET",
            route=route.rule,
            path=environ["PATH_INFO"],
            symbol=route.symbol,
            status=200,
            seconds=seconds,
            cache=answer.cache,
            source=answer.source,
        )
        self._service.stats.request(route.endpoint, 200, seconds)
        if self._usage is not None:
            self._usage.record(Hit(ANONYMOUS, USAGE_ENDPOINTS[route.endpoint], 200, label(answer.instrument)))
        return [content]

    def _held(self, environ: dict[str, Any]) -> tuple[Route, list[tuple[str, str]], Answer[Any]] | None:
        """What a plain request to a hot view needs (its route, CORS headers and the answer this
        worker holds), or ``None``. The answer is asked for last: asking counts it as served."""
        route = self._plain_route(environ)
        cors = None if route is None else self._browsers.get(environ.get("HTTP_ORIGIN"))
        if route is None or cors is None:
            return None
        variant = _variant(route, environ.get("QUERY_STRING", ""))
        answer = None if variant is None else self._service.cached(route.kind, route.symbol, variant)
        return None if answer is None else (route, cors, answer)

    def _plain_route(self, environ: dict[str, Any]) -> Route | None:
        """The route of a body-less GET to a hot view; ``None`` for anything Flask must judge."""
        path = environ["PATH_INFO"]
        if (
            environ["REQUEST_METHOD"] != "GET"
            or environ.get("CONTENT_LENGTH")
            or len(path) > LONGEST_PATH
            or not _FLASK_ONLY_HEADERS.isdisjoint(environ)
        ):
            return None
        return self._routes(path)

    def _route(self, path: str) -> Route | None:
        match = _PATH.fullmatch(path) if path.isascii() else None
        if match is None or match["symbol"] == "quotes":
            return None
        view = match["view"]
        endpoint = f"stocks.{'quote' if view is None else view}"
        return Route(endpoint, self._rules[endpoint], _KINDS[view], match["symbol"])


def _variant(route: Route, query: str) -> str | None:
    """The history period a plain query names (the default without one); ``""`` for the other
    views, which read no query; ``None`` when the query needs Flask's parser."""
    if route.kind != "history":
        return ""
    if not query:
        return DEFAULT_PERIOD
    period = _PERIOD.fullmatch(query) if len(query) <= LONGEST_QUERY else None
    return period["name"] if period else None
