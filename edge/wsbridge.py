"""MQTT over secure WebSockets at ``wss://<box>:<https port>/mqtt``, bridged to the broker's TLS listener.

Debian's Mosquitto 2.0.11 is built without websockets support (a ``protocol websockets``
listener fails with "Unable to start any listening sockets"), so the gateway's HTTPS server
accepts the WebSocket (subprotocol ``mqtt``) and relays the MQTT bytes, unchanged, over a TLS
connection to the broker's password listener — the broker authenticates the device and binds
its client id exactly as for a direct MQTT/TLS connection, and nothing crosses any link in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

__all__ = ["bridge_router"]

log = logging.getLogger(__name__)
_CHUNK = 65_536


class _Closed(Exception):
    """One side of the bridge ended."""


def bridge_router(host: str, port: int, context: ssl.SSLContext, max_connections: int = 1000) -> APIRouter:
    """``/mqtt``; at most ``max_connections`` at once (more are closed with 1013, try again later)."""
    router = APIRouter()
    open_now = [0]

    @router.websocket("/mqtt")
    async def mqtt_over_websocket(websocket: WebSocket) -> None:
        """MQTT over WebSocket (subprotocol ``mqtt``); authenticate in the MQTT CONNECT as on 8883."""
        if open_now[0] >= max_connections:
            await websocket.close(code=1013)
            return
        open_now[0] += 1
        try:
            await _bridge(websocket, host, port, context)
        finally:
            open_now[0] -= 1

    return router


async def _bridge(websocket: WebSocket, host: str, port: int, context: ssl.SSLContext) -> None:
    wanted = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="mqtt" if "mqtt" in wanted else None)
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except OSError as exc:
        log.warning("MQTT WebSocket bridge cannot reach the broker at %s:%d: %s", host, port, exc)
        await websocket.close(code=1011)
        return

    async def upstream() -> None:
        while True:
            try:
                data = await websocket.receive_bytes()
            except (WebSocketDisconnect, KeyError, RuntimeError):  # closed, or a text frame
                raise _Closed from None
            writer.write(data)
            await writer.drain()

    async def downstream() -> None:
        while data := await reader.read(_CHUNK):
            await websocket.send_bytes(data)
        raise _Closed

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(upstream())
            group.create_task(downstream())
    except* (_Closed, OSError, WebSocketDisconnect):
        pass
    finally:
        await _close_upstream(writer)
        with contextlib.suppress(Exception):
            await websocket.close()


async def _close_upstream(writer: asyncio.StreamWriter) -> None:
    """Close the TLS link to the broker for good: a bare ``close()`` only starts the TLS
    shutdown, and a gateway stopping (or this task cancelled) before it ends left the socket
    open; past a short wait, or when cancelled, the transport is aborted."""
    writer.close()
    try:
        async with asyncio.timeout(2.0):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
