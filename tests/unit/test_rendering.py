"""The hot path renders with the response schemas once and splices ``service_info`` per request;
what it sends must be exactly what the schemas (the contract, the OpenAPI source) would send."""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask, jsonify

from quantpulse.api.rendering import RENDERERS, answered, service_info
from quantpulse.api.schemas import HistorySchema, ProfileSchema, QuoteSchema, ServiceInfoSchema
from quantpulse.periods import PERIODS
from quantpulse.providers.demo import DemoProvider
from quantpulse.service import Answer
from quantpulse.symbols import Instrument

RELIANCE = Instrument("RELIANCE", "NSE")
DEMO = DemoProvider()
NOW = 1_795_000_000.0  # a fixed clock: two renderings of one answer must agree on its age


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)


def answers() -> list[tuple[str, Answer, object]]:
    fetched = NOW - 12.34
    common = {"instrument": RELIANCE, "source": "twelvedata", "fetched_at": fetched}
    return [
        ("quote", Answer(value=DEMO.quotes([RELIANCE])[RELIANCE], cache="hit", **common), QuoteSchema()),
        (
            "history",
            Answer(
                value=DEMO.history(RELIANCE, PERIODS["5d"]),
                cache="stale",
                period=PERIODS["5d"],
                fallback_reason="twelvedata: transient",
                **common,
            ),
            HistorySchema(),
        ),
        ("profile", Answer(value=DEMO.profile(RELIANCE), cache="coalesced", **common), ProfileSchema()),
    ]


@pytest.mark.parametrize(("kind", "answer", "schema"), answers(), ids=["quote", "history", "profile"])
def test_a_spliced_body_is_what_the_schema_would_send(kind, answer, schema):
    parts = RENDERERS[kind](answer)
    body = parts.head + json.dumps(service_info(answer)).encode() + parts.tail

    assert json.loads(body) == json.loads(json.dumps(schema.dump(answer)))
    assert list(json.loads(body)) == list(schema.dump(answer)), "same fields, same order"


@pytest.mark.parametrize(("kind", "answer", "schema"), answers(), ids=["quote", "history", "profile"])
def test_a_response_is_byte_for_byte_what_jsonify_would_send(kind, answer, schema):
    """ASCII only (the rupee sign escaped), compact, a newline at the end, as jsonify writes."""
    app = Flask(__name__)
    app.json.sort_keys = False  # as create_app sets it
    with app.test_request_context():
        expected = jsonify(schema.dump(answer)).get_data()
        sent = answered(answer, kind).get_data()

    assert sent == expected
    assert sent.isascii()


@pytest.mark.parametrize(("kind", "answer", "schema"), answers(), ids=["quote", "history", "profile"])
def test_service_info_is_what_its_schema_would_send(kind, answer, schema):
    assert service_info(answer) == ServiceInfoSchema().dump(answer)
