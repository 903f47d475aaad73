"""The ``/stock`` routes: quote, history, profile, batch, status and the admin cache drop."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BaseConverter

from quantpulse.api import Blueprint, components, current_service
from quantpulse.api.admin import admin_only
from quantpulse.api.rendering import answered
from quantpulse.api.schemas import (
    BatchBodySchema,
    BatchQuerySchema,
    BatchSchema,
    CacheDropSchema,
    HistoryQuerySchema,
    HistorySchema,
    ProfileSchema,
    QuoteSchema,
    StatusSchema,
    SymbolPathSchema,
)
from quantpulse.api.status import service_status
from quantpulse.errors import BadRequest
from quantpulse.periods import DEFAULT_PERIOD, PERIODS, Period
from quantpulse.service import BatchResult
from quantpulse.symbols import ParsedSymbol, parse_symbol

BATCH_HINT = (
    'Send symbols=A,B in the query string, or a JSON body {"symbols": ["A", "B"]} '
    "with Content-Type: application/json."
)


class QuoteSymbolConverter(BaseConverter):
    """Any path segment except exactly ``quotes``, so every other method on it is a clean 405.

    The batch route owns ``/stock/quotes``; without this the quote route would also match it
    (and its GET would leak into the 405's Allow header). Other spellings (``QUOTES``) and other
    places (``/stock/quotes/profile``) reach their routes and are rejected there as reserved.
    """

    regex = r"(?!quotes$)[^/]+"


blp = Blueprint("stocks", __name__, url_prefix="/stock", description="Quotes, history, profiles.")


# Views of validated paths receive them first; Flask also passes the raw ``symbol``, unused.
Path = dict[str, ParsedSymbol]
# Schema instances, not classes: webargs would build a new schema for every request.
SYMBOL_PATH = SymbolPathSchema()
HISTORY_QUERY = HistoryQuerySchema()
# The hot routes parse their one argument themselves (a cached hit must not pay for a schema
# load); the schemas stay their documented parameters and decide every case off the fast path.
SYMBOL_DOC = {"in": "path", "schema": SymbolPathSchema}
PERIOD_DOC = {"in": "query", "schema": HistoryQuerySchema}


@blp.route("/<quote_symbol:symbol>")
@blp.served_unwrapped
@blp.doc(parameters=[SYMBOL_DOC])
@blp.alt_response(400, response="BAD_REQUEST")
@blp.response(200, QuoteSchema)
def quote(symbol: str) -> Response:
    return answered(current_service().quote(parse_symbol(symbol)), "quote")


@blp.route("/<symbol>/historical")
@blp.served_unwrapped
@blp.doc(parameters=[SYMBOL_DOC, PERIOD_DOC])
@blp.alt_response(400, response="BAD_REQUEST")
@blp.response(200, HistorySchema)
def historical(symbol: str) -> Response:
    history = current_service().history(parse_symbol(symbol), history_period(request.args))
    return answered(history, "history")


@blp.route("/<symbol>/profile")
@blp.served_unwrapped
@blp.doc(parameters=[SYMBOL_DOC])
@blp.alt_response(400, response="BAD_REQUEST")
@blp.response(200, ProfileSchema)
def profile(symbol: str) -> Response:
    return answered(current_service().profile(parse_symbol(symbol)), "profile")


def history_period(args: MultiDict[str, str]) -> Period:
    """``period`` as ``HistoryQuerySchema`` reads it; anything unusual goes through the schema."""
    raw = args.get("period")
    name = (raw or "").strip().lower() or DEFAULT_PERIOD
    if name in PERIODS:
        return PERIODS[name]
    return PERIODS[Blueprint.ARGUMENTS_PARSER.parse(HISTORY_QUERY, location="query")["period"]]


@blp.route("/quotes", methods=["POST"])
@blp.arguments(BatchQuerySchema(), location="query")
@blp.arguments(BatchBodySchema(), location="json", required=False)
@blp.response(200, BatchSchema)
def batch(query: dict[str, list[str]], body: dict[str, Any]) -> BatchResult:
    return current_service().quotes(batch_symbols(query["symbols"], body["symbols"]))


def batch_symbols(from_query: list[str], from_body: list[str] | None) -> list[str]:
    """The symbols of one batch request: from the query or the body, never both, never none.

    Empty pieces of a comma list (``symbols=A,,B``) are separators, not symbols; every string
    of a JSON body is a symbol as sent, and gets an answer (an empty one, a 400 entry).
    """
    query_symbols = [part for item in from_query for part in item.split(",") if part.strip()]
    if query_symbols and from_body is not None:
        raise BadRequest("Send symbols in the query string or in the body, not both.", hint=BATCH_HINT)
    symbols = query_symbols or from_body or []
    if not symbols:
        raise BadRequest("No symbols given.", hint=BATCH_HINT)
    return symbols


@blp.route("/service/status")
@blp.response(200, StatusSchema)
def status() -> dict[str, Any]:
    parts = components()
    fleet = parts.streams.registry.fleet()
    return service_status(parts.service, parts.guard, fleet, store_problem=parts.stores.problem())


@blp.route("/<symbol>/cache", methods=["DELETE"])
@admin_only
@blp.arguments(SYMBOL_PATH, location="path")
@blp.response(200, CacheDropSchema)
@blp.alt_response(401, description="No admin token given")
@blp.alt_response(403, description="Wrong admin token, or ADMIN_TOKEN unset on the server")
def clear_cache(path: Path, **_raw: str) -> dict[str, Any]:
    """Admin only. With ADMIN_TOKEN unset nobody is admin, so the answer is always 403."""
    service = current_service()
    instrument = service.instrument(path["symbol"])
    return {
        "symbol": instrument.ticker,
        "exchange": instrument.exchange,
        "deleted": service.forget(instrument),
    }
