"""Forgetting a person: the erasure service the routes, the downlink, the CLI and other features use.

:class:`Forgetting` wraps the :class:`~edge.decisioning.erasure.Eraser` (rows and suppression
list) with what the running feature keeps in memory: the caches of the consent ledger, the
profile store and the cap ledger are emptied of the person and their visits before
:meth:`Forgetting.erase` returns; other features' state (presence, app keys) is reached through
:meth:`add_erasure_hook` (:class:`edge.types.Erasure`). An erasure by another process (``edge
forget`` on the file) is picked up by :meth:`refresh`, and every erasure is confirmed to the CDP
by a ``Customer Erased`` event (:meth:`confirm`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter

from edge.bus import EventBus, Source
from edge.decisioning.erasure import Eraser
from edge.types import ErasureHook, Undo

__all__ = ["Forgetting"]


class Forgetting:
    def __init__(
        self, eraser: Eraser, *, forget_cached: Callable[[Sequence[str]], None],
        cached_users: Callable[[], set[str]], registry: CollectorRegistry,
        on_erased: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self.eraser = eraser
        self._forget_cached = forget_cached
        self._cached_users = cached_users
        self._on_erased = on_erased
        self.erasures = Counter("edge_erasures", "Customers erased", registry=registry)

    def is_suppressed(self, user_id: str | None) -> bool:
        return self.eraser.is_suppressed(user_id)

    def erase(self, user_id: str, request_id: str | None = None) -> int:
        """Erase a person (token) everywhere; returns rows removed. Safe from any thread. When
        it returns the erasure and the suppression are in force, caches included."""
        removed, person = self.eraser.erase_person(user_id, request_id)
        self._forget_cached([user_id, *person.visits])  # the rows are gone already
        self.erasures.inc()
        self._on_erased()
        return removed

    def add_erasure_hook(self, hook: ErasureHook) -> Undo:
        """Other features' erasure (presence state …): ``hook(token) -> rows removed`` runs on
        every erasure; returns the undo callable."""
        return self.eraser.add_hook(hook)

    def refresh(self) -> None:
        """After an erasure by another process: reload the suppression list and drop the cached
        state of any suppressed token (blocking: SQLite)."""
        if self.eraser.refresh():
            self._forget_cached([u for u in self._cached_users() if self.eraser.is_suppressed(u)])

    async def confirm(self, bus: EventBus, store_id: str) -> None:
        """Publish a ``Customer Erased`` event per erasure not yet confirmed."""
        loop = asyncio.get_running_loop()
        pending = await loop.run_in_executor(None, self.eraser.pending_confirmations)
        for request_id, erased_ms, removed in pending:
            # the store in the id: every store confirms the same request, and messageId is the
            # fleet-wide de-duplication key (JetStream Nats-Msg-Id, the central primary key)
            event = {
                "type": "track", "event": "Customer Erased",
                "messageId": f"erased-{store_id}-{request_id}",
                "properties": {"requestId": request_id, "erasedMs": erased_ms, "removed": removed},
            }  # fmt: skip
            result = await bus.publish(Source(store_id, "gateway", "gateway", "local"), [event])
            if not result.rejected:
                await loop.run_in_executor(None, self.eraser.confirmed, request_id)
