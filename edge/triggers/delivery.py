"""Publishing a firing's offers on the touch point's topic.

Displays, POS pole displays and kiosks get a *retained* message on
``retail/v1/{storeId}/{kind}/{deviceId}/offers`` (a display that reconnects shows the offer in
force); the associate tablet gets a non-retained notification on
``retail/v1/{storeId}/tablet/{deviceId}/offers`` with the consented profile summary and why.

Payload (the contract with the store pages)::

    {"decisionId": str, "arm": str, "trigger": {"id": str, "version": int} | null,
     "offers": [items exactly as in the POST /v1/decisions response],
     "issuedAt": ISO-8601, "validUntil": ISO-8601}
    (+ "profile": {...} | null and "why": str for the tablet)

``arm`` is the variant id, never ``"holdout"``: a holdout firing delivers nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edge.triggers.ports import TopicPublisher

__all__ = ["OfferPublisher", "iso"]

RETAINED_KINDS = frozenset({"display", "pos", "kiosk"})


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OfferPublisher:
    def __init__(
        self, publisher: TopicPublisher, store_id: str, on_published: Callable[[str, int], None] | None = None
    ) -> None:
        self.publisher = publisher
        self.store_id = store_id
        self.on_published = on_published

    def topic(self, kind: str, device_id: str) -> str:
        return f"retail/v1/{self.store_id}/{kind}/{device_id}/offers"

    def payload(
        self,
        *,
        decision_id: str,
        arm: str,
        trigger: tuple[str, int] | None,
        offers: Sequence[Mapping[str, Any]],
        issued_ms: int,
        valid_ms: int,
    ) -> dict[str, Any]:
        if arm == "holdout":
            raise ValueError("a holdout firing delivers nothing")
        return {
            "decisionId": decision_id,
            "arm": arm,
            "trigger": None if trigger is None else {"id": trigger[0], "version": trigger[1]},
            "offers": [dict(o) for o in offers],
            "issuedAt": iso(issued_ms),
            "validUntil": iso(issued_ms + valid_ms),
        }

    def publish(
        self,
        kind: str,
        device_id: str,
        payload: Mapping[str, Any],
        *,
        profile: Mapping[str, Any] | None = None,
        why: str = "",
    ) -> str:
        """Publish; returns the topic. The tablet message carries ``profile`` and ``why``."""
        body = dict(payload)
        retain = kind in RETAINED_KINDS
        if kind == "tablet":
            body["profile"] = None if profile is None else dict(profile)
            body["why"] = why
        topic = self.topic(kind, device_id)
        self.publisher.publish(topic, json.dumps(body, separators=(",", ":")), qos=1, retain=retain)
        if self.on_published is not None:
            self.on_published(topic, time.perf_counter_ns())
        return topic
