"""The HTTP API (FastAPI): health, readiness, metrics, event ingest; features add their routes.

Routes declare who may call them with :func:`edge.auth.require`. Every error, whatever raised
it (a route, authentication, FastAPI's own validation, an unknown path), comes back in one
shape, ``{"error": reason, "detail": text, "code": reason, "message": text}`` (the last two are
what Segment/RudderStack SDKs read), with 400/401/403/404/413/422/503 as HTTP means them;
``/openapi.json`` documents it on every operation (:mod:`edge.openapi`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge import openapi, segment
from edge.auth import Principal, require
from edge.bus import Source
from edge.docs import mount_docs
from edge.errors import AuthError
from edge.ingest import Busy, Ingestor
from edge.registry import DeviceRegistry
from edge.segment import BadEncoding, BodyTooLarge, error_body, read_body

__all__ = ["create_app"]

_INLINE_PARSE_BYTES = segment.INLINE_PARSE_BYTES
_STATUS_REASONS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
                   415: "bad_encoding", 429: "busy", 503: "busy"}  # fmt: skip


def create_app(
    *,
    store_id: str,
    registry: DeviceRegistry,
    ingestor: Ingestor,
    metrics: CollectorRegistry,
    readiness: Mapping[str, Callable[[], bool]],
    warnings: Mapping[str, Callable[[], str | None]] | None = None,
    routers: Sequence[APIRouter] = (),
    max_body_bytes: int = 512_000,
    version: str = "",
) -> FastAPI:
    app = FastAPI(
        title="Edge gateway",
        version=version,
        description="In-store personalization gateway: events, decisions, consent, sync.",
        docs_url=None,
        redoc_url=None,
    )
    mount_docs(app)
    app.state.registry = registry

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, exc: AuthError) -> JSONResponse:
        response = error_body("unauthorized" if exc.status == 401 else "forbidden", exc.reason, exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer, Basic realm="edge-gateway"'
        return response

    @app.exception_handler(Busy)
    async def _busy(_request: Request, exc: Busy) -> JSONResponse:
        response = error_body("busy", str(exc), 503)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc/msg/type only: FastAPI's "input" would echo what was sent (it may hold identifiers)
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()][:20]  # fmt: skip
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "body"
        return error_body("invalid_request", f"{where}: {errors[0]['msg'] if errors else 'invalid'}", 422,
                          errors=errors)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_body(_STATUS_REASONS.get(exc.status_code, f"http_{exc.status_code}"), str(exc.detail),
                              exc.status_code)  # fmt: skip
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """Readiness: broker connected, journal writable, model loaded (where enabled)."""
        checks = {name: bool(check()) for name, check in readiness.items()}
        ok = all(checks.values())
        warned = {name: text for name, warn in (warnings or {}).items() if (text := warn()) is not None}
        return JSONResponse({"ready": ok, "checks": checks, "warnings": warned}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus(_who: Principal = Depends(require("ops"))) -> Response:
        """Prometheus metrics (ops token)."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", tags=["events"], openapi_extra=openapi.EVENTS_BODY, responses={200: openapi.EVENTS_ANSWER})
    async def post_events(
        request: Request, who: Principal = Depends(require("kiosk", "display", "tablet", "pos"))
    ) -> JSONResponse:
        """Segment-style ingest: one event, an array, or ``{"batch": [...]}``.

        Answers after the accepted events are committed to the journal. Per-event refusals are
        listed with their index and reason; the rest of the batch is still accepted.
        """
        source = Source(store_id, who.device_id, who.role, "http")
        try:
            payload = await read_body(request, max_body_bytes)
        except BodyTooLarge:
            return _too_large(max_body_bytes, ingestor, who, store_id)
        except BadEncoding as exc:
            ingestor.reject(source, "bad_encoding", str(exc), b"", None)
            return error_body("bad_encoding", str(exc), 400)
        if len(payload) > _INLINE_PARSE_BYTES:
            item = await asyncio.to_thread(ingestor.prepare_payload, source, payload)
        else:
            item = ingestor.prepare_payload(source, payload)
        result = await ingestor.publish_item(item, wait=False)
        counts = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "messageIds": list(result.message_ids),
            "rejected": [{"index": r.index, "reason": r.reason, "detail": r.detail} for r in result.rejected],
        }
        if result.rejected and not result.message_ids:
            return error_body(result.rejected[0].reason, result.rejected[0].detail, 400, **counts)
        return JSONResponse(counts)

    app.include_router(segment.router(store_id=store_id, ingestor=ingestor, max_body_bytes=max_body_bytes))
    for router in routers:
        app.include_router(router)
    openapi.install(app, roles_by_route)
    return app


def _too_large(limit: int, ingestor: Ingestor, who: Principal, store_id: str) -> JSONResponse:
    source = Source(store_id, who.device_id, who.role, "http")
    detail = f"request body exceeds {limit} bytes"
    ingestor.reject(source, "too_large", detail, b"", None)
    return error_body("too_large", detail, 413)


def roles_by_route(app: FastAPI) -> dict[tuple[str, str], frozenset[str] | None]:
    """(method, path) → roles allowed, None for open routes; for the authorization test."""
    table: dict[tuple[str, str], frozenset[str] | None] = {}
    _walk(app.routes, "", [], table)
    return table


def _walk(routes: Sequence[Any], prefix: str, inherited: list[Any], table: dict[tuple[str, str], Any]) -> None:
    for r in routes:
        original = getattr(r, "original_router", None)
        if original is not None:  # FastAPI's lazily included router
            context = r.include_context
            _walk(original.routes, prefix + context.prefix, inherited + list(context.dependencies), table)
            continue
        roles = None
        calls = [d.dependency for d in inherited]
        dependant = getattr(r, "dependant", None)
        if dependant is not None:
            calls += [dep.call for dep in dependant.dependencies]
        for call in calls:
            found = getattr(call, "roles", None)
            if found is not None:
                roles = found
        methods = getattr(r, "methods", None) or {"WEBSOCKET"}
        for method in methods:
            if method != "HEAD":
                table[(method, prefix + r.path)] = roles
