"""``/openapi.json`` that tells the whole truth: every request body and every answer.

FastAPI documents what a route declares; the gateway's routes read raw bodies (so they can
bound, gunzip and parse them off the loop) and share one error shape. :func:`install` adds, to
every operation, the answers it can give with :data:`ERROR_SCHEMA` — 401/403/422/503 for an
authenticated route, 400/413 too when it takes a body, 503 for ``/readyz`` — and the request
bodies of the event routes (the Segment call shapes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["ERROR_SCHEMA", "EVENTS_ANSWER", "EVENTS_BODY", "install"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every error the gateway answers: a reason label and what was wrong. The core and"
    " Segment routes, authentication and validation also repeat them as `code`/`message`, which"
    " Segment/RudderStack SDKs read.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "stable reason label, e.g. too_large, unauthorized"},
        "detail": {"type": "string", "description": "what was wrong and what to do (never echoes values)"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/Rejection"}},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_CALL: dict[str, Any] = {
    "type": "object",
    "title": "SegmentCall",
    "description": "One Segment call (track, identify, page, screen, group, alias). storeId, deviceId and"
    " channel come from the device's token, never the body; raw identifiers go in properties.identifiers"
    " (or traits/context.traits, or the app's own userId) and are tokenised on arrival.",
    "properties": {
        "type": {"type": "string", "enum": ["track", "identify", "page", "screen", "group", "alias"]},
        "event": {"type": "string", "description": "track: the event name (DESIGN.md, Events)"},
        "messageId": {"type": "string", "maxLength": 128},
        "userId": {"type": "string", "maxLength": 128},
        "anonymousId": {"type": "string", "maxLength": 128},
        "previousId": {"type": "string", "maxLength": 128},
        "groupId": {"type": "string", "maxLength": 128},
        "name": {"type": "string", "maxLength": 200},
        "timestamp": {"type": "string", "format": "date-time"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
    },
    "additionalProperties": True,
}
_SCHEMAS: dict[str, Any] = {
    "Error": ERROR_SCHEMA,
    "Rejection": {
        "type": "object",
        "required": ["index", "reason", "detail"],
        "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}, "detail": {"type": "string"}},
    },
    "SegmentCall": _CALL,
    "SegmentBatch": {
        "type": "object",
        "title": "SegmentBatch",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "maxItems": 2500, "items": {"$ref": "#/components/schemas/SegmentCall"}},
            "context": {"type": "object"},
            "sentAt": {"type": "string"},
        },
    },
    "EventsAccepted": {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "messageIds": {"type": "array", "items": {"type": "string"}},
            "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/Rejection"}},
        },
    },
    "SegmentSuccess": {
        "type": "object",
        "required": ["success"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "accepted": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "messageIds": {"type": "array", "items": {"type": "string"}},
            "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/Rejection"}},
        },
    },
}
EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/SegmentBatch"},
                        {"$ref": "#/components/schemas/SegmentCall"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/SegmentCall"}},
                    ]
                }
            }
        },
    }
}
EVENTS_ANSWER: dict[str, Any] = {
    "description": "Committed; refusals listed by index",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventsAccepted"}}},
}
_ANSWERS = {
    400: "Malformed input: not JSON, wrong type, every event refused (reasons listed)",
    401: "No or unknown device token (Bearer, or Basic with the token as write key)",
    403: "The token's role may not call this",
    413: "Body larger than the limit (500 KB; 32 KB an event)",
    422: "A field is missing or of the wrong type",
    503: "Not ready, or the journal writer is behind: retry after Retry-After",
}
_WITH_BODY = ("post", "put", "patch")


def install(app: FastAPI, roles_by_route: Callable[[FastAPI], dict[tuple[str, str], Any]]) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
        schemes = schema["components"].setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "description": "the device token"}
        schemes["writeKey"] = {"type": "http", "scheme": "basic", "description": "the device token as user name"}
        roles = roles_by_route(app)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                authenticated = roles.get((method.upper(), path)) is not None
                codes = [401, 403, 422, 503] if authenticated else ([503] if path == "/readyz" else [])
                if authenticated and method in _WITH_BODY:
                    codes += [400, 413]
                answers = operation.setdefault("responses", {})
                for code in sorted(codes):
                    answers[str(code)] = {
                        "description": _ANSWERS[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
                if authenticated:
                    operation["security"] = [{"bearer": []}, {"writeKey": []}]
                    roles_text = ", ".join(sorted(roles[(method.upper(), path)]))
                    operation["description"] = (operation.get("description", "") + f"\n\nRoles: {roles_text}.").strip()
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
