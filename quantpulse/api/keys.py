"""Client API keys over HTTP: the operator's key routes (``ADMIN_TOKEN``) and the check of
``X-API-Key`` on every other route (docs/api.md, "API keys").

Keys live in the shared store: without ``REDIS_URL`` the key routes answer 503 and no key is
checked (``API_KEYS`` is forced to ``off``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, g, request
from marshmallow import Schema, ValidationError, fields, validates_schema

from quantpulse.access.keys import KeyStore, iso
from quantpulse.api import Blueprint, components
from quantpulse.api.admin import admin_only
from quantpulse.config import Settings
from quantpulse.errors import RouteNotFound, ServiceUnavailable, Unauthorized

blp = Blueprint("keys", __name__, url_prefix="/admin", description="Client API keys (ADMIN_TOKEN).")
tokens = Blueprint(
    "tokens", __name__, description="Stream tokens: a key for EventSource, which sends no headers."
)

KEY_HINT = "Send X-API-Key: <key>; an operator issues keys (POST /admin/keys)."
TOKEN_HINT = "POST /stream-token with X-API-Key gives a token that opens one stream within a minute."
# Routes that never ask for a key: health, docs, metrics, the live page and the operator's own.
_OPEN_BLUEPRINTS = frozenset({"health", "api-docs", "metrics", "keys"})
_OPEN_ENDPOINTS = frozenset(
    {"stocks.clear_cache", "usage.fleet_usage", "streams.live", "swagger_ui_asset", "static"}
)
_STREAMS = frozenset({"streams.sse", "streams.websocket"})


class KeyCreateSchema(Schema):
    name = fields.String(required=True)
    tier = fields.String(load_default=None)
    expires = fields.AwareDateTime(load_default=None, allow_none=True)


class KeyUpdateSchema(Schema):
    name = fields.String()
    tier = fields.String()

    @validates_schema
    def needs_a_change(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError('Send {"name": ...} or {"tier": ...}.')


class KeyRecordSchema(Schema):
    id = fields.String()
    name = fields.String()
    tier = fields.String()
    created = fields.String()
    expires = fields.String(allow_none=True)
    revoked = fields.Boolean()
    last_used = fields.String(allow_none=True)


class IssuedKeySchema(KeyRecordSchema):
    key = fields.String(metadata={"description": "Shown this once."})


class KeyListSchema(Schema):
    keys = fields.List(fields.Nested(KeyRecordSchema))


class RevokedSchema(Schema):
    id = fields.String()
    revoked = fields.Boolean()


class AuditSchema(Schema):
    entries = fields.List(fields.Dict())


class StreamTokenSchema(Schema):
    token = fields.String(metadata={"description": "Opens one stream: /stock/stream?...&token="})
    expires = fields.String(metadata={"description": "ISO 8601 UTC; the stream must open before"})


KEY_ID_DOC = {
    "in": "path",
    "name": "key_id",
    "required": True,
    "schema": {"type": "string", "pattern": "^k_[0-9a-f]{12}$"},
}


def documented(*, by_id: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The answers every key route may give besides its success (and the key id's form)."""

    def document(view: Callable[..., Any]) -> Callable[..., Any]:
        view = blp.alt_response(401, description="No admin token given")(view)
        view = blp.alt_response(403, description="Wrong admin token, or ADMIN_TOKEN unset on the server")(
            view
        )
        view = blp.alt_response(400, response="BAD_REQUEST")(view)
        view = blp.alt_response(503, description="No shared store (REDIS_URL unset)")(view)
        if by_id:
            view = blp.alt_response(404, description="No key with that id")(view)
            view = blp.doc(parameters=[KEY_ID_DOC])(view)
        return view

    return document


def key_store() -> KeyStore:
    keys = components().keys
    if keys is None:
        raise ServiceUnavailable(
            "API keys need the shared store, and REDIS_URL is not set.", hint="Set REDIS_URL to use API keys."
        )
    return keys


