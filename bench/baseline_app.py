"""The throughput baselines, served like QuantPulse (``gunicorn -w 4 'bench.baseline_app:...'``
with the same ``gunicorn.conf.py``: gevent workers, same ``worker_connections``).

``create_app``: a bare Flask app doing one Redis GET per request, nothing else. It answers the
quote, history and profile routes with the raw JSON QuantPulse cached for that key, so both send
a payload of about the same size. ``create_constant_app``: Flask answering a constant JSON body,
no I/O at all: the framework's ceiling.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, request

# About the size of a quote body.
_CONSTANT = (
    b'{"symbol":"RELIANCE","exchange":"NSE","isDemoData":false,"service_info":{"source":"twelvedata",'
    b'"cached":true,"cache":"hit","age_seconds":0.4,"stale":false,"fallback_reason":null},'
    b'"companyName":"Reliance Industries Ltd","marketState":"OPEN","currency":"INR",'
    b'"currentPrice":1439.2,"previousClose":1422.13,"change":17.07,"changePercent":1.2,'
    b'"open":1448.94,"high":1456.91,"low":1432.6,"volume":8538407,"volumeFormatted":"8.54M",'
    b'"timestamp":"2026-11-24T12:27:46Z","lastTradeAt":"2026-11-24T09:59:00Z"}\n'
)


def create_app() -> Flask:
    """Built in each worker after the fork (gunicorn's ``module:create_app()`` form)."""
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    def cached(key: str) -> Response:
        blob = client.get(key)
        if blob is None:
            return Response('{"detail": "not cached"}', status=404, mimetype="application/json")
        return Response(blob, mimetype="application/json")

    @app.get("/stock/<symbol>")
    def quote(symbol: str) -> Response:
        return cached(f"qp:v1:quote:NSE:{symbol.upper()}")

    @app.get("/stock/<symbol>/historical")
    def historical(symbol: str) -> Response:
        return cached(f"qp:v1:history:NSE:{symbol.upper()}:{request.args.get('period', '1mo')}")

    @app.get("/stock/<symbol>/profile")
    def profile(symbol: str) -> Response:
        return cached(f"qp:v1:profile:NSE:{symbol.upper()}")

    @app.get("/health")
    def health() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app


def create_constant_app() -> Flask:
    """Flask and nothing else: every route answers the same JSON body, with no I/O."""
    app = Flask(__name__)

    @app.get("/stock/<path:anything>")
    def constant(anything: str) -> Response:
        return Response(_CONSTANT, mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app
