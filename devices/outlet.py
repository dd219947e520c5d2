"""A bounded hand-off from device callbacks to the event bus.

Radio and frame callbacks must not wait on a journal commit, so they ``offer`` events into a
bounded queue (drop and count when full — house rule 6) and :meth:`EventOutlet.run` publishes
them in batches, one ``bus.publish`` per source, retrying with backoff if the bus fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from edge.backoff import backoff_delay, raise_if_cancelled
from edge.bus import EventBus, Source

__all__ = ["EventOutlet"]

log = logging.getLogger(__name__)


class EventOutlet:
    def __init__(self, bus: EventBus, *, maxsize: int = 10_000, batch: int = 200) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[tuple[Source, dict[str, Any]]] = asyncio.Queue(maxsize)
        self._batch = batch
        self.dropped = 0
        self.published = 0
        self.rejected = 0

    def offer(self, source: Source, event: Mapping[str, Any]) -> bool:
        """Queue one event without waiting; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((source, dict(event)))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("device event queue full: %d events dropped so far", self.dropped)
            return False
        return True

    async def publish(self, source: Source, events: list[dict[str, Any]]) -> None:
        """Publish now, retrying until the bus takes the batch (messageIds make retries safe)."""
        attempt = 0
        while True:
            try:
                result = await self._bus.publish(source, events)
            except Exception:  # the bus is another team's code: never lose the batch to it
                log.exception("publishing %d device events failed; retrying", len(events))
                raise_if_cancelled()
                await asyncio.sleep(backoff_delay(attempt, cap_s=10.0))
                attempt += 1
                continue
            self.published += result.accepted + result.duplicates
            if result.rejected:
                self.rejected += len(result.rejected)
                for rejection in result.rejected:
                    log.warning("device event refused: %s (%s)", rejection.reason, rejection.detail)
            return

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            grouped: dict[Source, list[dict[str, Any]]] = {first[0]: [first[1]]}
            taken = 1
            while taken < self._batch and not self._queue.empty():
                source, event = self._queue.get_nowait()
                grouped.setdefault(source, []).append(event)
                taken += 1
            for source, events in grouped.items():
                await self.publish(source, events)

    async def drain(self) -> None:
        """Publish whatever is queued (tests, shutdown)."""
        while not self._queue.empty():
            source, event = self._queue.get_nowait()
            await self.publish(source, [event])
