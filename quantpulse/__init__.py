"""QuantPulse: a market-data backend for NSE/BSE equities with a fleet-wide cache.

``create_app`` is the composition root: settings → store → providers → service, built once
and handed in, so tests can pass their own settings, store or providers.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask, Response, request
from flask_cors import CORS
from flask_smorest import Api
from requests.adapters import HTTPAdapter
from werkzeug.exceptions import RequestEntityTooLarge

from quantpulse.api import EXTENSION, Components, health, stocks
from quantpulse.cache.engine import CacheEngine
from quantpulse.cache.locks import FillLocks
from quantpulse.cache.near import NearCache
from quantpulse.cache.stats import Stats
from quantpulse.cache.store import Stores, connect_stores
from quantpulse.config import Settings
from quantpulse.errors import register_error_handlers
from quantpulse.provider_chain import ProviderChain
from quantpulse.providers.base import Provider, UpstreamObserver
from quantpulse.providers.demo import DemoProvider
from quantpulse.providers.finnhub import Finnhub
from quantpulse.providers.twelvedata import TwelveData
from quantpulse.service import StockService

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, stores: Stores | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        API_TITLE="QuantPulse",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    stores = stores or connect_stores(settings)
    app.extensions[EXTENSION] = Components(service=build_service(settings, stores), stores=stores)
    register_blueprints(app)
    register_error_handlers(app)
    register_request_hygiene(app)
    register_cors(app, settings)
    log.info("QuantPulse ready: mode=%s store=%s", settings.stock_provider, stores.backend)
    return app


def build_service(settings: Settings, stores: Stores) -> StockService:
    stats = Stats(stores.primary.client)
    cache = CacheEngine(
        stores,
        stats,
        FillLocks(settings.lock_ttl),
        ThreadPoolExecutor(2, thread_name_prefix="refresh"),
        NearCache(settings.near_cache_ttl),
        negative_ttl=settings.negative_ttl,
        failure_ttl=settings.failure_ttl,
        wait_timeout=fill_wait_timeout(settings),
    )
    return StockService(
        settings=settings,
        chain=build_chain(settings, stats),
        demo=DemoProvider(),
        cache=cache,
        stats=stats,
    )


def fill_wait_timeout(settings: Settings) -> float:
    """Longest a waiter waits for another worker's fill: two providers, two attempts each."""
    return settings.provider_timeout * 4 + settings.lock_ttl


def build_chain(settings: Settings, observer: UpstreamObserver) -> ProviderChain:
    """The live providers of the configured mode (API.md, "Provider order")."""
    mode = settings.stock_provider
    common = {"timeout": settings.provider_timeout, "observer": observer}
    live: dict[str, Provider] = {}
    if settings.twelvedata_api_key and mode in ("auto", "twelvedata"):
        live["twelvedata"] = TwelveData(
            session=pooled_session(settings.batch_concurrency),
            base_url=settings.twelvedata_base_url,
            api_key=settings.twelvedata_api_key,
            **common,
        )
    if settings.finnhub_api_key and mode in ("auto", "finnhub"):
        live["finnhub"] = Finnhub(
            session=pooled_session(settings.batch_concurrency),
            base_url=settings.finnhub_base_url,
            api_key=settings.finnhub_api_key,
            executor=ThreadPoolExecutor(settings.batch_concurrency, thread_name_prefix="finnhub"),
            **common,
        )
    idle_reason = {
        "auto": "no live provider configured",
        "demo": "STOCK_PROVIDER=demo",
    }.get(mode, f"{mode} is not configured (set {mode.upper()}_API_KEY)")
    return ProviderChain(live.values(), allow_demo=mode in ("auto", "demo"), idle_reason=idle_reason)


def pooled_session(pool_size: int) -> requests.Session:
    """Keep-alive connections to a provider, enough for one batch fanned out in parallel."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["quote_symbol"] = stocks.QuoteSymbolConverter
    api = Api(app)
    api.register_blueprint(health.blp)
    api.register_blueprint(stocks.blp)


def register_request_hygiene(app: Flask) -> None:
    """Contract rules that hold for every route, whether or not a view reads the body."""

    @app.before_request
    def refuse_oversize_body() -> None:
        """Werkzeug only enforces MAX_CONTENT_LENGTH when a body is read; API.md wants 413 always."""
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


def register_cors(app: Flask, settings: Settings) -> None:
    """Allow-listed origins only; no Origin header means no CORS headers at all."""
    CORS(
        app,
        origins=list(settings.allowed_origins),
        methods=["GET", "POST", "DELETE", "OPTIONS"],
        expose_headers=["Retry-After"],
        always_send=False,
    )

    @app.after_request
    def vary_on_origin(response: Response) -> Response:
        """Shared HTTP caches must key on Origin, allowed or not."""
        response.vary.add("Origin")
        return response


def configure_logging(level: str) -> None:
    """Honour LOG_LEVEL; leave handlers alone when a host (gunicorn, pytest) set them up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
