"""The ingest path: raw inputs → typed events → journal, with group commit.

Callers (the MQTT network thread, HTTP handlers, local adapters) parse and enrich in their own
thread, then queue the result for the single journal writer thread. The writer takes everything
queued at that moment, commits it in one transaction and only then reports back — so an MQTT
message is acknowledged to the broker and an HTTP request answered only once durable. Because
one thread commits in arrival order, MQTT acknowledgements also go out in arrival order.

The queue is bounded: a full queue blocks the MQTT thread (the broker then holds the backlog),
makes HTTP answer 503 with Retry-After, and makes adapters wait.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.bus import PublishResult, Rejection, Source
from edge.component import Component, Listener, PostStage, PreStage, Writer
from edge.errors import EdgeError, InvalidEvent
from edge.events import MAX_EVENT_BYTES, Event, decode_payload, iso_ms, parse_event
from edge.journal import DeadLetter, Journal
from edge.metrics import IngestMetrics

__all__ = ["Busy", "Ingestor"]

log = logging.getLogger(__name__)

Done = Callable[[PublishResult | BaseException], None]


class Busy(EdgeError):
    """The journal writer's queue is full; retry shortly."""


@dataclass
class _Item:
    source: Source
    events: list[Event]
    dead: list[DeadLetter]
    rejected: list[Rejection]
    on_done: Done | None
    indices: list[int] = field(default_factory=list)
    refused_at: set[int] = field(default_factory=set)  # indices refused inside the commit


_STOP = object()


