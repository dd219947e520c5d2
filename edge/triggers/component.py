"""The adapter that plugs the trigger runtime into today's gateway (edge.component seams).

* the committed-event feed — a journal listener (writer thread) hands each batch to the event
  loop; a full queue drops the batch *for triggers only* (counted), ingest never waits;
* consent, profiles, catalog and the decision engine — the ``decisioning`` component
  (:class:`DecisioningPorts`); without it person-level triggers never fire and content is the
  fixed offer;
* the publisher — ``ctx.publisher`` (the gateway's MQTT link) through :class:`OfferPublisher`;
* erasure — a hook on decisioning's eraser deletes the person's firings;
* ``run()`` — rebuild from the journal, then evaluate, tick timers, write rows, reload the library.

The composition root builds it with :class:`TriggerSources` (typed ports from decisioning).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from edge.bus import CHANNEL_BY_KIND, Source
from edge.component import ComponentBase, GatewayContext
from edge.events import Event
from edge.triggers.delivery import OfferPublisher
from edge.triggers.evaluator import Candidate
from edge.triggers.library import Library, LibraryError, LibraryWatcher
from edge.triggers.ports import DecisionPort
from edge.triggers.report import report
from edge.triggers.runtime import TriggerRuntime
from edge.triggers.tables import FiringStore
from edge.types import ConsentPolicy, ErasureHooks

__all__ = ["DecisioningPorts", "ProfileSource", "TriggerSources", "TriggersComponent", "build", "event_from_row"]

log = logging.getLogger("edge.triggers")

_KIND_BY_CHANNEL = {v: k for k, v in CHANNEL_BY_KIND.items()}
_DAY_MS = 86_400_000


def build(ctx: GatewayContext, sources: TriggerSources | None = None) -> TriggersComponent:
    return TriggersComponent(ctx, sources)


class ProfileSummary(Protocol):
    def as_json(self, limit: int = 20) -> dict[str, Any]: ...


class ProfileSource(Protocol):
    """The decisioning profile store, as the triggers read it (after the consent check)."""

    def purchases(self, user_id: str, now_ms: int) -> list[tuple[str, float]]: ...
    def get(self, user_id: str) -> ProfileSummary | None: ...


@dataclass(frozen=True)
class TriggerSources:
    """What the composition root hands the triggers from decisioning (edge/gateway.py)."""

    policy: ConsentPolicy  # personalization consent and suppression, read at firing time
    profiles: ProfileSource  # purchase history and the associate's summary
    category_of: Callable[[str], str | None]  # the catalog's category of a SKU
    price_of: Callable[[str], float]  # the catalog's price of a SKU (0.0: unknown)
    decide: DecisionPort  # the decision engine, as ``POST /v1/decisions``
    erasure: ErasureHooks  # a person's firings go with the rest of their data


class DecisioningPorts:
    """Consent policy, profile reader, catalog reader and decision call, from decisioning's
    services (or deny-all / fixed-content stand-ins when decisioning is not enabled)."""

    def __init__(self, sources: TriggerSources | None) -> None:
        self.sources = sources

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return self.sources is not None and user_id is not None and self.sources.policy.allows(user_id, purpose)

    def is_suppressed(self, user_id: str | None) -> bool:
        return self.sources is not None and user_id is not None and self.sources.policy.is_suppressed(user_id)

    def purchases(self, user_id: str, now_ms: int) -> list[tuple[str, float]]:
        if self.sources is None or not self.allows(user_id, "personalization"):
            return []
        return list(self.sources.profiles.purchases(user_id, now_ms))

    def summary(self, user_id: str) -> dict[str, Any] | None:
        if self.sources is None or not self.allows(user_id, "personalization"):
            return None
        found = self.sources.profiles.get(user_id)
        return None if found is None else found.as_json(limit=5)

    def category_of(self, sku: str) -> str | None:
        return None if self.sources is None else self.sources.category_of(sku)

    def price_of(self, sku: str) -> float:
        if self.sources is None:
            return 0.0
        return self.sources.price_of(sku)

    @property
    def decide(self) -> DecisionPort | None:
        return None if self.sources is None else self.sources.decide


class TriggersComponent(ComponentBase):
    name = "triggers"

    def __init__(self, ctx: GatewayContext, sources: TriggerSources | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.config.triggers
        self.store_id = ctx.store_id
        self.ports = DecisioningPorts(sources)
        self.store = FiringStore(ctx.journal)
        self._writing: asyncio.Future[None] | None = None  # the firing write in its thread, if one runs
        self._metrics(ctx)
        path = Path(self.settings.path) if self.settings.path else None
        self.watcher = LibraryWatcher(path, on_refused=self._refused_file)
        tz = getattr(getattr(ctx.config, "decisioning", None), "timezone_offset_minutes", 0)
        self.publisher = OfferPublisher(ctx.publisher, self.store_id)
        self.runtime = TriggerRuntime(
            self.watcher.current,
            store=self.store,
            consent=self.ports,
            catalog=self.ports,
            publisher=self.publisher,
            decide=self.ports.decide,
            profiles=self.ports,
            store_id=self.store_id,
            timezone_offset_minutes=tz,
            pre_period_days=self.settings.pre_period_days,
            late_ms=int(self.settings.late_minutes * 60_000),
            max_units=self.settings.max_units,
            count=self._count,
        )
        self.runtime.evaluator.idle_ms = int(self.settings.idle_minutes * 60_000)
        if sources is not None:
            self._undo_erasure = sources.erasure.add_erasure_hook(self.store.erase)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[list[Event], int]] | None = None

    def _metrics(self, ctx: GatewayContext) -> None:
        reg = ctx.metrics
        self.fired = Counter(
            "edge_trigger_firings",
            "Trigger firings by outcome (delivered, holdout, no_offer)",
            ["outcome"],
            registry=reg,
        )
        self.refused = Counter(
            "edge_trigger_refused",
            "Trigger candidates that did not fire, by reason (contact caps, no consent, no device, too late …)",
            ["reason"],
            registry=reg,
        )
        self.converted = Counter(
            "edge_trigger_conversions", "Trigger firings converted (redeemed or goal)", ["how"], registry=reg
        )
        self.files_refused = Counter(
            "edge_trigger_files_refused",
            "Trigger library files refused on reload (the library in force stayed)",
            registry=reg,
        )
        self.dropped = Counter(
            "edge_trigger_batches_dropped", "Committed batches not evaluated: the triggers queue was full", registry=reg
        )
        self.latency = Histogram(
            "edge_trigger_seconds",
            "Signal committed → offer published",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=reg,
        )
        self._children: dict[tuple[str, str], Any] = {}
        self.live = Gauge("edge_trigger_live_units", "Units with signal state in memory", registry=reg)

    def _count(self, what: str, reason: str) -> None:
        child = self._children.get((what, reason))
        if child is None:
            metric = {"fired": self.fired, "refused": self.refused, "converted": self.converted}[what]
            child = self._children[(what, reason)] = metric.labels(reason)
        child.inc()

    def _refused_file(self, exc: LibraryError) -> None:
        self.files_refused.inc()
        log.error("trigger library refused, the one in force stays: %s", exc)

    # -- seams -------------------------------------------------------------------------------
    def listeners(self) -> Sequence[Callable[[Sequence[Event]], None]]:
        return [self._listen]

    def routers(self) -> Sequence[Any]:
        from edge.triggers.api import router

        return [router(self)]

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {}

    def _listen(self, events: Sequence[Event]) -> None:
        """The journal writer thread: hand over, never wait."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return  # not running yet: the replay at start covers these
        loop.call_soon_threadsafe(self._put, queue, (list(events), time.perf_counter_ns()))

    def _put(self, queue: asyncio.Queue[tuple[list[Event], int]], item: tuple[list[Event], int]) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped.inc()

    # -- what the API and CLI use ------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return report(self.store, int(self.ctx.clock() * 1000), alpha=self.settings.alpha, tau=self.settings.tau)

    @property
    def library(self) -> Library:
        return self.watcher.current

    # -- run ---------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[list[Event], int]] = asyncio.Queue(maxsize=self.settings.queue_max)
        self._queue, self._loop = queue, loop  # from now on the listener feeds the queue
        try:
            await self._rebuild()
            await self._serve(queue)
        finally:
            self._loop = self._queue = None
            if self._writing is not None:  # a write the cancel interrupted still runs in its thread: wait
                await asyncio.wait([self._writing])
            rows, convs = self.runtime.take_writes()
            await asyncio.to_thread(self.store.write, rows, convs)

    async def _write(self) -> None:
        """Write the firings taken so far. The thread write is shielded: a cancel (gateway stop)
        while it runs leaves it to finish, and ``run`` waits for it before the final write — the
        rows it holds are in no other list, and a firing not in the table fires again at restart."""
        rows, convs = self.runtime.take_writes()
        if not (rows or convs):
            return
        self._writing = asyncio.ensure_future(asyncio.to_thread(self.store.write, rows, convs))
        try:
            await asyncio.shield(self._writing)
        finally:
            if self._writing.done():
                self._writing = None

    async def _rebuild(self) -> None:
        now_ms = int(self.ctx.clock() * 1000)
        library = self.runtime.library
        replay_ms = int(
            min(
                self.settings.replay_hours * 3_600_000, max(library.horizon_ms, self.runtime.evaluator.idle_ms) + 60_000
            )
        )
        # in a worker thread, streamed: a restart after a busy day must neither block the loop
        # nor hold the day's events in memory (220,000 of them once took 1 GB and 10 s of CPU)
        fresh, replayed = await asyncio.to_thread(self._replay, now_ms - self.settings.learn_days * _DAY_MS,
                                                  now_ms - replay_ms, now_ms)  # fmt: skip
        for cand in fresh:
            await self.runtime.fire(cand, now_ms)
        if replayed:
            log.info(
                "triggers: replayed %d events, %d pending timers, %d late firings",
                replayed,
                self.runtime.evaluator.pending,
                len(fresh),
            )

    def _replay(self, learn_from: int, start: int, now_ms: int) -> tuple[list[Candidate], int]:
        """Learn from the purchases before the replay window, then replay the window's events
        the library reacts to (signals, cancels, goals; purchases: the learners) through the
        evaluator. Nothing else runs on the evaluator until this returns."""
        journal = self.ctx.journal
        for row in journal.stored_between(learn_from, start, events=("Order Completed",)):
            self.runtime.evaluator._learn(event_from_row(row))
        evaluator = self.runtime.evaluator
        names = {"Order Completed", *evaluator.by_event, *evaluator.cancels, *self.runtime.goal_events}
        count = 0

        def history() -> Iterator[Event]:
            nonlocal count
            for row in journal.stored_between(start, events=names):
                count += 1
                yield event_from_row(row)

        return self.runtime.rebuild(history(), now_ms), count

    async def _serve(self, queue: asyncio.Queue[tuple[list[Event], int]]) -> None:
        loop = asyncio.get_running_loop()
        polled = flushed = loop.time()
        pruned = -3600.0
        while True:
            if loop.time() - pruned >= 3600:  # retention: journal.retention_days, hourly
                pruned = loop.time()
                days = getattr(getattr(self.ctx.config, "journal", None), "retention_days", 395)
                cutoff = int(self.ctx.clock() * 1000) - int(days) * _DAY_MS
                removed = await asyncio.to_thread(self.store.prune, cutoff)
                if removed:
                    log.info("retention: pruned %d trigger firings older than %d days", removed, days)
            due = self.runtime.evaluator.next_due()
            now_ms = int(self.ctx.clock() * 1000)
            timeout = 0.25 if due is None else max(0.0, min(0.25, (due - now_ms) / 1000))
            events: list[Event] = []
            t0 = 0
            if not queue.empty():
                events, t0 = queue.get_nowait()
            else:
                try:  # (asyncio.timeout, not wait_for: no task per wait, and a cancel is never lost)
                    async with asyncio.timeout(timeout):
                        events, t0 = await queue.get()
                except TimeoutError:
                    pass
            now_ms = int(self.ctx.clock() * 1000)
            fired = []
            if events:
                fired += await self.runtime.on_events(events, now_ms)
                while not queue.empty() and len(events) < 4096:  # catch up in larger steps
                    more, _ = queue.get_nowait()
                    fired += await self.runtime.on_events(more, now_ms)
            fired += await self.runtime.on_tick(now_ms)
            if t0 and any(f.topic for f in fired):
                self.latency.observe((time.perf_counter_ns() - t0) / 1e9)
            self.live.set(len(self.runtime.evaluator.units))
            if loop.time() - flushed >= 0.2:
                await self._write()
                flushed = loop.time()
            if loop.time() - polled >= self.settings.reload_seconds:
                polled = loop.time()
                if await asyncio.to_thread(self.watcher.poll):
                    log.info("trigger library reloaded: %d triggers", len(self.watcher.current.triggers))
                    self.runtime.set_library(self.watcher.current)
                else:
                    self.runtime.promotions = await asyncio.to_thread(self.store.promotions)


def event_from_row(row: Sequence[Any]) -> Event:
    message_id, type_, name, user_id, anonymous_id, device_id, channel, timestamp, received_ms, body = row
    parsed = json.loads(body)
    source = Source(str(parsed.get("storeId", "")), device_id, _KIND_BY_CHANNEL.get(channel, channel), "local")
    return Event(message_id, type_, name, user_id, anonymous_id, timestamp, int(received_ms), source, parsed)
