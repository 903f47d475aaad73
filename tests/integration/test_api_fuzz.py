"""Schema-driven fuzzing: schemathesis generates requests from /openapi.json, valid and invalid.

Every answer must be a non-5xx, JSON where the contract says JSON, with a documented status and
a body matching its schema. The app runs in demo mode so the fuzzer exercises the HTTP layer
(validation, routing, errors, serialisation) without spending time on upstream calls.

(schemathesis' own pytest plugin does not run under pytest 9 yet, so each operation gets a
plain Hypothesis test built from the operation's strategy.)
"""

from __future__ import annotations

import dataclasses

import fakeredis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from quantpulse.app import create_app
from quantpulse.config import Settings
from quantpulse.infra.store import BACKEND_REDIS, Store, Stores, embedded_store

ADMIN = {"Authorization": "Bearer fuzz-admin-token"}


def load_schema(*, keyed: bool = False) -> schemathesis.BaseSchema:
    """The app in demo mode; ``keyed``: with its keys in a shared (Redis-like) store."""
    settings_ = Settings(stock_provider="demo", admin_token="fuzz-admin-token")
    stores = Stores(embedded_store(5000))
    if keyed:
        settings_ = dataclasses.replace(settings_, redis_url="redis://shared.test:6379/0")
        stores = Stores(Store(fakeredis.FakeRedis(), BACKEND_REDIS), fallback=embedded_store(100))
    app = create_app(settings_, stores=stores)
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def needs_the_store(path: str) -> bool:
    """Key and usage routes: 503 without the shared store, by contract; fuzzed with one."""
    return path.startswith("/admin/") or path in ("/usage", "/stream-token")


SCHEMA = load_schema()
KEYED = {
    result.ok().label: result.ok()
    for result in load_schema(keyed=True).get_all_operations()
    if needs_the_store(result.ok().path)
}
OPERATIONS = {
    result.ok().label: result.ok()
    for result in SCHEMA.get_all_operations()
    if not needs_the_store(result.ok().path)
}
# Only operations with inputs can be sent invalid data.
CASES = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, GenerationMode.NEGATIVE)
    for label, operation in sorted(OPERATIONS.items())
    if len(operation.path_parameters) + len(operation.query) + len(operation.body)
]
# The contract the fuzzer holds us to: never a 5xx, a documented status with the documented
# content type and body schema. (It does not also demand that every string the schema allows is
# accepted: the symbol grammar and the reserved words are richer than a JSON Schema pattern.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=lambda value: getattr(value, "value", value))
def test_every_operation_answers_within_its_contract(label, mode):
    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exchange(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    exchange()


KEYED_CASES = [(label, GenerationMode.POSITIVE) for label in sorted(KEYED)] + [
    (label, GenerationMode.NEGATIVE)
    for label, operation in sorted(KEYED.items())
    if len(operation.path_parameters) + len(operation.body)
]


@pytest.mark.parametrize(("label", "mode"), KEYED_CASES, ids=lambda value: getattr(value, "value", value))
def test_the_key_routes_with_the_admin_token_never_answer_5xx(label, mode):
    """Past the token check, on a store that holds keys: bad bodies, odd ids, huge names."""
    operation = KEYED[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exchange(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=ADMIN, checks=CHECKS)

    exchange()
