"""The Segment HTTP Tracking API on the gateway, so store apps' Segment/RudderStack SDKs work unchanged.

``POST /v1/batch`` and one route per call type (``/v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group``, ``/v1/alias``), with Segment's limits (32 KB an event, 500 KB a
request), gzip bodies (``Content-Encoding: gzip``, decompressed with the same bound), and the
device token as the write key (HTTP Basic user name; Bearer works too). Answers are Segment's:
``200 {"success": true}`` once the accepted events are committed (plus the gateway's counts),
and errors carry ``code`` and ``message`` beside the gateway's ``error``/``detail`` — both SDKs
read ``code``/``message`` from any non-2xx answer. A batch whose every event was refused is a
400 (the SDKs do not retry a 4xx); a full journal queue is a 503 with ``Retry-After``, which
they retry with the same ``messageId``s, stored once.

The call shapes map onto the gateway's events as they arrive (:mod:`edge.events`): ``writeKey``
is dropped from the body (it is the device's credential), a batch's own ``context`` is merged
into each event's, and a single-call route sets the event's ``type``.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from edge.auth import Principal, require
from edge.bus import Source
from edge.events import CALL_TYPES, MAX_BATCH_BYTES
from edge.ingest import Ingestor

__all__ = ["BodyTooLarge", "BadEncoding", "error_body", "read_body", "router"]

INLINE_PARSE_BYTES = 16_384  # larger bodies are parsed off the event loop
EVENT_ROLES = ("kiosk", "display", "tablet", "pos")


class BodyTooLarge(Exception):
    """The body (or what it decompresses to) exceeds the limit."""


class BadEncoding(Exception):
    """The body claims an encoding it does not have, or one the gateway does not speak."""


def error_body(reason: str, detail: str, status: int, **extra: Any) -> JSONResponse:
    """The gateway's error shape: ``error``/``detail``, and the same as Segment's ``code``/``message``."""
    return JSONResponse({"error": reason, "detail": detail, "code": reason, "message": detail, **extra},
                        status_code=status)  # fmt: skip


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when it says so, at most ``limit`` bytes either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return bytes(body)
    if encoding not in ("gzip", "x-gzip"):
        raise BadEncoding(f"Content-Encoding {encoding[:20]!r} is not supported; send gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(bytes(body), limit + 1)
    except zlib.error:
        raise BadEncoding("the body is not valid gzip") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"request body decompresses to more than {limit} bytes")
    if not inflater.eof:
        raise BadEncoding("the gzip body is truncated")
    return data


def _shaper(call: str) -> Any:
    def shape(raws: list[Any], batch: Any) -> list[Any]:
        outer = batch.get("context") if isinstance(batch, dict) else None
        for raw in raws:
            if not isinstance(raw, dict):
                continue
            raw.pop("writeKey", None)
            if call != "batch":
                raw["type"] = call
            if isinstance(outer, dict):
                inner = raw.get("context")
                raw["context"] = {**outer, **inner} if isinstance(inner, dict) else dict(outer)
        if isinstance(batch, dict):
            batch.pop("writeKey", None)
        return raws

    return shape


def router(*, store_id: str, ingestor: Ingestor, max_body_bytes: int) -> APIRouter:
    routes = APIRouter(tags=["segment"])
    limit = min(max_body_bytes, MAX_BATCH_BYTES)

    async def handle(call: str, request: Request, who: Principal) -> JSONResponse:
        source = Source(store_id, who.device_id, who.role, "http")
        try:
            payload = await read_body(request, limit)
        except BodyTooLarge as exc:
            ingestor.reject(source, "too_large", str(exc), b"", None)
            return error_body("too_large", str(exc), 413)
        except BadEncoding as exc:
            ingestor.reject(source, "bad_encoding", str(exc), b"", None)
            return error_body("bad_encoding", str(exc), 400)
        shape = _shaper(call)
        if len(payload) > INLINE_PARSE_BYTES:
            item = await asyncio.to_thread(ingestor.prepare_payload, source, payload, shape)
        else:
            item = ingestor.prepare_payload(source, payload, shape)
        result = await ingestor.publish_item(item, wait=False)
        rejected = [{"index": r.index, "reason": r.reason, "detail": r.detail} for r in result.rejected]
        counts = {"accepted": result.accepted, "duplicates": result.duplicates,
                  "messageIds": list(result.message_ids), "rejected": rejected}  # fmt: skip
        if result.rejected and not result.message_ids:
            first = result.rejected[0]
            return error_body(first.reason, first.detail, 400, **counts)
        return JSONResponse({"success": True, **counts})

    def add(call: str, summary: str) -> None:
        async def endpoint(request: Request, who: Principal = Depends(require(*EVENT_ROLES))) -> JSONResponse:
            return await handle(call, request, who)

        endpoint.__doc__ = summary
        body = (
            {"$ref": "#/components/schemas/SegmentBatch"}
            if call == "batch"
            else {"$ref": "#/components/schemas/SegmentCall"}
        )
        routes.add_api_route(
            f"/v1/{call}", endpoint, methods=["POST"], name=f"segment_{call}", summary=summary,
            responses={200: {"description": "Committed (Segment's success body plus the gateway's counts)",
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentSuccess"}}}}},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}},
        )  # fmt: skip

    add("batch", 'Segment batch: {"batch": [calls of any type]}, at most 500 KB and 2,500 events.')
    for call in CALL_TYPES:
        add(call, f"Segment {call} call (one event of type {call}), at most 32 KB.")
    return routes
