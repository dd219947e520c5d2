"""Events the decisioning feature derives itself — exposures, ``Offer Redeemed`` — on their way
to the journal.

They are made where the loop cannot wait (the journal writer thread, for a redemption found in
an order) or should not (an exposure when decisions do not wait for its ack), so they go through
one bounded queue that :meth:`DerivedEvents.run` drains under the feature's task group,
publishing whatever queued up together so the journal writer commits it as one group. A full
queue (or a gateway not running) drops a redemption and counts it; an exposure is then published
by its caller itself (backpressure, never a drop).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from edge.bus import EventBus, Source

__all__ = ["DerivedEvents"]

log = logging.getLogger(__name__)

_BATCH = 256  # queued items handed to the journal writer at once
_Item = tuple[Source, list[dict[str, Any]]]


class DerivedEvents:
    def __init__(self, bus: EventBus, registry: CollectorRegistry, maxsize: int) -> None:
        self._bus = bus
        self._maxsize = maxsize
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self.dropped = Counter(
            "edge_derived_events_dropped", "Derived events (Offer Redeemed) dropped: queue full"
            " or gateway not running", registry=registry,
        )  # fmt: skip

    def from_thread(self, source: Source, events: list[dict[str, Any]]) -> None:
        """Queue events from a thread that is not the loop's (the journal writer's)."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            self.dropped.inc(len(events))
            return
        loop.call_soon_threadsafe(self._enqueue, queue, (source, events))

    def publish_later(self, source: Source, events: list[dict[str, Any]]) -> bool:
        """Queue events from the loop; False when not running or full (publish them yourself)."""
        if self._queue is None:
            return False
        try:
            self._queue.put_nowait((source, events))
        except asyncio.QueueFull:
            return False
        return True

    def _enqueue(self, queue: asyncio.Queue[_Item], item: _Item) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped.inc(len(item[1]))

    async def settled(self) -> None:
        """Return once every queued event has been journaled."""
        if self._queue is not None:
            await self._queue.join()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        queue = self._queue = asyncio.Queue(maxsize=self._maxsize)
        try:
            while True:
                items = [await queue.get()]
                while len(items) < _BATCH and not queue.empty():
                    items.append(queue.get_nowait())
                results = await asyncio.gather(
                    *(self._bus.publish(source, events) for source, events in items),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, Exception):  # the journal is failing: rows are kept anyway
                        log.warning("could not journal derived events: %s", type(result).__name__)
                for _ in items:
                    queue.task_done()
        finally:
            self._loop = self._queue = None
