"""HTTP layer: blueprints that parse input, call the service once and dump the answer."""

from __future__ import annotations

from dataclasses import dataclass

import flask_smorest
from flask import current_app
from webargs.flaskparser import FlaskParser

from quantpulse.cache.store import Stores
from quantpulse.service import StockService

EXTENSION = "quantpulse"


@dataclass(frozen=True)
class Components:
    """What the app factory built, kept in ``app.extensions`` for the views."""

    service: StockService
    stores: Stores


class _Parser(FlaskParser):
    """webargs answers invalid input with 422; API.md says 400."""

    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest blueprint whose argument validation fails with 400."""

    ARGUMENTS_PARSER = _Parser()


def components() -> Components:
    return current_app.extensions[EXTENSION]


def current_service() -> StockService:
    return components().service