class Ingestor:
    """Implements :class:`edge.bus.EventBus`. Start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self,
        journal: Journal,
        metrics: IngestMetrics,
        *,
        pre_stages: Sequence[PreStage] = (),
        post_stages: Sequence[PostStage] = (),
        listeners: Sequence[Listener] = (),
        writers: Sequence[Writer] = (),
        queue_max: int = 20_000,
        max_batch: int = 2_000,
        linger_ms: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.metrics = metrics
        self.pre_stages = list(pre_stages)
        self.post_stages = list(post_stages)
        self.listeners = list(listeners)
        self.writers = list(writers)
        self.max_batch = max_batch
        self.linger_s = linger_ms / 1000
        self.clock = clock
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self._thread: threading.Thread | None = None
        self.healthy = True
        metrics.track_queue(self._queue.qsize)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def attach(self, component: Component) -> None:
        """Add a feature's ingest seams: its stages, commit writers and listeners, in order."""
        self.pre_stages.extend(component.pre_stages())
        self.post_stages.extend(component.post_stages())
        self.writers.extend(component.writers())
        self.listeners.extend(component.listeners())

    # -- the producer side -----------------------------------------------------------------
    def prepare(self, source: Source, raw_events: Sequence[Any], payload: bytes | None = None) -> _Item:
        """Validate and enrich in the caller's thread; bad events become dead letters."""
        now_ms = int(self.clock() * 1000)
        now_iso = iso_ms(now_ms)
        # a payload within the per-event limit bounds every event in it: no need to re-measure
        size_bound = len(payload) if payload is not None and len(payload) <= MAX_EVENT_BYTES else None
        item = _Item(source, [], [], [], None)
        for index, raw in enumerate(raw_events):
            try:
                if isinstance(raw, dict):
                    for stage in self.pre_stages:
                        raw = stage(raw, source)
                event = parse_event(raw, source, now_ms, size_bound if not self.pre_stages else None, now_iso)
                for post in self.post_stages:
                    post(event)
            except InvalidEvent as exc:
                item.rejected.append(Rejection(index, exc.reason, exc.detail))
                item.dead.append(DeadLetter(_label(source), exc.reason, exc.detail,
                                            _excerpt(raw, payload), _subjects(raw)))
                continue
            item.events.append(event)
            item.indices.append(index)
        return item

    def prepare_payload(self, source: Source, payload: bytes) -> _Item:
        """Bytes from MQTT/HTTP → an item; an undecodable payload becomes one dead letter."""
        try:
            raw_events = decode_payload(payload)
        except InvalidEvent as exc:
            return _Item(
                source, [], [DeadLetter(_label(source), exc.reason, exc.detail, payload)],
                [Rejection(0, exc.reason, exc.detail)], None,
            )
        return self.prepare(source, raw_events, payload)

    def reject(self, source: Source, reason: str, detail: str, payload: bytes, on_done: Done | None) -> None:
        """Queue a refusal that happened before parsing (unknown topic, unknown device …)."""
        item = _Item(source, [], [DeadLetter(_label(source), reason, detail, payload)],
                     [Rejection(0, reason, detail)], on_done)  # fmt: skip
        self._queue.put(item)

    def passthrough(self, on_done: Done) -> None:
        """Queue only an acknowledgement, so MQTT acks stay in arrival order."""
        self._queue.put(_Item(Source("", "", "gateway", "mqtt"), [], [], [], on_done))

    def enqueue(self, item: _Item, on_done: Done | None, *, block: bool = True) -> None:
        item.on_done = on_done
        try:
            self._queue.put(item, block=block)
        except queue.Full:
            raise Busy("the journal writer is behind; retry shortly") from None

    async def publish(self, source: Source, events: Sequence[Mapping[str, Any]]) -> PublishResult:
        """EventBus: validate, enrich, journal; returns after the commit."""
        return await self.publish_item(self.prepare(source, list(events)), wait=True)

    async def publish_item(self, item: _Item, *, wait: bool) -> PublishResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PublishResult] = loop.create_future()

        def done(result: PublishResult | BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        try:
            self.enqueue(item, done, block=False)
        except Busy:
            if not wait:
                raise
            await loop.run_in_executor(None, self.enqueue, item, done)
        return await future

    # -- the writer ------------------------------------------------------------------------
    def _writer(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Item] = [first]
            count = len(first.events)
            lingered = False
            while count < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    # Linger once when a stream is flowing (more than one input was waiting): on
                    # one core the producer hands over the GIL at every socket wait, which would
                    # wake this thread for a commit of a handful of events. Sleeping (not
                    # waiting on the queue, which would wake at every put) lets the producer
                    # run, and the group commit grows. A lone input (a caller awaiting its
                    # commit) is committed at once.
                    if lingered or not self.linger_s or len(batch) < 2:
                        break
                    lingered = True
                    time.sleep(self.linger_s)
                    continue
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
                count += len(nxt.events)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        events = [e for item in batch for e in item.events]
        dead = [d for item in batch for d in item.dead]
        started = time.perf_counter()
        try:
            result = self.journal.commit(events, dead, self.writers)
        except Exception as exc:  # disk full, I/O error: acknowledge nothing
            self.metrics.commit_failures.inc()
            if self.healthy:
                log.error("journal commit failed; nothing acknowledged: %s", exc)
            self.healthy = False
            for item in batch:
                if item.on_done:
                    item.on_done(exc)
            return
        if not self.healthy:
            log.warning("journal commits recovered")
            self.healthy = True
        if result.writer_failures:
            self.metrics.writer_failures.inc(result.writer_failures)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.commit_events.observe(len(events))
        offset = 0
        new: list[Event] = []
        results: list[PublishResult] = []
        accepted_by: Counter[str] = Counter()
        duplicates_by: Counter[str] = Counter()
        rejected_by: Counter[tuple[str, str]] = Counter()
        for item in batch:
            flags = result.inserted[offset : offset + len(item.events)]
            if any(result.refused[offset : offset + len(item.events)]):
                _add_refusals(item, result.refused[offset : offset + len(item.events)])
            offset += len(item.events)
            accepted = sum(flags)
            transport = item.source.transport
            accepted_by[transport] += accepted
            duplicates_by[transport] += len(flags) - accepted - len(item.refused_at)
            for rejection in item.rejected:
                rejected_by[(transport, rejection.reason)] += 1
            if accepted == len(flags):
                new.extend(item.events)
            else:
                new.extend(e for e, f in zip(item.events, flags, strict=True) if f)
            results.append(PublishResult(accepted=accepted,
                                         duplicates=len(flags) - accepted - len(item.refused_at),
                                         rejected=tuple(item.rejected),
                                         message_ids=tuple(e.message_id for e in item.events)))  # fmt: skip
        # metrics first, so whoever is told "committed" already sees the counts
        for transport, n in accepted_by.items():
            if n:
                self.metrics.accepted.labels(transport).inc(n)
        for transport, n in duplicates_by.items():
            if n:
                self.metrics.duplicates.labels(transport).inc(n)
        for (transport, reason), n in rejected_by.items():
            self.metrics.rejected.labels(transport, reason).inc(n)
        for item, outcome in zip(batch, results, strict=True):
            if item.on_done:
                item.on_done(outcome)
        if new:
            for listener in self.listeners:
                try:
                    listener(new)
                except Exception:
                    log.exception("ingest listener %r failed", listener)


def _settle(future: asyncio.Future[PublishResult], result: PublishResult | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _add_refusals(item: _Item, refused: Sequence[str | None]) -> None:
    """Events the journal's admission refused inside the commit become rejections."""
    for index, reason in zip(item.indices, refused, strict=True):
        if reason is not None:
            item.refused_at.add(index)
            item.rejected.append(Rejection(index, reason, "refused when committed"))


def _subjects(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, dict):
        return ()
    return tuple(v for k in ("userId", "anonymousId") if isinstance(v := raw.get(k), str) and v)


def _label(source: Source) -> str:
    return f"{source.transport}:{source.kind}/{source.device_id}"


def _excerpt(raw: Any, payload: bytes | None) -> bytes:
    if payload is not None and len(payload) < 4096:
        return payload
    return repr(raw)[:4096].encode("utf-8", errors="replace")
