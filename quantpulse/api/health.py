"""Liveness (no I/O, for the platform's health check) and readiness (the store answers)."""

from __future__ import annotations

from typing import Any

from quantpulse.api import Blueprint, components
from quantpulse.api.schemas import HealthSchema, ReadySchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness.")


@blp.route("")
@blp.response(200, HealthSchema)
def health() -> dict[str, Any]:
    return {"status": "ok", "service": "quantpulse-backend"}


@blp.route("/ready")
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="The store does not answer")
def ready() -> tuple[dict[str, Any], int]:
    stores = components().stores
    problem = stores.problem()
    if problem is None:
        return {"status": "ready", "backend": stores.backend, "reason": None}, 200
    return {"status": "degraded", "backend": stores.backend, "reason": problem}, 503
