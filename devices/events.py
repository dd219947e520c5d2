"""Raw event dictionaries as the adapters hand them to the bus (DESIGN.md, "Events").

The gateway adds storeId/deviceId/channel from the :class:`~edge.bus.Source`; adapters set a
``messageId`` (UUIDv7 from the event's own time) so a re-published batch de-duplicates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edge.ids import uuid7

__all__ = ["iso", "track"]


def iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track(
    name: str,
    at_s: float,
    properties: dict[str, Any],
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "messageId": uuid7(int(at_s * 1000)),
        "type": "track",
        "event": name,
        "timestamp": iso(at_s),
        "properties": properties,
    }
    if user_id is not None:
        event["userId"] = user_id
    if anonymous_id is not None:
        event["anonymousId"] = anonymous_id
    if context:
        event["context"] = context
    return event
