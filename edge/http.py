"""The HTTP API (FastAPI): health, readiness, metrics, event ingest; features add their routes.

Routes declare who may call them with :func:`edge.auth.require`; errors come back as JSON
``{"error": reason}`` with 401/403/413/503 as HTTP means them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edge.auth import Principal, require
from edge.bus import Source
from edge.docs import mount_docs
from edge.errors import AuthError
from edge.ingest import Busy, Ingestor
from edge.registry import DeviceRegistry

__all__ = ["create_app"]

_INLINE_PARSE_BYTES = 16_384  # larger bodies are parsed off the event loop


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
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=headers)

    @app.exception_handler(Busy)
    async def _busy(_request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})

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

    @app.post("/v1/events", tags=["events"])
    async def post_events(
        request: Request, who: Principal = Depends(require("kiosk", "display", "tablet", "pos"))
    ) -> JSONResponse:
        """Segment-style ingest: one event, an array, or ``{"batch": [...]}``.

        Answers after the accepted events are committed to the journal. Per-event refusals are
        listed with their index and reason; the rest of the batch is still accepted.
        """
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _too_large(max_body_bytes, ingestor, who, store_id)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _too_large(max_body_bytes, ingestor, who, store_id)
        source = Source(store_id, who.device_id, who.role, "http")
        payload = bytes(body)
        if len(payload) > _INLINE_PARSE_BYTES:
            item = await asyncio.to_thread(ingestor.prepare_payload, source, payload)
        else:
            item = ingestor.prepare_payload(source, payload)
        result = await ingestor.publish_item(item, wait=False)
        status = 400 if result.rejected and not result.message_ids else 200
        return JSONResponse(
            {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "messageIds": list(result.message_ids),
                "rejected": [
                    {"index": r.index, "reason": r.reason, "detail": r.detail} for r in result.rejected
                ],
            },
            status_code=status,
        )

    for router in routers:
        app.include_router(router)
    return app


def _too_large(limit: int, ingestor: Ingestor, who: Principal, store_id: str) -> JSONResponse:
    source = Source(store_id, who.device_id, who.role, "http")
    detail = f"request body exceeds {limit} bytes"
    ingestor.reject(source, "too_large", detail, b"", None)
    return JSONResponse({"error": "too_large", "detail": detail}, status_code=413)


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
