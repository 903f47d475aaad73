"""Answers rendered once per entry, not once per request.

The response schemas are the contract (and the OpenAPI source); running one costs more than the
rest of a cached request. So a worker renders an entry's body once, split around its
``service_info`` (the only part that differs between two requests for the same entry: cache
status, age), and every later hit splices a freshly computed ``service_info`` into those bytes.
The service keeps the rendered parts with the entry (``service.Rendered``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import Response
from marshmallow import Schema

from quantpulse.api.request_log import note_answer
from quantpulse.api.schemas import HistorySchema, ProfileSchema, QuoteSchema
from quantpulse.service import Answer, Rendered

_HOLE = "\x00service_info\x00"
_HOLE_BYTES = orjson.dumps(_HOLE)
JSON = "application/json"

Renderer = Callable[[Answer[Any]], Rendered]


def renderer(schema: Schema) -> Renderer:
    """Render with ``schema``, leaving a hole where ``service_info`` goes."""

    def render(answer: Answer[Any]) -> Rendered:
        document = schema.dump(answer)
        document["service_info"] = _HOLE
        head, tail = orjson.dumps(document).split(_HOLE_BYTES)
        return Rendered(head, tail)

    return render


# By cache kind, for the service (which keeps what they render) and for the routes.
RENDERERS: dict[str, Renderer] = {
    "quote": renderer(QuoteSchema()),
    "history": renderer(HistorySchema()),
    "profile": renderer(ProfileSchema()),
}


def service_info(answer: Answer[Any]) -> dict[str, Any]:
    """``ServiceInfoSchema`` for one answer, without running it (a test holds them equal)."""
    return {
        "source": answer.source,
        "cached": answer.cached,
        "cache": answer.cache,
        "age_seconds": answer.age_seconds(),
        "stale": answer.stale,
        "fallback_reason": answer.fallback_reason,
    }


def answered(answer: Answer[Any], kind: str) -> Response:
    """The JSON response for one answer, and the request log told how it was served."""
    note_answer(answer.cache, answer.source)
    parts = answer.rendered or RENDERERS[kind](answer)
    body = b"".join((parts.head, orjson.dumps(service_info(answer)), parts.tail))
    return Response(body, mimetype=JSON)
