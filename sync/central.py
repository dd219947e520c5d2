"""The central sync job: JetStream ``cdp.events.>`` → PostgreSQL, idempotently; erasure fan-out.

A durable pull consumer (``central``, created by :mod:`sync.backbone`) over every store's
subject, shared by every worker process. Each fetched batch is parsed, loaded in one PostgreSQL
transaction into the month's partition (:mod:`sync.central_schema`; ``(messageId, month)``
primary key, ``ON CONFLICT DO NOTHING``,
properties and context as JSONB; consent changes upserted into ``cdp_consent``; erasure
confirmations and drop reports into their tables), and acked only after the commit — so a crash
anywhere redelivers and the primary key absorbs it. Events of a person with an erasure request
are not loaded even if they were in flight (and are deleted from the stream). Optionally every loaded event is also forwarded to
a Segment-compatible endpoint before the ack. :meth:`CentralJob.request_erasure` records an
erasure, deletes what is loaded and what the events stream holds, and publishes the request on
every known store's downlink; :meth:`CentralJob.pending_erasures` lists what stores have not
confirmed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
import psycopg
import psycopg.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg.types.json import Jsonb

from edge.backoff import backoff_delay
from sync.backbone import EVENTS_STREAM, delete_person_messages
from sync.central_metrics import CentralMetrics
from sync.central_schema import SCHEMA, PartitionSet, drop_expired, month_of, oldest_kept
from sync.config import CentralConfig, HttpSinkConfig
from sync.errors import TransientSinkError
from sync.http_sink import HttpSink
from sync.messages import ErasureRequest, downlink_subject, encode_downlink
from sync.nats_sink import EVENTS_SUBJECTS, close_quietly, connect
from sync.sink import OutboundEvent

__all__ = ["SCHEMA", "CentralJob", "LoadResult", "parse_event_message"]

log = logging.getLogger(__name__)

_INSERT_EVENT = (
    "INSERT INTO cdp_events (message_id, received_month, store_id, type, event, user_id,"
    ' anonymous_id, "timestamp", received_at, properties, context, body) VALUES'
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (message_id, received_month) DO NOTHING"
)


@dataclass(frozen=True)
class ParsedEvent:
    message_id: str
    store_id: str
    body: dict[str, Any]
    month: dt.date

    def row(self) -> tuple[Any, ...]:
        b = self.body
        props = b.get("properties") if isinstance(b.get("properties"), dict) else {}
        context = b.get("context") if isinstance(b.get("context"), dict) else {}
        return (
            self.message_id, self.month, self.store_id, _text(b.get("type")) or "track", _text(b.get("event")),
            _text(b.get("userId")), _text(b.get("anonymousId")), _text(b.get("timestamp")),
            _text(b.get("receivedAt")), Jsonb(props), Jsonb(context), Jsonb(b),
        )  # fmt: skip


@dataclass(frozen=True)
class LoadResult:
    loaded: int
    rejected: int
    #: indexes (into the loaded messages) of events of a person with an erasure request
    erased: tuple[int, ...] = ()


def _text(value: Any) -> str | None:
    return value[:256] if isinstance(value, str) else None


def parse_event_message(subject: str, data: bytes) -> ParsedEvent:
    """One message from ``cdp.events.{storeId}`` → ParsedEvent; ValueError names what is wrong."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[:2] != ["cdp", "events"] or not parts[2]:
        raise ValueError("subject is not cdp.events.{storeId}")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("payload is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("payload is not an object")
    message_id = body.get("messageId")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 128:
        raise ValueError("messageId missing or invalid")
    if body.get("storeId") != parts[2]:
        raise ValueError("storeId in the body is not the subject's store")
    month = month_of(body.get("receivedAt"))
    if month is None:
        raise ValueError("receivedAt missing or not ISO-8601")
    return ParsedEvent(message_id, parts[2], body, month)


def _epoch(iso: object) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class CentralJob:
    """One worker of the central job; run as many as the load needs (they share the consumer)."""

    def __init__(
        self,
        config: CentralConfig,
        *,
        on_lag: Callable[[int], None] | None = None,
        metrics: CentralMetrics | None = None,
    ) -> None:
        self.config = config
        self.on_lag = on_lag
        self.metrics = metrics or CentralMetrics()
        self.lag: int | None = None
        self.loaded = 0
        self._partitions = PartitionSet()

    # -- PostgreSQL ------------------------------------------------------------------------
    async def _pg(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.config.postgres, autocommit=False)

    async def _nats(self, name: str) -> Client:
        return await connect(self.config.servers, self.config.credentials, name=name)

    async def create_schema(self) -> None:
        async with await self._pg() as pg:
            await pg.execute("SELECT pg_advisory_xact_lock(%s)", (0x63647073,))
            await pg.execute(SCHEMA)
            await pg.commit()

    async def load(
        self, pg: psycopg.AsyncConnection[Any], messages: Sequence[tuple[str, bytes]]
    ) -> LoadResult:
        """Load (subject, data) pairs in one transaction; caller acks after this returns."""
        try:
            return await self._load(pg, messages)
        except psycopg.errors.CheckViolation:  # another worker dropped an expired partition
            await pg.rollback()
            self._partitions.forget()
            return await self._load(pg, messages)

    async def _load(
        self, pg: psycopg.AsyncConnection[Any], messages: Sequence[tuple[str, bytes]]
    ) -> LoadResult:
        parsed: list[tuple[int, ParsedEvent]] = []
        rejects: list[tuple[str, str, str]] = []
        oldest = oldest_kept(self.config.retention_months)
        for index, (subject, data) in enumerate(messages):
            try:
                event = parse_event_message(subject, data)
            except ValueError as exc:
                rejects.append((subject[:200], str(exc), data[:200].decode("utf-8", "replace")))
                self.metrics.rejected.labels("invalid").inc()
                continue
            if event.month < oldest:
                self.metrics.rejected.labels("expired").inc()
                continue
            parsed.append((index, event))
        async with pg.cursor() as cur:
            users = sorted({u for _, p in parsed if isinstance(u := p.body.get("userId"), str)})
            erased: set[str] = set()
            if users:
                await cur.execute(
                    "SELECT DISTINCT user_id FROM cdp_erasure_requests WHERE user_id = ANY(%s)",
                    (users,),
                )
                erased = {r[0] for r in await cur.fetchall()}
            kept = [p for _, p in parsed if p.body.get("userId") not in erased]
            if kept:
                await self._partitions.ensure(cur, {p.month for p in kept})
                await cur.executemany(_INSERT_EVENT, [p.row() for p in kept])
            await self._side_tables(cur, kept)
            if rejects:
                await cur.executemany(
                    "INSERT INTO cdp_rejects (subject, reason, excerpt) VALUES (%s, %s, %s)",
                    rejects,
                )
        await pg.commit()
        self.loaded += len(kept)
        self.metrics.observe_batch((p.store_id, _epoch(p.body.get("receivedAt"))) for p in kept)
        gone = tuple(i for i, p in parsed if p.body.get("userId") in erased)
        return LoadResult(len(kept), len(rejects), gone)

    async def _side_tables(
        self, cur: psycopg.AsyncCursor[Any], parsed: Sequence[ParsedEvent]
    ) -> None:
        stores = sorted({p.store_id for p in parsed})
        if stores:
            await cur.executemany(
                "INSERT INTO cdp_stores VALUES (%s, now()) ON CONFLICT (store_id) DO UPDATE"
                " SET last_seen = now()",
                [(s,) for s in stores],
            )
        for p in parsed:
            name, props = p.body.get("event"), p.body.get("properties")
            if not isinstance(props, dict):
                continue
            if name == "Consent Updated" and isinstance(p.body.get("userId"), str):
                await cur.execute(
                    "INSERT INTO cdp_consent VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id) DO"
                    " UPDATE SET preferences = excluded.preferences, store_id = excluded.store_id,"
                    " message_id = excluded.message_id, updated_at = excluded.updated_at"
                    " WHERE cdp_consent.updated_at <= excluded.updated_at",
                    (p.body["userId"], Jsonb(props.get("categoryPreferences", {})), p.store_id,
                     p.message_id, str(p.body.get("timestamp", ""))),
                )  # fmt: skip
            elif name == "Customer Erased" and isinstance(props.get("requestId"), str):
                await cur.execute(
                    "INSERT INTO cdp_erasure_confirmations (request_id, store_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (props["requestId"], p.store_id),
                )
            elif name == "Sync Drops Reported":
                await cur.execute(
                    "INSERT INTO cdp_sync_drops VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (p.message_id, p.store_id, Jsonb(props.get("drops", {})),
                     str(p.body.get("timestamp", ""))),
                )  # fmt: skip

    # -- erasure ---------------------------------------------------------------------------
    async def request_erasure(
        self, user_id: str, request_id: str, stores: Sequence[str] = ()
    ) -> list[str]:
        """Record the request, delete the person from PostgreSQL and from the events stream,
        and publish the request on each store's downlink; returns the stores asked."""
        async with await self._pg() as pg:
            async with pg.cursor() as cur:
                await cur.execute(
                    "INSERT INTO cdp_erasure_requests (request_id, user_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (request_id, user_id),
                )
                await cur.execute("DELETE FROM cdp_events WHERE user_id = %s", (user_id,))
                await cur.execute("DELETE FROM cdp_consent WHERE user_id = %s", (user_id,))
                await cur.execute("SELECT store_id FROM cdp_stores ORDER BY store_id")
                targets = sorted({r[0] for r in await cur.fetchall()} | set(stores))
                await cur.executemany(
                    "INSERT INTO cdp_erasure_targets VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [(request_id, s) for s in targets],
                )
            await pg.commit()
        nc = await self._nats("edge-central-erasure")
        try:
            js = nc.jetstream(timeout=30)
            deleted = await delete_person_messages(js, EVENTS_STREAM, EVENTS_SUBJECTS, {user_id})
            log.info("erasure %s: %d stream messages deleted", request_id, deleted)
            payload = encode_downlink(ErasureRequest(request_id, user_id))
            for store in targets:
                msg_id = f"erasure-{request_id}-{store}"
                await js.publish(downlink_subject(store), payload, headers={"Nats-Msg-Id": msg_id})
        finally:
            await close_quietly(nc)
        return targets

    async def pending_erasures(self) -> list[dict[str, Any]]:
        """Erasure requests some asked store has not confirmed yet, oldest first."""
        async with await self._pg() as pg:
            cur = await pg.execute(
                "SELECT r.request_id, t.store_id, extract(epoch FROM now() - r.requested_at)"
                " FROM cdp_erasure_requests r JOIN cdp_erasure_targets t USING (request_id)"
                " LEFT JOIN cdp_erasure_confirmations c"
                "   ON c.request_id = t.request_id AND c.store_id = t.store_id"
                " WHERE c.request_id IS NULL ORDER BY r.requested_at, t.store_id"
            )
            rows = await cur.fetchall()
        by_request: dict[str, dict[str, Any]] = {}
        for request_id, store, age in rows:
            entry = by_request.setdefault(
                request_id, {"request_id": request_id, "age_s": round(float(age), 1), "stores": []}
            )
            entry["stores"].append(store)
        return list(by_request.values())

    # -- the consumer loop --------------------------------------------------------------------
    async def run(self, *, stop_when_idle: bool = False) -> None:
        """Consume forever (or until nothing is pending): retry loop around the connections."""
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port)
        attempt = 0
        while True:
            try:
                if await self._consume(stop_when_idle):
                    return
                attempt = 0
            except (TimeoutError, TransientSinkError, nats.errors.Error, OSError, psycopg.OperationalError) as exc:  # fmt: skip
                log.warning("central job disconnected, retrying: %s", exc)
                await asyncio.sleep(backoff_delay(attempt, cap_s=10))
                attempt += 1

    async def _consume(self, stop_when_idle: bool) -> bool:
        nc = await self._nats("edge-central")
        try:
            js = nc.jetstream(timeout=10)
            try:
                await js.consumer_info(EVENTS_STREAM, self.config.durable)
            except nats.js.errors.NotFoundError:
                raise TransientSinkError(
                    f"no consumer {EVENTS_STREAM}/{self.config.durable}: create the backbone"
                    " with `edge central streams`"
                ) from None
            sub = await js.pull_subscribe_bind(self.config.durable, stream=EVENTS_STREAM)
            async with await self._pg() as pg:
                async with _Forwarder(self.config) as forwarder:
                    last_report = last_retention = 0.0
                    while True:
                        now = time.monotonic()
                        if now - last_retention >= 3600:
                            await drop_expired(pg, self.config.retention_months)
                            self._partitions.forget()
                            last_retention = now
                        try:
                            msgs = await sub.fetch(self.config.fetch_batch, timeout=1)
                        except (TimeoutError, nats.errors.TimeoutError):
                            msgs = []
                        if msgs:
                            await self._handle(js, pg, forwarder, msgs)
                        now = time.monotonic()
                        if not msgs or now - last_report >= self.config.lag_report_s:
                            await self._report_lag(js)
                            last_report = now
                        if not msgs and stop_when_idle and self.lag == 0:
                            return True
                        if nc.is_closed:
                            raise TransientSinkError("NATS connection closed")
        finally:
            await close_quietly(nc)

    async def _handle(
        self, js: JetStreamContext, pg: psycopg.AsyncConnection[Any], forwarder: _Forwarder,
        msgs: list[Msg],
    ) -> None:  # fmt: skip
        result = await self.load(pg, [(m.subject, m.data) for m in msgs])
        await forwarder.forward(msgs)
        for index in result.erased:  # in flight when the erasure ran: remove from the stream too
            try:
                await js.delete_msg(EVENTS_STREAM, msgs[index].metadata.sequence.stream)
            except nats.js.errors.NotFoundError:
                pass
            self.metrics.erased.inc()
        for m in msgs:
            await m.ack()

    async def _report_lag(self, js: JetStreamContext) -> None:
        info = await js.consumer_info(EVENTS_STREAM, self.config.durable)
        self.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        self.metrics.pending.set(self.lag)
        if self.on_lag is not None:
            self.on_lag(self.lag)
        log.info("central consumer lag: %d messages", self.lag)


class _Forwarder:
    """Forwards loaded events to a Segment-compatible endpoint when ``forward_url`` is set."""

    def __init__(self, config: CentralConfig) -> None:
        self._sink: HttpSink | None = None
        if config.forward_url:
            self._sink = HttpSink(
                HttpSinkConfig(
                    enabled=True, base_url=config.forward_url, write_key=config.forward_write_key
                ),
                name="forward",
            )

    async def __aenter__(self) -> _Forwarder:
        if self._sink is not None:
            await self._sink.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sink is not None:
            await self._sink.__aexit__(None, None, None)

    async def forward(self, msgs: Sequence[Msg]) -> None:
        if self._sink is None:
            return
        events = []
        for m in msgs:
            try:
                parsed = parse_event_message(m.subject, m.data)
            except ValueError:
                continue
            events.append(OutboundEvent(0, parsed.message_id, m.data.decode()))
        if events:
            await self._sink.send(events)
