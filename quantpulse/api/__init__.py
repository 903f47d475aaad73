"""HTTP layer: blueprints that parse input, call the service once and dump the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flask_smorest
from flask import Request, current_app
from webargs.flaskparser import FlaskParser

from quantpulse.errors import BadRequest
from quantpulse.infra.store import Stores
from quantpulse.service import StockService
from quantpulse.upstream.guard import UpstreamGuard

EXTENSION = "quantpulse"


@dataclass(frozen=True)
class Components:
    """What the app factory built, kept in ``app.extensions`` for the views."""

    service: StockService
    stores: Stores
    guard: UpstreamGuard


class _Parser(FlaskParser):
    """webargs answers invalid input with 422; docs/api.md says 400."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Request) -> Any:
        """A pathologically nested body overflows the JSON decoder: that is bad input, not a 500."""
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            raise BadRequest("The JSON body is nested too deeply.") from None


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest blueprint whose argument validation fails with 400."""

    ARGUMENTS_PARSER = _Parser()


def components() -> Components:
    return current_app.extensions[EXTENSION]


def current_service() -> StockService:
    return components().service
