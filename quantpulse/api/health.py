"""Liveness (no I/O, for the platform's health check) and readiness (the store answers)."""

from __future__ import annotations

from typing import Any

from quantpulse.api import Blueprint, components
from quantpulse.cache.store import store_problem

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness.")


@blp.route("")
def health() -> dict[str, Any]:
    return {"status": "ok", "service": "quantpulse-backend"}


@blp.route("/ready")
def ready() -> tuple[dict[str, Any], int]:
    store = components().store
    problem = store_problem(store)
    if problem is None:
        return {"status": "ready", "backend": store.backend, "reason": None}, 200
    return {"status": "degraded", "backend": store.backend, "reason": problem}, 503
