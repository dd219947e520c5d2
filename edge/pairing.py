"""Pairing a new device from its own screen: the page shows a code, an operator approves it.

1. The pairing page (``/pages/pair``) asks ``POST /v1/pairing`` (no token: the device has none
   yet) and gets a short **code** to show and a long random **claim** it keeps to itself.
2. An operator approves the code — from the ops dashboard (``POST /v1/pairing/{code}/approve``,
   ops role) or on the box with ``edge devices pair CODE --kind display`` — choosing its kind
   and, optionally, its device id. Approval stores only the decision: no secret exists yet.
3. The page's next ``GET /v1/pairing/{code}`` with its claim provisions the device
   (:func:`edge.provision.provision`, the same path as ``edge devices add``) and answers the
   provisioning bundle — once: the row is deleted as it is handed over, and the registry keeps
   only hashes. Nobody who saw the code on the screen can take the credentials without the claim.

Codes expire after :data:`TTL_S`; at most :data:`MAX_PENDING` wait at once (more are refused
with 429 and ``Retry-After``, so an open endpoint cannot fill the disk). The table holds no personal data.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils
from fastapi import APIRouter, Body, Depends, Header
from fastapi.responses import JSONResponse

from edge.auth import Principal, require
from edge.bundle import issue_bundle
from edge.config import Config
from edge.errors import RegistryError
from edge.journal import Journal, Migration
from edge.registry import REGISTERED_KINDS, DeviceRegistry

__all__ = ["MIGRATIONS", "Pairing", "PairingError"]

TTL_S = 900
MAX_PENDING = 20
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a screen across a shop floor
_CODE = re.compile(r"^[A-Z2-9]{6}$")


def _pairings_v1(db: sqlite_utils.Database) -> None:
    db["pairings"].create(  # type: ignore[union-attr]
        {"code": str, "claim_sha256": str, "requested_kind": str, "created_ms": int, "expires_ms": int,
         "kind": str, "device_id": str, "approved_ms": int},
        pk="code", not_null={"claim_sha256", "created_ms", "expires_ms"},
    )  # fmt: skip


MIGRATIONS = (Migration("pairing-0001-pairings", _pairings_v1),)


class PairingError(RegistryError):
    """A pairing step refused; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def _digest(claim: str) -> str:
    return hashlib.sha256(claim.encode()).hexdigest()


def normalise_code(code: str) -> str:
    code = code.strip().upper().replace("-", "").replace(" ", "")
    if not _CODE.match(code):
        raise PairingError(404, "unknown_code", "a pairing code is 6 letters/digits as the device shows it")
    return code


