"""The throughput baseline: a bare Flask app doing one Redis GET per request, nothing else.

Served like QuantPulse (``gunicorn -w 4 'bench.baseline_app:create_app()'`` from the repository
root, so the same ``gunicorn.conf.py``: gthread workers, same threads). It answers
``GET /stock/<symbol>`` with the raw JSON QuantPulse cached for that quote, so both send a
payload of about the same size.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response


def create_app() -> Flask:
    """Built in each worker after the fork (gunicorn's ``module:create_app()`` form)."""
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    @app.get("/stock/<symbol>")
    def quote(symbol: str) -> Response:
        blob = client.get(f"qp:v1:quote:NSE:{symbol.upper()}")
        if blob is None:
            return Response('{"detail": "not cached"}', status=404, mimetype="application/json")
        return Response(blob, mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app
