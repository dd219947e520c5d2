"""HTTP routes of the decisioning component (roles as in DESIGN.md, "HTTP API").

| route | roles |
|---|---|
| ``POST /v1/decisions`` | kiosk, display, tablet, pos |
| ``POST /v1/consent`` | kiosk, tablet, ops |
| ``GET /v1/consent/{userId}`` | kiosk, tablet, ops |
| ``DELETE /v1/customers/{userId}`` | ops |
| ``GET /v1/customers/{userId}/profile`` | tablet |
| ``GET /v1/customers/{userId}/export`` | ops |
| ``GET /v1/reports/uplift`` | ops |

A refused request answers 422 ``{"error": reason, "detail": …}``; details never echo values.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from edge.auth import Principal, require
from edge.bus import Source
from edge.decisioning.consent import SOURCES, validate_preferences
from edge.errors import InvalidEvent
from edge.events import TOKEN_PATTERN
from edge.ids import uuid7

if TYPE_CHECKING:
    from edge.component import GatewayContext
    from edge.decisioning.consent import ConsentLedger
    from edge.decisioning.identity import Identity
    from edge.decisioning.profile import ProfileStore
    from edge.decisioning.uplift import CampaignUplift


class DecisioningFacade(Protocol):
    """What the HTTP routes use of the decisioning feature (its component is one)."""

    ctx: GatewayContext
    store_id: str
    identity: Identity
    consent: ConsentLedger
    profiles: ProfileStore

    async def decide(self, source: Source, body: dict[str, Any]) -> dict[str, Any]: ...
    def allows(self, user_id: str | None, purpose: str) -> bool: ...
    def erase(self, user_id: str, request_id: str | None = None) -> int: ...
    def export(self, user_id: str) -> dict[str, Any]: ...
    def uplift(self) -> list[CampaignUplift]: ...


__all__ = ["DecisioningFacade", "router"]

_SOURCE_BY_ROLE = {"kiosk": "kiosk", "tablet": "associate", "ops": "cdp"}


def _refused(exc: InvalidEvent, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": exc.reason, "detail": exc.detail}, status_code=status)


def _token(user_id: str) -> str:
    if not TOKEN_PATTERN.match(user_id):
        raise InvalidEvent("bad_identifier", "userId must be a customer token (ct_ + 32 hex)")
    return user_id


def router(component: DecisioningFacade) -> APIRouter:
    api = APIRouter(tags=["decisioning"])

    def source(principal: Principal) -> Source:
        return Source(component.store_id, principal.device_id, principal.role, "http")

    @api.post("/v1/decisions")
    async def decisions(
        body: dict[str, Any] = Body(...),
        principal: Principal = Depends(require("kiosk", "display", "tablet", "pos")),
    ) -> Any:
        try:
            # a JSONResponse of plain JSON values skips FastAPI's generic jsonable_encoder walk
            return JSONResponse(await component.decide(source(principal), body))
        except InvalidEvent as exc:
            return _refused(exc)

    @api.post("/v1/consent")
    async def record_consent(
        body: dict[str, Any] = Body(...),
        principal: Principal = Depends(require("kiosk", "tablet", "ops")),
    ) -> Any:
        try:
            user_id = component.identity.user_id(body)
            preferences = validate_preferences(body.get("purposes", {}))
            consent_source = body.get("source") or _SOURCE_BY_ROLE[principal.role]
            if consent_source not in SOURCES:
                raise InvalidEvent("bad_consent", f"source must be one of {', '.join(SOURCES)}")
            notice = body.get("noticeVersion")
            if notice is not None and not isinstance(notice, str):
                raise InvalidEvent("bad_consent", "noticeVersion must be a string")
        except InvalidEvent as exc:
            return _refused(exc)
        properties: dict[str, Any] = {
            "categoryPreferences": preferences,
            "consentSource": consent_source,
        }
        if notice is not None:
            properties["noticeVersion"] = notice
        event = {"type": "track", "event": "Consent Updated", "userId": user_id, "properties": properties}
        result = await component.ctx.bus.publish(source(principal), [event])
        if result.rejected:
            rejection = result.rejected[0]
            status = 409 if rejection.reason == "suppressed" else 422
            return JSONResponse({"error": rejection.reason, "detail": rejection.detail}, status_code=status)
        records = component.consent.records(user_id)
        return {
            "receiptId": result.message_ids[0],
            "userId": user_id,
            "categoryPreferences": component.consent.snapshot(user_id),
            "records": {p: r.as_json() for p, r in records.items()},
        }

    @api.get("/v1/consent/{user_id}")
    async def read_consent(user_id: str, principal: Principal = Depends(require("kiosk", "tablet", "ops"))) -> Any:
        try:
            _token(user_id)
        except InvalidEvent as exc:
            return _refused(exc)
        return {
            "userId": user_id,
            "categoryPreferences": component.consent.snapshot(user_id),
            "records": {p: r.as_json() for p, r in component.consent.records(user_id).items()},
        }

    @api.delete("/v1/customers/{user_id}")
    async def erase(user_id: str, requestId: str | None = None, principal: Principal = Depends(require("ops"))) -> Any:
        try:
            _token(user_id)
        except InvalidEvent as exc:
            return _refused(exc)
        if requestId is not None and not 0 < len(requestId) <= 100:
            return JSONResponse({"error": "wrong_type", "detail": "requestId: 1–100 characters"}, 422)
        loop = asyncio.get_running_loop()
        request_id = requestId or uuid7()
        removed = await loop.run_in_executor(None, component.erase, user_id, request_id)
        return {"requestId": request_id, "removed": removed}

    @api.get("/v1/customers/{user_id}/profile")
    async def profile(user_id: str, principal: Principal = Depends(require("tablet"))) -> Any:
        try:
            _token(user_id)
        except InvalidEvent as exc:
            return _refused(exc)
        found = component.profiles.get(user_id)
        if found is None or not component.allows(user_id, "personalization"):
            return JSONResponse({"error": "not_found", "detail": "no consented profile for this customer"}, 404)
        return found.as_json()

    @api.get("/v1/customers/{user_id}/export")
    async def export(user_id: str, principal: Principal = Depends(require("ops"))) -> Any:
        """Right of access: everything the store holds about the person, as one JSON document —
        ``{userId, visits, suppressed, exportedAt, tables: {table: [row, …]}}``; each row as
        stored, with ``_rowid``, JSON columns parsed and binary ones in base64."""
        try:
            _token(user_id)
        except InvalidEvent as exc:
            return _refused(exc)
        loop = asyncio.get_running_loop()
        return JSONResponse(await loop.run_in_executor(None, component.export, user_id))

    @api.get("/v1/reports/uplift")
    async def report(principal: Principal = Depends(require("ops"))) -> Any:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, component.uplift)
        return {"campaigns": [r.as_json() for r in rows]}

    return api
