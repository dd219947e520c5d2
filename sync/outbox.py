"""The store-and-forward outbox: journal cursor → consent filter → sink → confirm.

For each sink, :meth:`Outbox.sync_once` reads the next batch past the sink's cursor, keeps what
:func:`sync.policy.eligible` allows (asking ``still_allowed`` again now, at send time),
dead-letters what is too large or refused for good, sends the rest and moves the cursor only
after the sink confirmed. Cursors are per sink, so sinks progress independently. A crash
between send and confirm resends the batch; messageId de-duplicates it at the sink.

:meth:`Outbox.run_sink` is the reconnect loop around ``async with sink`` (house rule 5).
SQLite work runs in a worker thread (house rule 7); nothing is queued in memory beyond the one
batch in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from edge.backoff import backoff_delay, raise_if_cancelled
from edge.events import MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from edge.journal import DeadLetter, Journal, JournalRecord
from sync import tables
from sync.config import SyncConfig
from sync.errors import SinkAuthError, StreamMismatch, TransientSinkError
from sync.metrics import SyncMetrics
from sync.policy import CONSENT_EVENT, consent_record, eligible
from sync.sink import OutboundEvent, Rejected, SendResult, Sink

__all__ = ["BatchOutcome", "Outbox", "StillAllowed"]

log = logging.getLogger(__name__)

#: Live consent check for a customer token: False once withdrawn, erased or suppressed.
StillAllowed = Callable[[str], bool]
SinkFactory = Callable[[], AbstractAsyncContextManager[Sink]]

_Batch = tuple[list[JournalRecord], set[int]]  # records, and the seqs of events about no one
#: Bytes a batch envelope adds around the event bodies: commas, brackets, sentAt.
_ENVELOPE_BYTES = MAX_BATCH_EVENTS + 256


@dataclass(frozen=True)
class BatchOutcome:
    read: int  # journal rows consumed (the cursor moved past them)
    sent: int
    skipped: int  # not allowed to leave the store
    dead_lettered: int
    duplicates: int
    last_seq: int


class Outbox:
    def __init__(
        self,
        journal: Journal,
        config: SyncConfig,
        still_allowed: StillAllowed,
        metrics: SyncMetrics,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        is_erased: Callable[[str], bool] | None = None,
    ) -> None:
        self.journal = journal
        self.config = config
        self.still_allowed = still_allowed
        #: consent records leave unless the person was erased (without a check for that, only
        #: while still_allowed holds)
        self.is_erased: Callable[[str], bool] = is_erased or (lambda u: not still_allowed(u))
        self.metrics = metrics
        self._sleep = sleep
        self._rng = rng
        self.max_read_bytes = max(config.batch_bytes - _ENVELOPE_BYTES, MAX_EVENT_BYTES)
        self._ahead: dict[str, tuple[int, asyncio.Future[_Batch]]] = {}

    # -- one batch ------------------------------------------------------------------------
    def _read(self, sink: str, after: int) -> _Batch:
        records = self.journal.read_after(
            sink, limit=self.config.batch_events, max_bytes=self.max_read_bytes, after=after
        )
        unconsented_anonymous = [r.seq for r in records if r.user_id is None and not r.sync_allowed]
        about_no_one: set[int] = set()
        if unconsented_anonymous:
            about_no_one = self.journal.personless_seqs(unconsented_anonymous[0], unconsented_anonymous[-1])
        return records, about_no_one

    def select(
        self, records: Sequence[JournalRecord], about_no_one: set[int]
    ) -> tuple[list[OutboundEvent], list[Rejected], dict[str, int]]:
        """Split a batch into (to send, too large, {skip reason: count}) by the policy."""
        outbound: list[OutboundEvent] = []
        too_large: list[Rejected] = []
        skipped = {"no_consent": 0, "withdrawn": 0, "erased": 0}
        live: dict[str, bool] = {}
        for r in records:
            if r.event == CONSENT_EVENT and r.user_id is not None:  # withdrawals leave too
                if self.is_erased(r.user_id):
                    skipped["erased"] += 1
                else:
                    outbound.append(OutboundEvent(r.seq, r.message_id, consent_record(r.body)))
                continue
            allowed_now = True
            if r.user_id is not None and r.sync_allowed:
                if r.user_id not in live:
                    live[r.user_id] = bool(self.still_allowed(r.user_id))
                allowed_now = live[r.user_id]
            if not eligible(
                user_id=r.user_id,
                has_anonymous_id=r.seq not in about_no_one,
                sync_allowed=r.sync_allowed,
                still_allowed=allowed_now,
            ):
                skipped["no_consent" if not r.sync_allowed else "withdrawn"] += 1
                continue
            event = OutboundEvent(r.seq, r.message_id, r.body)
            if len(r.body.encode("utf-8")) > MAX_EVENT_BYTES:
                detail = f"event exceeds {MAX_EVENT_BYTES} bytes"
                too_large.append(Rejected(event, "too_large", detail))
            else:
                outbound.append(event)
        return outbound, too_large, skipped

    async def sync_once(self, sink: Sink) -> BatchOutcome:
        """Send the next batch to ``sink``. Raises TransientSinkError or SinkAuthError with the
        cursor left where it was."""
        records, about_no_one = await self._next_batch(sink.name)
        if not records:
            return BatchOutcome(0, 0, 0, 0, 0, self.journal.cursor(sink.name))
        outbound, too_large, skipped = self.select(records, about_no_one)
        result = await sink.send(outbound) if outbound else SendResult()
        rejected = [*too_large, *result.rejected]
        last_seq = records[-1].seq
        # the sink has confirmed: count first, so whoever sees the cursor move sees the counts
        for reason, n in skipped.items():
            if n:
                self.metrics.skipped.labels(sink.name, reason).inc(n)
        for rej in rejected:
            self.metrics.dead_lettered.labels(sink.name, rej.reason).inc()
        self.metrics.sent.labels(sink.name).inc(result.sent)
        self.metrics.duplicates.labels(sink.name).inc(result.duplicates)
        await asyncio.to_thread(self._confirm, sink.name, last_seq, rejected, result)
        return BatchOutcome(
            len(records),
            result.sent,
            sum(skipped.values()),
            len(rejected),
            result.duplicates,
            last_seq,
        )

    async def _next_batch(self, sink: str) -> _Batch:
        """The batch past the cursor, from the read-ahead when it matches. While a batch is being
        sent, the next one is read in a worker thread (one batch ahead, never more), so SQLite
        and the sink's round trip overlap. Consent is still checked when a batch is sent."""
        cursor = await asyncio.to_thread(self.journal.cursor, sink)
        ahead = self._ahead.pop(sink, None)
        if ahead is not None and ahead[0] == cursor:
            batch = await ahead[1]
        else:
            if ahead is not None:
                await _settle(ahead[1])
            batch = await asyncio.to_thread(self._read, sink, cursor)
        if batch[0]:
            last = batch[0][-1].seq
            read = asyncio.ensure_future(asyncio.to_thread(self._read, sink, last))
            self._ahead[sink] = (last, read)
        return batch

    async def forget_read_ahead(self, sink: str) -> None:
        ahead = self._ahead.pop(sink, None)
        if ahead is not None:
            await _settle(ahead[1])

    def _confirm(self, sink: str, seq: int, rejected: list[Rejected], result: SendResult) -> None:
        # one transaction (one fsync) per batch: the dead letters, the cursor and the counters
        # are durable together, so a crash cannot record the refusals without the cursor move
        with self.journal.transaction() as conn:
            if rejected:
                self.journal.commit(
                    [],
                    [DeadLetter(f"sync:{sink}", r.reason, r.detail, r.event.body.encode("utf-8")) for r in rejected],
                )
            self.journal.confirm(sink, seq)
            tables.record_success(conn, sink, result.sent, result.duplicates, len(rejected))
            top = self.journal.max_seq()
        self.metrics.cursor_lag.labels(sink).set(max(top - seq, 0))

    # -- loops ----------------------------------------------------------------------------
    async def drain(self, sink: Sink, progress: Callable[[BatchOutcome], None] | None = None) -> int:
        """Send until the sink is caught up; returns journal rows consumed. No retry here."""
        total = 0
        try:
            while True:
                outcome = await self.sync_once(sink)
                if outcome.read == 0:
                    return total
                total += outcome.read
                if progress is not None:
                    progress(outcome)
        finally:
            await self.forget_read_ahead(sink.name)

    async def run_sink(
        self,
        name: str,
        factory: SinkFactory,
        *,
        auth_retry_s: float = 300.0,
        until_caught_up: bool = False,
        progress: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        """Keep ``name`` in sync forever (or until caught up): retry loop around ``async with``."""
        try:
            attempt = 0
            failing = False
            while True:
                try:
                    async with factory() as sink:
                        while True:
                            raise_if_cancelled()  # a sink's client may have lost our cancellation
                            outcome = await self.sync_once(sink)
                            if failing:
                                log.warning("sync to %s recovered", name)
                                failing = False
                            attempt = 0
                            if outcome.read and progress is not None:
                                progress(outcome)
                            if outcome.read == 0:
                                if until_caught_up:
                                    return
                                await self._sleep(self.config.idle_poll_s)
                except TransientSinkError as exc:
                    raise_if_cancelled()  # a sink's vendor client may have swallowed our cancellation
                    delay = backoff_delay(
                        attempt,
                        base_s=self.config.backoff_base_s,
                        cap_s=self.config.backoff_cap_s,
                        retry_after_s=exc.retry_after_s,
                        rng=self._rng,
                    )
                    attempt += 1
                    self.metrics.failures.labels(name).inc()
                    if not failing:
                        log.warning("sync to %s failing, retrying with backoff: %s", name, exc)
                        failing = True
                    await asyncio.to_thread(tables.record_failure, self.journal, name, str(exc))
                    await self._sleep(delay)
                except (SinkAuthError, StreamMismatch) as exc:  # an operator must act: no storm
                    log.error("sync to %s paused: %s", name, exc)
                    failing = True
                    await asyncio.to_thread(tables.record_failure, self.journal, name, str(exc))
                    await self._sleep(auth_retry_s)

        finally:
            await self.forget_read_ahead(name)


async def _settle(future: asyncio.Future[Any]) -> None:
    """Wait out an unwanted read-ahead (a worker thread cannot be cancelled) and drop it."""
    try:
        await future
    except Exception:  # its error belongs to a batch nobody asked for
        return