@blp.route("/keys", methods=["POST"])
@admin_only
@blp.arguments(KeyCreateSchema(), location="json")
@blp.response(201, IssuedKeySchema)
@documented()
def create_key(body: dict[str, Any]) -> dict[str, Any]:
    record, key = key_store().create(body["name"], body["tier"], body["expires"])
    return {**record.public(), "key": key}


@blp.route("/keys", methods=["GET"])
@admin_only
@blp.response(200, KeyListSchema)
@documented()
def list_keys() -> dict[str, Any]:
    return {"keys": [record.public() for record in key_store().list()]}


@blp.route("/keys/<key_id>", methods=["PATCH"])
@admin_only
@blp.arguments(KeyUpdateSchema(), location="json")
@blp.response(200, KeyRecordSchema)
@documented(by_id=True)
def update_key(body: dict[str, Any], key_id: str) -> dict[str, Any]:
    return key_store().update(key_id, name=body.get("name"), tier=body.get("tier")).public()


@blp.route("/keys/<key_id>/rotate", methods=["POST"])
@admin_only
@blp.response(200, IssuedKeySchema)
@documented(by_id=True)
def rotate_key(key_id: str) -> dict[str, Any]:
    record, key = key_store().rotate(key_id)
    return {**record.public(), "key": key}


@blp.route("/keys/<key_id>", methods=["DELETE"])
@admin_only
@blp.response(200, RevokedSchema)
@documented(by_id=True)
def revoke_key(key_id: str) -> dict[str, Any]:
    return {"id": key_store().revoke(key_id).id, "revoked": True}


@blp.route("/audit", methods=["GET"])
@admin_only
@blp.response(200, AuditSchema)
@documented()
def audit() -> dict[str, Any]:
    return {"entries": key_store().audit()}


@tokens.route("/stream-token", methods=["POST"])
@tokens.response(201, StreamTokenSchema)
@tokens.alt_response(401, description="No valid API key sent")
@tokens.alt_response(404, description="API keys are off on this server")
@tokens.alt_response(503, description="No shared store (REDIS_URL unset)")
def stream_token() -> dict[str, Any]:
    """For a keyed browser: EventSource sends no headers, so the stream is opened with a token
    that stands for the key once, and never puts the key itself in a URL."""
    store = key_store()
    if components().service.settings.api_keys == "off":
        raise RouteNotFound("Stream tokens stand for API keys, and keys are off here.", hint="API_KEYS=off")
    principal = g.get("principal")
    if principal is None:
        raise Unauthorized("A stream token is issued for an API key: send yours in X-API-Key.", hint=KEY_HINT)
    token, expires = store.stream_token(principal)
    return {"token": token, "expires": iso(expires)}


def register_api_keys(app: Flask, settings: Settings, keys: KeyStore | None) -> None:
    """Check ``X-API-Key`` before every route that is not always open (``API_KEYS``)."""
    if not settings.keys_enabled or keys is None:
        return
    required = settings.api_keys == "required"

    @app.before_request
    def identify() -> None:
        if request.method == "OPTIONS" or _always_open():
            return
        token = request.args.get("token") if request.endpoint in _STREAMS else None
        if token is not None:
            g.principal = keys.redeem(token, reconnect="Last-Event-ID" in request.headers)
            if g.principal is None:
                raise Unauthorized("The stream token is unknown, used or expired.", hint=TOKEN_HINT)
            return
        key = request.headers.get("X-API-Key")
        if key is None:
            if required:
                raise Unauthorized("This server needs an API key.", hint=KEY_HINT)
            return
        principal = keys.validate(key)
        if principal is None:
            raise Unauthorized("The API key is wrong, expired or revoked.", hint=KEY_HINT)
        g.principal = principal


def _always_open() -> bool:
    """Always-open routes, and no route at all (an unknown path stays a 404 in every mode)."""
    if request.url_rule is None:
        return True
    return (request.blueprint or "") in _OPEN_BLUEPRINTS or (request.endpoint or "") in _OPEN_ENDPOINTS
