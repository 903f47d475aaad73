"""HTTP layer: blueprints that parse input, call the service once and dump the answer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask_smorest
from flask import Request, current_app
from webargs.flaskparser import FlaskParser

from quantpulse.errors import BadRequest
from quantpulse.service import StockService

if TYPE_CHECKING:  # the composition root is above this layer: for types only
    from quantpulse.bootstrap import Components

EXTENSION = "quantpulse"


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

    @staticmethod
    def served_unwrapped(view: Callable[..., Any]) -> Callable[..., Any]:
        """For a view that returns a finished ``Response``: the flask-smorest decorators under
        this one document it (``/openapi.json``), and it is served without their wrappers,
        which would pass its response through untouched at three calls per request."""
        served = inspect.unwrap(view)
        served._apidoc = view._apidoc  # type: ignore[attr-defined]
        return served


def components() -> Components:
    """What the composition root built (``bootstrap.Components``), for the views."""
    return current_app.extensions[EXTENSION]


def current_service() -> StockService:
    return components().service
