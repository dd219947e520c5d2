"""The decisioning feature's periodic work: retention, offer-file reload, erasure refresh and
confirmations.

:meth:`Housekeeping.run` prunes personal data at start and then hourly
(``journal.retention_days``), polls the offers file, picks up erasures made by other processes
and confirms erasures to the CDP — every ``offers.reload_seconds``, or at once after an erasure
in this process (:meth:`wake`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edge.bus import EventBus
from edge.decisioning import retention
from edge.decisioning.consent import ConsentLedger
from edge.decisioning.forgetting import Forgetting
from edge.decisioning.offers import OfferWatcher
from edge.decisioning.profile import ProfileStore
from edge.journal import Journal
from edge.types import Clock

__all__ = ["Housekeeping"]

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 3600.0


class Housekeeping:
    def __init__(
        self, *, journal: Journal, clock: Clock, retention_days: int, reload_seconds: float,
        consent: ConsentLedger, profiles: ProfileStore, watcher: OfferWatcher,
        forgetting: Forgetting, category_of: Callable[[str], str | None], bus: EventBus,
        store_id: str,
    ) -> None:  # fmt: skip
        self.journal = journal
        self.clock = clock
        self.retention_days = retention_days
        self.reload_seconds = reload_seconds
        self.consent = consent
        self.profiles = profiles
        self.watcher = watcher
        self.forgetting = forgetting
        self.category_of = category_of
        self.bus = bus
        self.store_id = store_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def prune_personal_data(self) -> dict[str, int]:
        """Retention: every personal table loses what is older than ``journal.retention_days``
        (any thread but the event loop's); returns rows removed per table."""
        cutoff = retention.cutoff_ms(self.clock(), self.retention_days)
        removed, _trimmed = self.profiles.prune_with(lambda: retention.prune(self.journal, cutoff, self.category_of))
        self.consent.expire(cutoff)
        if any(removed.values()):
            log.info("retention: pruned %s", ", ".join(f"{t} {n}" for t, n in removed.items() if n))
        return removed

    def wake(self) -> None:
        """Run the next round now (any thread): an erasure waits for its confirmation."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        pruned_at = -_PRUNE_EVERY_S
        try:
            while True:
                if loop.time() - pruned_at >= _PRUNE_EVERY_S:
                    await loop.run_in_executor(None, self.prune_personal_data)
                    pruned_at = loop.time()
                await loop.run_in_executor(None, self.watcher.poll)
                await loop.run_in_executor(None, self.forgetting.refresh)
                await self.forgetting.confirm(self.bus, self.store_id)
                wake.clear()
                try:
                    async with asyncio.timeout(self.reload_seconds):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._loop = self._wake = None
