"""Consent changes that come from the CDP (the sync downlink), journaled like a device's.

:class:`ConsentRecorder` (an :class:`edge.types.ConsentChanges`) turns a change into a ``Consent
Updated`` event and publishes it through the event bus, so it applies by the same ordered rule
inside the journal's commit (:mod:`edge.decisioning.admission`): a redelivered ``message_id``
never re-applies, an older ``timestamp`` never overrides a newer choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from edge.bus import EventBus, PublishResult, Source
from edge.decisioning.consent import CONSENT_EVENT, ConsentLedger
from edge.errors import InvalidEvent
from edge.ids import uuid7

__all__ = ["ConsentRecorder"]


class ConsentRecorder:
    def __init__(self, bus: EventBus, ledger: ConsentLedger, store_id: str) -> None:
        self._bus = bus
        self._ledger = ledger
        self._source = Source(store_id, "cdp-downlink", "gateway", "local")
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The running gateway's loop (None when it stops): changes are published on it."""
        self._loop = loop

    def apply_consent(
        self, user_id: str, preferences: Mapping[str, Any], source: str,
        notice_version: str | None = None, *, message_id: str | None = None,
        timestamp: str | None = None,
    ) -> dict[str, bool]:  # fmt: skip
        """Record a consent change (any thread but the event loop's); returns the snapshot in
        force after the commit. Raises InvalidEvent when the journal refused it."""
        properties: dict[str, Any] = {"categoryPreferences": dict(preferences), "consentSource": source}
        if notice_version is not None:
            properties["noticeVersion"] = notice_version
        event: dict[str, Any] = {"type": "track", "event": CONSENT_EVENT, "userId": user_id,
                                 "messageId": message_id or uuid7(), "properties": properties}  # fmt: skip
        if timestamp is not None:
            event["timestamp"] = timestamp
        result = self._commit_now([event])
        if result.rejected:
            raise InvalidEvent(result.rejected[0].reason, result.rejected[0].detail)
        return self._ledger.snapshot(user_id)

    def _commit_now(self, events: list[dict[str, Any]]) -> PublishResult:
        """Publish from a thread that is not the event loop's; wait for the commit."""
        loop = self._loop
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(self._bus.publish(self._source, events), loop).result(60)
        return asyncio.run(self._bus.publish(self._source, events))
