"""The ingest path: raw inputs → typed events → journal, with group commit.

Callers (the MQTT link on the event loop, HTTP handlers, local adapters) parse and enrich in
their own thread, then queue the result for the single journal writer thread (the MQTT link
queues each batch of messages as one entry, :meth:`Ingestor.enqueue_many`). The writer takes everything
queued at that moment, commits it in one transaction and only then reports back — so an MQTT
message is acknowledged to the broker and an HTTP request answered only once durable. Because
one thread commits in arrival order, MQTT acknowledgements also go out in arrival order.

The queue is bounded: a full queue makes the MQTT link wait (the broker then holds the backlog),
makes HTTP answer 503 with Retry-After, and makes adapters wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.bus import PublishResult, Rejection, Source
from edge.component import Component, Listener, PostStage, PreStage, Writer
from edge.errors import EdgeError, InvalidEvent
from edge.events import MAX_EVENT_BYTES, Event, decode_document, iso_ms, parse_event
from edge.guard import IdentifierGuard, skeleton
from edge.journal import CommitResult, DeadLetter, Journal
from edge.metrics import IngestMetrics
from edge.types import PRE_STAGE_GROWTH

__all__ = ["Busy", "Ingestor"]

log = logging.getLogger(__name__)

Done = Callable[[PublishResult | BaseException], None]
#: Adapts decoded raw events to the gateway's envelope: (raw events, the decoded document) → raw events.
Shape = Callable[[list[Any], Any], list[Any]]


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
#: How much larger than its bytes in the payload an event's compact JSON (as parse_event
#: measures it, ASCII-escaped) can be: an exponent such as ``1e15`` re-encodes as
#: ``1000000000000000.0`` (4.5×), a non-ASCII character as a six-byte ``\u`` escape (at most 3×);
#: whitespace and escapes only shrink. With :data:`~edge.types.PRE_STAGE_GROWTH` this bounds
#: every event in a payload, so the hot path (events of a few hundred bytes) skips measuring.
_EXPANSION = 5
_GATEWAY = Source("", "", "gateway", "mqtt")


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
        guard: IdentifierGuard | None = None,
    ) -> None:
        self.journal = journal
        self.guard = guard or IdentifierGuard()
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
        self._commits_ok = True
        self._stopping = False
        self._inflight: list[_Item] = []
        metrics.track_queue(self._queue.qsize)

    @property
    def healthy(self) -> bool:
        """The writer thread runs and its last commit (or batch) went through: ``/readyz``'s
        ``journal`` check, and what the systemd watchdog is fed on."""
        return self._commits_ok and (self._thread is None or self._thread.is_alive())

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
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
        """Validate and enrich in the caller's thread; bad events become dead letters.

        The guard runs first (valid text, finite numbers, bounded nesting, identifiers masked),
        so nothing that reaches the identity stage, the journal or a dead letter is raw."""
        now_ms = int(self.clock() * 1000)
        now_iso = iso_ms(now_ms)
        # a small payload cannot hold an event over the limit, whatever the stages make of it:
        # no need to re-serialise each event to measure it
        size_bound = None if payload is None else _EXPANSION * len(payload) + PRE_STAGE_GROWTH
        if size_bound is not None and size_bound > MAX_EVENT_BYTES:
            size_bound = None  # large: measure each event
        item = _Item(source, [], [], [], None)
        found = self.guard.budget()  # one matcher budget for the whole input
        for index, raw in enumerate(raw_events):
            try:
                if not isinstance(raw, dict):
                    raise InvalidEvent("wrong_type", "an event must be a JSON object")
                raw = self.guard.clean(raw, found)
                for stage in self.pre_stages:
                    raw = stage(raw, source)
                event = parse_event(raw, source, now_ms, size_bound, now_iso)
                for post in self.post_stages:
                    post(event)
            except InvalidEvent as exc:
                self._refuse(item, index, exc.reason, exc.detail, raw, payload)
                continue
            except Exception as exc:  # a stage's bug: refuse this event, never the whole input
                log.error("ingest stage failed on an event from %s: %s", _label(source), type(exc).__name__)
                self._refuse(item, index, "internal_error", "the gateway failed to process this event", raw, payload)
                continue
            item.events.append(event)
            item.indices.append(index)
        return item

    def _refuse(self, item: _Item, index: int, reason: str, detail: str, raw: Any, payload: bytes | None) -> None:
        item.rejected.append(Rejection(index, reason, detail))
        excerpt = self.guard.excerpt(raw)
        # size and sha256 are of the message it came in (what the device can look up), else of the excerpt
        whole = payload if payload is not None else excerpt.encode("utf-8")
        item.dead.append(DeadLetter(_label(item.source), reason, detail, whole, excerpt, _subjects(raw)))

    def prepare_payload(self, source: Source, payload: bytes, shape: Shape | None = None) -> _Item:
        """Bytes from MQTT/HTTP → an item; an undecodable payload becomes one dead letter.

        ``shape(raw_events, document)`` may adapt a protocol's call shapes first (Segment's)."""
        try:
            document, raw_events = decode_document(payload)
            if shape is not None:
                raw_events = shape(raw_events, document)
        except InvalidEvent as exc:
            return _Item(
                source,
                [],
                [DeadLetter(_label(source), exc.reason, exc.detail, payload, self.excerpt(payload))],
                [Rejection(0, exc.reason, exc.detail)],
                None,
            )
        return self.prepare(source, raw_events, payload)

    def excerpt(self, payload: bytes) -> str:
        """A dead letter's excerpt of raw bytes: guarded JSON, or only the shape of what is not."""
        try:
            return self.guard.excerpt(json.loads(payload))
        except (ValueError, RecursionError):
            return skeleton(payload)

    def reject(self, source: Source, reason: str, detail: str, payload: bytes, on_done: Done | None) -> None:
        """Queue a refusal that happened before parsing (unknown topic, unknown device …)."""
        self._queue.put(self.rejection(source, reason, detail, payload, on_done))

    def rejection(self, source: Source, reason: str, detail: str, payload: bytes, on_done: Done | None) -> _Item:
        """The item :meth:`reject` queues, for a caller that queues items together (:meth:`enqueue_many`)."""
        return _Item(source, [], [DeadLetter(_label(source), reason, detail, payload, self.excerpt(payload))],
                     [Rejection(0, reason, detail)], on_done)  # fmt: skip

    def passthrough(self, on_done: Done) -> None:
        """Queue only an acknowledgement, so MQTT acks stay in arrival order."""
        self._queue.put(self.ack_only(on_done))

    @staticmethod
    def ack_only(on_done: Done) -> _Item:
        """The item :meth:`passthrough` queues."""
        return _Item(_GATEWAY, [], [], [], on_done)

    def enqueue(self, item: _Item, on_done: Done | None, *, block: bool = True) -> None:
        item.on_done = on_done
        try:
            self._queue.put(item, block=block)
        except queue.Full:
            raise Busy("the journal writer is behind; retry shortly") from None

    def enqueue_many(self, items: list[_Item], *, block: bool = True) -> None:
        """Queue items (``on_done`` already set) as one entry: the writer wakes once for them
        and commits them in this order, in one group."""
        try:
            self._queue.put(items, block=block)
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
        """The journal's one writer. A fault outside the commit's own error handling (a sleep
        the OS refuses, a settling callback that raises) fails the batch in hand — nothing of it
        is acknowledged, so MQTT redelivers and HTTP answers with the error — and the writer
        goes on with the next; until a batch commits again the journal reads not ready."""
        while True:
            try:
                self._drain()
                return
            except Exception as exc:
                self.metrics.writer_crashes.inc()
                if self._commits_ok:
                    log.exception("journal writer failed outside a commit; its batch is failed, the writer goes on")
                self._commits_ok = False
                batch, self._inflight = self._inflight, []
                _fail(batch, exc)
                if self._stopping:
                    return

    def _drain(self) -> None:
        while not self._stopping:
            first = self._queue.get()
            if first is _STOP:
                self._stopping = True
                break
            batch: list[_Item] = list(first) if type(first) is list else [first]
            self._inflight = batch
            count = sum(len(item.events) for item in batch)
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
                    self._stopping = True
                    break
                if type(nxt) is list:
                    batch.extend(nxt)
                    count += sum(len(item.events) for item in nxt)
                else:
                    batch.append(nxt)
                    count += len(nxt.events)
            self._commit(batch)
            self._inflight = []

    def _commit(self, batch: list[_Item]) -> None:
        events = [e for item in batch for e in item.events]
        dead = [d for item in batch for d in item.dead]
        started = time.perf_counter()
        try:
            try:
                result = self.journal.commit(events, dead, self.writers)
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                result = self._isolate(batch)  # one event the journal cannot store: commit the others
                events = [e for item in batch for e in item.events]
        except Exception as exc:  # disk full, I/O error: acknowledge nothing
            self.metrics.commit_failures.inc()
            if self._commits_ok:
                log.error("journal commit failed; nothing acknowledged: %s", exc)
            self._commits_ok = False
            _fail(batch, exc)
            return
        if not self._commits_ok:
            log.warning("journal commits recovered")
            self._commits_ok = True
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
            _tell(item, outcome)
        if new:
            for listener in self.listeners:
                try:
                    listener(new)
                except Exception:
                    log.exception("ingest listener %r failed", listener)

    def _isolate(self, batch: list[_Item]) -> CommitResult:
        """The group commit failed on some event's data: bisect to find the events the journal
        cannot store, commit every other event, refuse and dead-letter the offenders (so MQTT
        acknowledges them and the broker stops redelivering). Raises if nothing can be stored:
        then it is the journal, not an event, and nothing is acknowledged."""
        entries = [(item, event) for item in batch for event in item.events]
        inserted: dict[int, bool] = {}
        refusals: dict[int, str | None] = {}
        poison: list[tuple[_Item, Event, BaseException]] = []
        failures = 0

        def attempt(chunk: list[tuple[_Item, Event]]) -> None:
            nonlocal failures
            try:
                result = self.journal.commit([e for _, e in chunk], (), self.writers)
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                if len(chunk) == 1:
                    poison.append((chunk[0][0], chunk[0][1], exc))
                    return
                middle = len(chunk) // 2
                attempt(chunk[:middle])
                attempt(chunk[middle:])
                return
            failures += result.writer_failures
            for (_, event), fresh in zip(chunk, result.inserted, strict=True):
                inserted[id(event)] = fresh
            for (_, event), reason in zip(chunk, result.refused, strict=False):
                refusals[id(event)] = reason

        middle = max(1, len(entries) // 2)
        for chunk in (entries[:middle], entries[middle:]):
            if chunk:
                attempt(chunk)
        dead: list[DeadLetter] = [d for item in batch for d in item.dead]
        for item, event, exc in poison:
            position = item.events.index(event)
            index = item.indices.pop(position)
            item.events.pop(position)
            detail = f"the journal could not store this event ({type(exc).__name__}); it was set aside"
            item.rejected.append(Rejection(index, "commit_failed", detail))
            letter = DeadLetter(_label(item.source), "commit_failed", detail, event.message_id.encode("utf-8", "replace"),
                                self.guard.excerpt(event.body), _subjects(event.body))  # fmt: skip
            item.dead.append(letter)
            dead.append(letter)
        self.metrics.isolated.inc(len(poison))
        log.warning("group commit isolated %d event(s) the journal could not store", len(poison))
        try:
            self.journal.commit([], dead)
        except Exception as exc:
            if not _is_data_error(exc):
                raise  # the journal itself is failing
            self.journal.commit([], [_storable(d) for d in dead])
        flags = tuple(inserted[id(e)] for item in batch for e in item.events)
        refused = tuple(refusals.get(id(e)) for item in batch for e in item.events)
        return CommitResult(flags, len(dead), failures, refused if any(refused) else ())


def _storable(letter: DeadLetter) -> DeadLetter:
    """A dead letter whose text fields are certain to encode (the poison may be in them)."""

    def safe(text: str) -> str:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

    excerpt = None if letter.excerpt is None else safe(letter.excerpt)
    return DeadLetter(
        safe(letter.source),
        safe(letter.reason),
        safe(letter.detail),
        letter.payload,
        excerpt,
        tuple(safe(s) for s in letter.subjects),
    )


def _is_data_error(exc: BaseException) -> bool:
    """An error caused by an event's content (not the disk, not a closed journal)."""
    return isinstance(exc, (UnicodeError, ValueError, TypeError, OverflowError, RecursionError,
                            sqlite3.InterfaceError, sqlite3.IntegrityError, sqlite3.DataError))  # fmt: skip


def _tell(item: _Item, outcome: PublishResult | BaseException) -> None:
    """Settle ``item`` once (a later fault cannot fail what was committed); a caller's callback
    that raises is logged, and the rest of the batch is still told."""
    done, item.on_done = item.on_done, None
    if done:
        try:
            done(outcome)
        except Exception:
            log.exception("settling an input raised")


def _fail(batch: Sequence[_Item], exc: BaseException) -> None:
    """Tell every input of ``batch`` not yet settled that it was not stored."""
    for item in batch:
        _tell(item, exc)


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
