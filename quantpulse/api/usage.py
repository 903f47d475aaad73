"""Usage over HTTP: every answered request counted for its client (``access/usage.py``), a key's
own numbers at ``GET /usage`` and the fleet's at ``GET /admin/usage`` (docs/api.md, "Usage")."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, request
from marshmallow import Schema, ValidationError, fields, validates

from quantpulse.access.keys import KeyStore, Principal
from quantpulse.access.usage import ANONYMOUS, Hit, UsageRecorder, client_of
from quantpulse.api import Blueprint, components
from quantpulse.api.admin import admin_only
from quantpulse.api.status import LIVE_PROVIDERS, hit_rate
from quantpulse.errors import QuantPulseError, RouteNotFound, ServiceUnavailable, Unauthorized
from quantpulse.streaming.hub import label
from quantpulse.symbols import parse_symbol

blp = Blueprint("usage", __name__, description="Usage per client.")

# Flask endpoints by the names usage reports them under; anything else is "other".
USAGE_ENDPOINTS = {
    "stocks.quote": "quote",
    "stocks.historical": "historical",
    "stocks.profile": "profile",
    "stocks.batch": "batch",
    "streams.sse": "stream",
    "streams.websocket": "ws",
    "stocks.status": "status",
    "usage.own_usage": "usage",
}
# Never counted: the platform's probes, scrapes and documents (and preflights).
_UNCOUNTED = frozenset({"health.health", "health.ready", "metrics.metrics", "swagger_ui_asset", "static"})
_UNCOUNTED_BLUEPRINTS = frozenset({"api-docs"})


class DaysSchema(Schema):
    days = fields.Integer(load_default=7)

    @validates("days")
    def within_retention(self, days: int, **_: Any) -> None:
        limit = current_app.extensions["quantpulse"].service.settings.usage_retention_days
        if not 1 <= days <= limit:
            raise ValidationError(f"days must be 1 to {limit} (USAGE_RETENTION_DAYS).")


def recorder() -> UsageRecorder:
    usage = components().usage
    if usage is None:
        raise ServiceUnavailable(
            "Usage needs the shared store, and REDIS_URL is not set.", hint="Set REDIS_URL."
        )
    return usage


@blp.route("/usage")
@blp.arguments(DaysSchema(), location="query")
@blp.response(200)
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(401, description="No API key sent")
@blp.alt_response(404, description="API keys are off on this server")
@blp.alt_response(503, description="No shared store (REDIS_URL unset)")
def own_usage(query: dict[str, Any]) -> dict[str, Any]:
    """The calling key's usage and what is left of its limits."""
    usage = recorder()  # 503 without the shared store
    if components().service.settings.api_keys == "off":
        raise RouteNotFound(
            "Usage is per API key, and API keys are off here.", hint="API_KEYS=off on this server."
        )
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise Unauthorized("Usage is per API key: send yours in X-API-Key.")
    report = _described(usage.report(client_of(principal.key_id), query["days"]), principal)
    return {**report, "limits": _limits_left()}


@blp.route("/admin/usage")
@admin_only
@blp.arguments(DaysSchema(), location="query")
@blp.response(200)
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(401, description="No admin token given")
@blp.alt_response(403, description="Wrong admin token, or ADMIN_TOKEN unset on the server")
@blp.alt_response(503, description="No shared store (REDIS_URL unset)")
def fleet_usage(query: dict[str, Any]) -> dict[str, Any]:
    days = query["days"]
    usage = recorder()
    keys: KeyStore | None = components().keys
    records = {record.id: record for record in keys.list()} if keys else {}
    clients = [client for client in usage.clients(days) if client != ANONYMOUS]
    counts, _, _ = components().service.stats.snapshot()
    return {
        "days": days,
        "keys": [
            {
                "id": record.id,
                "name": record.name,
                "tier": record.tier,
                **usage.report(client_of(record.id), days),
            }
            for record in (records.get(client.removeprefix("key:")) for client in clients)
            if record is not None
        ],
        "anonymous": {"id": None, "name": ANONYMOUS, "tier": None, **usage.report(ANONYMOUS, days)},
        "top_symbols": usage.top_symbols(days),
        "upstream": usage.upstream(days, LIVE_PROVIDERS),
        "cache": {"hit_rate": hit_rate(counts)},
    }


def register_usage(app: Flask, usage: UsageRecorder | None) -> None:
    """Count every answered request for its client, and charge what it spends upstream."""
    if usage is None:
        return

    @app.before_request
    def pay() -> None:
        g.usage_payer = UsageRecorder.start_paying(client_of(_key_id()))

    @app.after_request
    def count(response: Response) -> Response:
        if request.method != "OPTIONS" and not _uncounted():
            endpoint = USAGE_ENDPOINTS.get(request.endpoint or "", "other")
            ok = response.status_code < 300  # a refused request names no instrument worth warming
            usage.record(Hit(client_of(_key_id()), endpoint, response.status_code, _symbol() if ok else None))
        return response

    @app.teardown_request
    def stop_paying(_: BaseException | None) -> None:
        token = g.pop("usage_payer", None)
        if token is not None:
            UsageRecorder.stop_paying(token)


def _key_id() -> str | None:
    principal: Principal | None = g.get("principal")
    return principal.key_id if principal else None


def _uncounted() -> bool:
    return (request.endpoint or "") in _UNCOUNTED or (request.blueprint or "") in _UNCOUNTED_BLUEPRINTS


def _symbol() -> str | None:
    """The instrument a single-symbol route was asked about, as ``RELIANCE:NSE``."""
    raw = (request.view_args or {}).get("symbol")
    if not raw:
        return None
    try:
        return label(components().service.instrument(parse_symbol(raw)))
    except QuantPulseError:
        return None


def _described(report: dict[str, Any], principal: Principal) -> dict[str, Any]:
    return {"id": principal.key_id, "name": principal.name, "tier": principal.tier, **report}


def _limits_left() -> list[dict[str, Any]]:
    """What is left of each of the tier's limits, after this request."""
    limiter = next(iter(current_app.extensions.get("limiter", ())), None)
    if limiter is None:
        return []
    return [
        {"limit": str(limit.limit), "remaining": limit.remaining, "reset": int(limit.reset_at)}
        for limit in limiter.current_limits
    ]
