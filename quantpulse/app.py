"""The app factory: ``create_app`` builds settings and stores, hands them to ``bootstrap`` (the
composition root: providers, guard, cache, service, built once) and registers the HTTP layer.
Tests pass their own settings and stores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from quantpulse.api import EXTENSION, health, keys, metrics, stocks, streams, usage
from quantpulse.api.cached_hits import CachedHits
from quantpulse.api.client_limits import register_client_limits
from quantpulse.api.cors import BrowserHeaders, register_cors
from quantpulse.api.docs import QuantPulseApi, openapi_settings, register_docs_assets
from quantpulse.api.errors import register_error_handlers
from quantpulse.api.metrics import register_request_metrics
from quantpulse.api.request_log import register_request_log
from quantpulse.bootstrap import build_components
from quantpulse.cli import loading_for_flask_cli, register_cli
from quantpulse.config import Settings
from quantpulse.infra.store import Stores, connect_stores
from quantpulse.logs import configure_logging, log_level_at_least, redact_secrets

__all__ = ["close_streams", "create_app", "flush_counters"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, stores: Stores | None = None) -> Flask:
    """The app, built once per process (gunicorn worker, flask CLI, test) from settings and stores."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    redact_secrets(settings.secrets())
    # For the flask CLI (any command, --help included) the start-up lines are about serving and
    # would clutter the command's stderr: only errors show while the app is built.
    with log_level_at_least(logging.ERROR if loading_for_flask_cli() else logging.NOTSET):
        return build_app(settings, stores or connect_stores(settings))


def build_app(settings: Settings, stores: Stores) -> Flask:
    """Collaborators built once by ``bootstrap``, then the HTTP layer registered around them."""
    app = QuantPulseFlask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length, **openapi_settings())
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = build_components(settings, stores)
    # after_request hooks run in reverse order: the request log and metrics come first so they
    # run last and record the response the client gets (a CORS preflight's 204, not Flask's 200).
    register_request_log(app)
    register_request_metrics(app, app.extensions[EXTENSION].service.stats)
    register_blueprints(app)
    register_error_handlers(app)
    register_request_hygiene(app)
    register_cors(app, settings)
    register_cached_hits(app, settings)
    keys.register_api_keys(app, settings, app.extensions[EXTENSION].keys)
    usage.register_usage(app, app.extensions[EXTENSION].usage)
    register_client_limits(app, settings, stores)
    register_cli(app)
    log.info("QuantPulse ready: mode=%s store=%s", settings.stock_provider, stores.backend)
    return app


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["quote_symbol"] = stocks.QuoteSymbolConverter
    api = QuantPulseApi(app)
    api.register_blueprint(health.blp)
    api.register_blueprint(stocks.blp)
    api.register_blueprint(keys.blp)
    api.register_blueprint(keys.tokens)
    api.register_blueprint(usage.blp)
    register_docs_assets(app)
    app.register_blueprint(metrics.blp)
    app.register_blueprint(streams.blp)


class QuantPulseFlask(Flask):
    """Flask, minus one per-request cost: it asks ``inspect`` whether every hook and view is a
    coroutine on every request (ten times for a quote); the answer never changes."""

    _SYNC_KEPT = 1024  # functions whose answer is remembered (hooks and views are a few dozen)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        sync = self._sync.get(func)
        if sync is None:
            sync = super().ensure_sync(func)
            if len(self._sync) < self._SYNC_KEPT:
                self._sync[func] = sync
        return sync


def close_streams(app: Flask) -> None:
    """The worker is stopping: end its live streams now, so their clients reconnect to a
    worker that stays (gunicorn.conf.py calls this as soon as the worker is told to stop)."""
    app.extensions[EXTENSION].streams.hub.close_all()


def flush_counters(app: Flask) -> None:
    """The worker is going: what it counted since the last flush (statistics, usage) is written
    now rather than lost (gunicorn.conf.py calls this from ``worker_exit``)."""
    parts = app.extensions[EXTENSION]
    parts.service.stats.flush()
    if parts.usage is not None:
        parts.usage.flush()


def register_cached_hits(app: Flask, settings: Settings) -> None:
    """Fresh cached answers served before Flask (``api/cached_hits.py``); with client rate
    limits configured every request goes through Flask-Limiter instead, and with
    ``API_KEYS=required`` through the key check."""
    if not settings.rate_limit and settings.api_keys != "required":
        parts = app.extensions[EXTENSION]
        app.wsgi_app = CachedHits(  # type: ignore[method-assign]
            app, parts.service, BrowserHeaders(app, settings), parts.usage
        )


def register_request_hygiene(app: Flask) -> None:
    """Contract rules that hold for every route, whether or not a view reads the body."""

    @app.before_request
    def refuse_oversize_body() -> None:
        """Werkzeug only enforces MAX_CONTENT_LENGTH when a body is read; docs/api.md wants 413 always."""
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise RequestEntityTooLarge()

    @app.after_request
    def no_html_options(response: Response) -> Response:
        """Flask's automatic OPTIONS answer is an empty text/html 200; send 204 with no body."""
        if request.method == "OPTIONS" and not response.get_data():
            response.status_code = 204
            del response.headers["Content-Type"]
        return response