class Pairing:
    def __init__(self, config: Config, registry: DeviceRegistry, journal: Journal,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._config = config
        self._registry = registry
        self._journal = journal
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def request(self, requested_kind: str | None = None) -> dict[str, Any]:
        if requested_kind is not None and requested_kind not in REGISTERED_KINDS:
            raise PairingError(422, "bad_kind", f"kind must be one of {', '.join(sorted(REGISTERED_KINDS))}")
        now = self._now_ms()
        claim = secrets.token_urlsafe(32)
        with self._journal.transaction() as conn:
            conn.execute("DELETE FROM pairings WHERE expires_ms < ?", (now,))
            if conn.execute("SELECT COUNT(*) FROM pairings").fetchone()[0] >= MAX_PENDING:
                raise PairingError(429, "busy", f"{MAX_PENDING} pairings are waiting; approve or let them expire")
            while True:
                code = "".join(secrets.choice(_ALPHABET) for _ in range(6))
                if conn.execute("SELECT 1 FROM pairings WHERE code = ?", (code,)).fetchone() is None:
                    break
            conn.execute("INSERT INTO pairings (code, claim_sha256, requested_kind, created_ms, expires_ms)"
                         " VALUES (?,?,?,?,?)", (code, _digest(claim), requested_kind, now, now + TTL_S * 1000))  # fmt: skip
        return {"code": code, "claim": claim, "expiresAt": _iso(now + TTL_S * 1000)}

    def pending(self) -> list[dict[str, Any]]:
        rows = self._journal.reader().execute(
            "SELECT code, requested_kind, created_ms, expires_ms, kind, device_id FROM pairings"
            " WHERE expires_ms >= ? ORDER BY created_ms", (self._now_ms(),)).fetchall()  # fmt: skip
        return [{"code": r[0], "requestedKind": r[1], "requestedAt": _iso(r[2]), "expiresAt": _iso(r[3]),
                 "approved": r[4] is not None, "kind": r[4], "deviceId": r[5]} for r in rows]  # fmt: skip

    def approve(self, code: str, kind: str, device_id: str | None = None) -> dict[str, Any]:
        code = normalise_code(code)
        if kind not in REGISTERED_KINDS:
            raise PairingError(422, "bad_kind", f"kind must be one of {', '.join(sorted(REGISTERED_KINDS))}")
        device_id = device_id or f"{kind}-{code.lower()}"
        if self._registry.get(device_id) is not None:
            raise PairingError(409, "exists", f"device {device_id!r} already exists; choose another id")
        with self._journal.transaction() as conn:
            row = conn.execute("SELECT expires_ms FROM pairings WHERE code = ?", (code,)).fetchone()
            if row is None or row[0] < self._now_ms():
                raise PairingError(404, "unknown_code", f"no pairing {code} is waiting (expired or never asked)")
            conn.execute("UPDATE pairings SET kind = ?, device_id = ?, approved_ms = ? WHERE code = ?",
                         (kind, device_id, self._now_ms(), code))  # fmt: skip
        return {"code": code, "kind": kind, "deviceId": device_id, "state": "approved"}

    def decline(self, code: str) -> None:
        code = normalise_code(code)
        with self._journal.transaction() as conn:
            if conn.execute("DELETE FROM pairings WHERE code = ?", (code,)).rowcount == 0:
                raise PairingError(404, "unknown_code", f"no pairing {code} is waiting")

    def collect(self, code: str, claim: str) -> dict[str, Any]:
        """The device's poll: ``{"state": "pending"}`` or, once approved, the bundle (handed over once)."""
        code = normalise_code(code)
        with self._journal.transaction() as conn:
            row = conn.execute("SELECT claim_sha256, expires_ms, kind, device_id FROM pairings WHERE code = ?",
                               (code,)).fetchone()  # fmt: skip
            if row is None or row[1] < self._now_ms() or not hmac.compare_digest(row[0], _digest(claim)):
                raise PairingError(404, "unknown_code", "no such pairing for this device (expired, or another claim)")
            if row[2] is None:
                return {"state": "pending", "expiresAt": _iso(row[1])}
            conn.execute("DELETE FROM pairings WHERE code = ?", (code,))
        try:
            bundle = issue_bundle(self._config, self._registry, row[2], row[3])
        except RegistryError as exc:  # the id was taken since the approval: the device asks again
            raise PairingError(409, "exists", str(exc)) from None
        return {"state": "paired", "bundle": bundle}

    def router(self) -> APIRouter:
        api = APIRouter(tags=["pairing"])

        def refused(exc: PairingError) -> JSONResponse:
            headers = {"Retry-After": "60"} if exc.status == 429 else None
            return JSONResponse({"error": exc.reason, "detail": exc.detail}, exc.status, headers=headers)

        @api.post("/v1/pairing")
        async def ask(body: dict[str, Any] | None = Body(None)) -> Any:
            """A new device asks to be paired (no token): ``{code, claim, expiresAt}``; show the code, keep the claim."""
            wanted = (body or {}).get("kind")
            try:
                return await asyncio.to_thread(self.request, wanted if isinstance(wanted, str) else None)
            except PairingError as exc:
                return refused(exc)

        @api.get("/v1/pairing/{code}")
        async def poll(code: str, x_pairing_claim: str = Header("")) -> Any:
            """The device's poll with its claim (header ``X-Pairing-Claim``): pending, or its bundle once."""
            try:
                return await asyncio.to_thread(self.collect, code, x_pairing_claim)
            except PairingError as exc:
                return refused(exc)

        @api.get("/v1/pairing")
        async def waiting(_who: Principal = Depends(require("ops"))) -> Any:
            """Pairings waiting for approval (codes as the devices show them)."""
            return {"pairings": await asyncio.to_thread(self.pending)}

        @api.post("/v1/pairing/{code}/approve")
        async def approve(code: str, body: dict[str, Any] = Body(...),
                          _who: Principal = Depends(require("ops"))) -> Any:  # fmt: skip
            """Approve a code as ``{"kind": "display", "deviceId": "display-2"}`` (deviceId optional)."""
            kind, device_id = body.get("kind"), body.get("deviceId") or None
            if not isinstance(kind, str) or (device_id is not None and not isinstance(device_id, str)):
                return refused(PairingError(422, "bad_kind", 'send {"kind": <role>, "deviceId": <optional id>}'))
            try:
                return await asyncio.to_thread(self.approve, code, kind, device_id)
            except PairingError as exc:
                return refused(exc)

        @api.delete("/v1/pairing/{code}")
        async def decline(code: str, _who: Principal = Depends(require("ops"))) -> Any:
            """Refuse a code: the device's page says so and asks again."""
            try:
                await asyncio.to_thread(self.decline, code)
            except PairingError as exc:
                return refused(exc)
            return {"code": normalise_code(code), "state": "declined"}

        return api


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
