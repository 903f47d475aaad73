"""HTTP layer: blueprints that parse input, call the service once and dump the answer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from quantpulse.cache.store import Store
from quantpulse.service import StockService

EXTENSION = "quantpulse"


@dataclass(frozen=True)
class Components:
    """What the app factory built, kept in ``app.extensions`` for the views."""

    service: StockService
    store: Store


def components() -> Components:
    return current_app.extensions[EXTENSION]


def current_service() -> StockService:
    return components().service
