"""HTTP authentication: one bearer token per device, and what each role may call.

The token comes as ``Authorization: Bearer <token>`` or, for Segment/RudderStack SDKs, as HTTP
Basic with the token as the write key (the user name; the password is ignored, SDKs send none).

``ROLES_BY_ROUTE`` is the single table of who may call what; the routes declare their roles
with :func:`require` and a test walks every endpoint × role against this table.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from edge.errors import AuthError
from edge.registry import DeviceRegistry

__all__ = ["ALL_ROLES", "Principal", "require"]

ALL_ROLES = frozenset({"kiosk", "display", "tablet", "pos", "ops"})


@dataclass(frozen=True)
class Principal:
    device_id: str
    role: str


def require(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting only callers whose role is in ``roles``."""
    allowed = frozenset(roles)
    unknown = allowed - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    # async: a plain ``def`` dependency would cost every request a hop to a worker thread and
    # back; the lookup is one indexed read on the loop thread's own reader connection
    async def dependency(request: Request) -> Principal:
        registry: DeviceRegistry = request.app.state.registry
        token = _token(request.headers.get("authorization", ""))
        device = registry.by_token(token)
        if device is None:
            raise AuthError(401, "unknown or disabled token")
        if device.role not in allowed:
            raise AuthError(403, f"role {device.role!r} may not call this endpoint")
        return Principal(device.device_id, device.role)

    dependency.roles = allowed  # type: ignore[attr-defined]  # read by the authorization test
    return dependency


def _token(header: str) -> str:
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, _password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(401, "malformed Basic credentials: send base64('<device token>:')") from None
        if user:
            return user
    raise AuthError(
        401, "missing device token: send 'Authorization: Bearer <device token>' (or Basic with it as the write key)"
    )
