"""The OpenAPI document (generated from the marshmallow schemas) and its interactive page.

``/openapi.json`` is built by flask-smorest from the same schemas that validate and shape every
request, so the docs cannot drift from the code. ``/docs`` is Swagger UI, served from the
``swagger-ui-bundle`` package rather than a CDN, so it works on a machine without internet.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, send_from_directory
from flask_smorest import Api
from marshmallow import Schema, fields
from swagger_ui_bundle import swagger_ui_path

ASSETS_PATH = "/docs/assets"


class ErrorDetailSchema(Schema):
    error = fields.String(required=True, metadata={"description": "Short title"})
    message = fields.String(required=True, metadata={"description": "Human sentence"})
    hint = fields.String(metadata={"description": "How to fix it, when there is a way"})


class ErrorSchema(Schema):
    """The one error envelope (docs/api.md, "Errors")."""

    detail = fields.Nested(ErrorDetailSchema, required=True)


class QuantPulseApi(Api):
    """flask-smorest's Api, documenting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema


def openapi_settings() -> dict[str, Any]:
    return {
        "API_TITLE": "QuantPulse",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": f"{ASSETS_PATH}/",
        "API_SPEC_OPTIONS": {
            "info": {
                "description": "Quotes, history and company profiles for NSE/BSE equities, "
                "from Twelve Data, then Finnhub, then flagged demo data, behind a fleet-wide cache."
            }
        },
    }


def register_docs_assets(app: Flask) -> None:
    """Swagger UI's scripts and styles, from the installed package."""

    @app.route(f"{ASSETS_PATH}/<path:filename>")
    def swagger_ui_asset(filename: str) -> Response:
        return send_from_directory(swagger_ui_path, filename, max_age=86400)
