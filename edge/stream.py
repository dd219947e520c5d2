"""``GET /v1/stream``: a WebSocket push of what is happening in the store, per role.

* tablet (store associate): presence and sign-ins of customers who consented to
  ``personalization`` — the "nearby opted-in customers" view; nobody else is shown.
* display: anonymous activity only (audience counts, zone entries/exits without any person id).

Browsers cannot set headers on a WebSocket, so the bearer token may also come as ``?token=``.
Each connection has a bounded queue; a slow client loses the oldest pushes (counted), never
slows ingest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from prometheus_client import CollectorRegistry, Counter

from edge.events import Event
from edge.registry import DeviceRegistry

__all__ = ["StreamHub"]

PERSON_EVENTS = frozenset({"Zone Entered", "Zone Exited", "Customer Identified"})
ANONYMOUS_EVENTS = frozenset({"Audience Measured", "Zone Entered", "Zone Exited"})
QUEUE_SIZE = 256


def view_for(role: str, event: Event) -> dict[str, Any] | None:
    """What ``role`` may see of ``event`` (None: nothing)."""
    props = event.body.get("properties", {})
    base = {"event": event.name, "timestamp": event.timestamp, "deviceId": event.source.device_id}
    if role == "tablet" and event.name in PERSON_EVENTS and event.user_id:
        if event.consent.get("personalization"):
            return base | {"userId": event.user_id, "zoneId": props.get("zoneId")}
        return None
    if role == "display" and event.name in ANONYMOUS_EVENTS:
        keep = {k: props[k] for k in ("zoneId", "count", "dwellSeconds") if k in props}
        return base | {"properties": keep}
    return None


class StreamHub:
    def __init__(self, registry: DeviceRegistry, metrics: CollectorRegistry) -> None:
        self._registry = registry
        self._clients: set[tuple[str, asyncio.Queue[str]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = Counter("edge_stream_dropped", "Pushes dropped for slow WebSocket clients",
                               registry=metrics)  # fmt: skip

    def listener(self, events: Sequence[Event]) -> None:
        """Ingest listener (journal writer thread): hand the batch to the event loop."""
        if self._clients and self._loop is not None:
            self._loop.call_soon_threadsafe(self._fan_out, list(events))

    def _fan_out(self, events: list[Event]) -> None:
        for role, queue in list(self._clients):
            for event in events:
                view = view_for(role, event)
                if view is None:
                    continue
                if queue.full():
                    queue.get_nowait()
                    self.dropped.inc()
                queue.put_nowait(json.dumps(view))

    @staticmethod
    async def _pump(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
        """Send queued views until the client goes away (noticed by listening while waiting)."""
        receiving = asyncio.ensure_future(websocket.receive())
        try:
            while True:
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getting, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if receiving in done:
                    getting.cancel()
                    if receiving.result()["type"] == "websocket.disconnect":
                        return
                    receiving = asyncio.ensure_future(websocket.receive())  # inbound text is ignored
                    continue
                await websocket.send_text(getting.result())
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            receiving.cancel()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.websocket("/v1/stream")
        async def stream(websocket: WebSocket) -> None:
            header = websocket.headers.get("authorization", "")
            token = header.partition(" ")[2] if header.lower().startswith("bearer ") else ""
            token = token or websocket.query_params.get("token", "")
            device = self._registry.by_token(token) if token else None
            await websocket.accept()  # accept first so the refusal can carry a close code
            if device is None:
                await websocket.close(code=4401, reason="missing or unknown token")
                return
            if device.role not in ("tablet", "display"):
                await websocket.close(code=4403, reason=f"role {device.role!r} may not stream")
                return
            self._loop = asyncio.get_running_loop()
            entry = (device.role, asyncio.Queue[str](QUEUE_SIZE))
            self._clients.add(entry)
            try:
                await self._pump(websocket, entry[1])
            finally:
                self._clients.discard(entry)

        return router
