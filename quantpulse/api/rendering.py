"""Answers rendered once per entry, not once per request.

The response schemas are the contract (and the OpenAPI source); running one costs more than the
rest of a cached request. So a worker renders an entry's body once, split around its
``service_info`` (the only part that differs between two requests for the same entry: cache
status, age), and every later hit splices a freshly computed ``service_info`` into those bytes:
the bytes ``jsonify`` would have sent. (With rendering done once, a faster JSON library would
save nothing measurable; the standard one keeps the output identical to ``jsonify``'s.)
The service keeps the rendered parts with the entry (``service.Rendered``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response
from marshmallow import Schema

from quantpulse.api.request_log import note_answer
from quantpulse.api.schemas import HistorySchema, ProfileSchema, QuoteSchema
from quantpulse.service import Answer, Rendered

_HOLE = "\x00service_info\x00"
JSON = "application/json"


def _dumps(document: Any) -> str:
    """As Flask's ``jsonify`` writes it: compact, ASCII-only (``₹`` as ``\\u20b9``)."""
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"))


_HOLE_TEXT = _dumps(_HOLE)

Renderer = Callable[[Answer[Any]], Rendered]


def renderer(schema: Schema) -> Renderer:
    """Render with ``schema``, leaving a hole where ``service_info`` goes."""

    def render(answer: Answer[Any]) -> Rendered:
        document = schema.dump(answer)
        document["service_info"] = _HOLE
        head, tail = _dumps(document).split(_HOLE_TEXT)
        return Rendered(head.encode(), f"{tail}\n".encode())

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


def body(answer: Answer[Any], kind: str) -> bytes:
    """The JSON body of one answer: its kept parts around a fresh ``service_info``."""
    parts = answer.rendered or RENDERERS[kind](answer)  # demo answers are rendered here
    return b"".join((parts.head, _dumps(service_info(answer)).encode(), parts.tail))


def answered(answer: Answer[Any], kind: str) -> Response:
    """The JSON response for one answer, and the request log told how it was served."""
    note_answer(answer.cache, answer.source)
    return Response(body(answer, kind), mimetype=JSON)
