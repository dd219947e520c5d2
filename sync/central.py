"""The central sync job: JetStream ``cdp.events.>`` → PostgreSQL, idempotently; erasure fan-out.

A durable pull consumer (``central``, created by :mod:`sync.backbone`) over every store's
subject, shared by every worker process. Each worker pulls batches itself (:class:`_Puller`,
the JetStream pull API with one subscription callback) and fetches the next batch while the
current one loads. A batch is loaded in one PostgreSQL transaction: the payloads are parsed
once for what the job must check (subject, messageId, storeId, receivedAt, erasure requests),
``COPY``-ed as received into a temporary staging table, and moved by one ``INSERT … SELECT …
ON CONFLICT DO NOTHING`` into the month's partition (:mod:`sync.central_schema`;
``(messageId, month)`` primary key; type, event, ids, properties and context derived in SQL).
Consent changes are upserted into ``cdp_consent``, erasure confirmations and drop reports go
to their tables, and the batch is acked only after the commit — so a crash anywhere redelivers
and the primary key absorbs it. ``cdp_stores.last_seen`` is touched after the commit, skipping
rows another worker holds, so workers never wait on each other's store rows. A payload
PostgreSQL refuses as ``jsonb`` (e.g. ``\u0000``) is recorded in ``cdp_rejects`` and counted,
the rest of its batch loads. Events of a person with an erasure request are not loaded even if
they were in flight (and are deleted from the stream). Optionally every loaded event is also
forwarded to a Segment-compatible endpoint before the ack. :meth:`CentralJob.request_erasure`
records an erasure, deletes what is loaded and what the events stream holds, and publishes the
request on every known store's downlink; :meth:`CentralJob.pending_erasures` lists what stores
have not confirmed.
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

from edge.backoff import backoff_delay, raise_if_cancelled
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

#: each fetched batch is COPY-ed here (one per connection, emptied at every commit) and moved
#: into the partitioned table by one INSERT … SELECT: no per-row statement, no JSON re-encoding
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS cdp_stage (message_id text NOT NULL, received_month date"
    " NOT NULL, store_id text NOT NULL, body jsonb NOT NULL) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = "COPY cdp_stage (message_id, received_month, store_id, body) FROM STDIN"


def _text_sql(key: str) -> str:
    """The body's string field ``key`` (at most 256 characters), else NULL — as ``_text``."""
    return f"CASE WHEN jsonb_typeof(body->'{key}') = 'string' THEN left(body->>'{key}', 256) END"


def _object_sql(key: str) -> str:
    return f"CASE WHEN jsonb_typeof(body->'{key}') = 'object' THEN body->'{key}' ELSE '{{}}' END"


_INSERT_STAGED = (
    "INSERT INTO cdp_events (message_id, received_month, store_id, type, event, user_id,"
    ' anonymous_id, "timestamp", received_at, properties, context, body)'
    f" SELECT message_id, received_month, store_id, coalesce(nullif({_text_sql('type')}, ''),"
    f" 'track'), {_text_sql('event')}, {_text_sql('userId')}, {_text_sql('anonymousId')},"
    f" {_text_sql('timestamp')}, {_text_sql('receivedAt')}, {_object_sql('properties')},"
    f" {_object_sql('context')}, body FROM cdp_stage"
    " ORDER BY message_id"  # one lock order: two workers given the same redelivery cannot deadlock
    " ON CONFLICT (message_id, received_month) DO NOTHING"
)
#: names of the events that also go to a side table (everything else is one COPY row)
_SIDE_EVENTS = frozenset({"Consent Updated", "Customer Erased", "Sync Drops Reported"})


@dataclass(frozen=True)
class ParsedEvent:
    message_id: str
    store_id: str
    body: dict[str, Any]
    month: dt.date

    #: the payload as received (UTF-8 JSON text): staged as it is, never re-encoded
    text: str = ""


@dataclass(frozen=True)
class LoadResult:
    loaded: int
    rejected: int
    #: indexes (into the loaded messages) of events of a person with an erasure request
    erased: tuple[int, ...] = ()


def _storable(text: str) -> str:
    """``text`` for a PostgreSQL text column, which cannot hold NUL."""
    return text.replace("\x00", "\ufffd")


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format (one C-level scan when nothing needs escaping)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value or "\r" in value or "\t" in value:
        value = value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return value


def parse_event_message(subject: str, data: bytes) -> ParsedEvent:
    """One message from ``cdp.events.{storeId}`` → ParsedEvent; ValueError names what is wrong."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[:2] != ["cdp", "events"] or not parts[2] or "\x00" in subject:
        raise ValueError("subject is not cdp.events.{storeId}")
    try:
        text = data.decode("utf-8")
        body = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("payload is not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise ValueError("payload is not an object")
    message_id = body.get("messageId")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 128 or "\x00" in message_id:
        raise ValueError("messageId missing or invalid")
    if body.get("storeId") != parts[2]:
        raise ValueError("storeId in the body is not the subject's store")
    month = month_of(body.get("receivedAt"))
    if month is None:
        raise ValueError("receivedAt missing or not ISO-8601")
    return ParsedEvent(message_id, parts[2], body, month, text)


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
        self._stores: set[str] = set()  # in cdp_stores, as this worker knows (committed)

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

    async def load(self, pg: psycopg.AsyncConnection[Any], messages: Sequence[tuple[str, bytes]]) -> LoadResult:
        """Load (subject, data) pairs in one transaction; caller acks after this returns."""
        unstorable: dict[int, str] = {}
        for attempt in range(3):
            try:
                return await self._load(pg, messages, unstorable)
            except psycopg.errors.CheckViolation:  # another worker dropped an expired partition
                await pg.rollback()
                self._partitions.forget()
            except psycopg.errors.DataError:  # JSON PostgreSQL will not store (e.g. \u0000)
                await pg.rollback()
                unstorable |= await self._unstorable(pg, messages, unstorable)
            except psycopg.errors.TransactionRollback:  # a deadlock with another worker
                await pg.rollback()
                await asyncio.sleep(0.05 * (attempt + 1))
        # still refused: park the batch in cdp_rejects rather than block the consumer for ever
        log.error("central: a batch PostgreSQL keeps refusing is recorded in cdp_rejects")
        everything = {i: "refused by PostgreSQL" for i in range(len(messages))}
        return await self._load(pg, messages, everything | unstorable)

    async def _load(
        self, pg: psycopg.AsyncConnection[Any], messages: Sequence[tuple[str, bytes]],
        unstorable: dict[int, str],
    ) -> LoadResult:  # fmt: skip
        parsed: list[tuple[int, ParsedEvent]] = []
        rejects: list[tuple[str, str, str]] = []
        reasons: list[str] = []
        oldest = oldest_kept(self.config.retention_months)
        for index, (subject, data) in enumerate(messages):
            try:
                if index in unstorable:
                    raise ValueError(unstorable[index])
                event = parse_event_message(subject, data)
            except ValueError as exc:
                rejects.append((_storable(subject[:200]), str(exc), _storable(data[:200].decode("utf-8", "replace"))))
                reasons.append("unstorable" if index in unstorable else "invalid")
                continue
            if event.month < oldest:
                reasons.append("expired")
                continue
            parsed.append((index, event))
        users = sorted({u for _, p in parsed if isinstance(u := p.body.get("userId"), str)})
        async with pg.cursor() as cur:
            erased: set[str] = set()
            if users:
                await cur.execute(
                    "SELECT DISTINCT user_id FROM cdp_erasure_requests WHERE user_id = ANY(%s)",
                    (users,),
                )
                erased = {r[0] for r in await cur.fetchall()}
            kept = [p for _, p in parsed if p.body.get("userId") not in erased] if erased else [p for _, p in parsed]
            if kept:
                await self._partitions.ensure(cur, {p.month for p in kept})
                await cur.execute(_STAGE)
                async with cur.copy(_COPY_STAGE) as copy:
                    await copy.write(
                        "".join(
                            [
                                f"{_copy_text(p.message_id)}\t{p.month.isoformat()}\t"
                                f"{_copy_text(p.store_id)}\t{_copy_text(p.text)}\n"
                                for p in kept
                            ]
                        )
                    )
                await cur.execute(_INSERT_STAGED)
            await self._side_tables(cur, [p for p in kept if p.body.get("event") in _SIDE_EVENTS])
            new_stores = sorted({p.store_id for p in kept} - self._stores)
            if new_stores:  # sorted: two workers meeting the same new stores cannot deadlock
                await cur.execute(
                    "INSERT INTO cdp_stores SELECT unnest(%s::text[]), now() ON CONFLICT DO NOTHING",
                    (new_stores,),
                )
            if rejects:
                await cur.executemany(
                    "INSERT INTO cdp_rejects (subject, reason, excerpt) VALUES (%s, %s, %s)",
                    rejects,
                )
        await pg.commit()
        self._stores.update(new_stores)
        if kept:
            await self._touch_stores(pg, {p.store_id for p in kept})
        for reason in reasons:
            self.metrics.rejected.labels(reason).inc()
        self.loaded += len(kept)
        self.metrics.observe_batch((p.store_id, _epoch(p.body.get("receivedAt"))) for p in kept)
        gone = tuple(i for i, p in parsed if p.body.get("userId") in erased)
        return LoadResult(len(kept), len(rejects), gone)

    async def _touch_stores(self, pg: psycopg.AsyncConnection[Any], stores: set[str]) -> None:
        """``cdp_stores.last_seen`` in a statement of its own after the load's commit: rows
        another worker is touching right now are skipped, not waited for (every worker loads
        from every store, so a row lock held for a whole load would serialise the workers)."""
        await pg.execute(
            "UPDATE cdp_stores SET last_seen = now() WHERE store_id IN (SELECT store_id FROM"
            " cdp_stores WHERE store_id = ANY(%s) AND last_seen < now() - interval '1 second'"
            " ORDER BY store_id FOR UPDATE SKIP LOCKED)",
            (sorted(stores),),
        )
        await pg.commit()

    async def _unstorable(
        self, pg: psycopg.AsyncConnection[Any], messages: Sequence[tuple[str, bytes]],
        known: dict[int, str],
    ) -> dict[int, str]:  # fmt: skip
        """Which payloads PostgreSQL refuses as jsonb (the slow path after a failed COPY)."""
        found: dict[int, str] = {}
        async with pg.cursor() as cur:
            for index, (subject, data) in enumerate(messages):
                if index in known:
                    continue
                try:
                    text = parse_event_message(subject, data).text
                except ValueError:
                    continue  # refused by the parser, with its own reason
                try:
                    async with pg.transaction():
                        await cur.execute("SELECT %s::jsonb", (text,))
                except psycopg.errors.DataError as exc:
                    detail = (exc.diag.message_primary or type(exc).__name__)[:150]
                    found[index] = f"payload not storable as jsonb: {detail}"
        await pg.rollback()
        return found

    async def _side_tables(self, cur: psycopg.AsyncCursor[Any], parsed: Sequence[ParsedEvent]) -> None:
        """Consent changes, erasure confirmations and drop reports (``parsed`` holds only those)."""
        for p in sorted(parsed, key=lambda p: str(p.body.get("userId"))):
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
    async def request_erasure(self, user_id: str, request_id: str, stores: Sequence[str] = ()) -> list[str]:
        """Record the request, delete the person from PostgreSQL and from the events stream,
        and publish the request on each store's downlink; returns the stores asked."""
        async with await self._pg() as pg:
            async with pg.cursor() as cur:
                await cur.execute(
                    "INSERT INTO cdp_erasure_requests (request_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
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
                raise_if_cancelled()
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
            sub = _Puller(nc, EVENTS_STREAM, self.config.durable)
            await sub.start()
            async with await self._pg() as pg:
                async with _Forwarder(self.config) as forwarder:
                    last_report = last_retention = 0.0
                    # the next batch is fetched while this one is loaded and acked: NATS and
                    # PostgreSQL work at the same time (one fetch in flight per worker)
                    ahead = asyncio.create_task(self._fetch(sub))
                    try:
                        while True:
                            raise_if_cancelled()  # a fetch that lost our cancellation
                            now = time.monotonic()
                            if now - last_retention >= 3600:
                                await drop_expired(pg, self.config.retention_months)
                                self._partitions.forget()
                                last_retention = now
                            msgs = await ahead
                            ahead = asyncio.create_task(self._fetch(sub))
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
                    finally:  # a batch fetched but not loaded is redelivered after ack_wait
                        ahead.cancel()
                        await asyncio.gather(ahead, return_exceptions=True)
        finally:
            await close_quietly(nc)

    async def _fetch(self, sub: _Puller) -> list[Msg]:
        return await sub.fetch(self.config.fetch_batch, timeout=1)

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


class _Puller:
    """Pull requests on the shared durable consumer, replies gathered by one subscription
    callback (JetStream's ``$JS.API.CONSUMER.MSG.NEXT`` API, as ``fetch`` uses it).

    nats-py's ``fetch`` waits for each message with its own task and timeout — at a few
    thousand messages a second that client-side loop, not the server, is the worker's limit.
    Here messages are appended as they arrive; :meth:`fetch` asks for what is available
    (``no_wait``) and only when there is nothing lingers up to ``timeout`` for the next ones,
    returning soon after they stop coming. Every delivery is kept, including one meant for an
    earlier request that arrived late: it is a real delivery, acked like any other.
    """

    def __init__(self, nc: Client, stream: str, durable: str) -> None:
        self._nc, self._next = nc, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._prefix = nc.new_inbox()
        self._buffer: list[Msg] = []
        self._wake = asyncio.Event()  # set by every message and status
        self._request = ""  # the reply subject of the request in flight
        self._ended = False  # the server ended that request (404, 408, 409)
        self._serial = 0
        self._error: str | None = None

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_message, pending_msgs_limit=-1,
                                 pending_bytes_limit=-1)  # fmt: skip

    async def _on_message(self, msg: Msg) -> None:
        status = JetStreamContext.is_status_msg(msg)
        if not status:
            self._buffer.append(msg)
        elif status == "100":  # idle heartbeat / flow control
            return
        elif msg.subject == self._request:  # 404 no messages, 408 expired, 409 …: request over
            description = (msg.headers or {}).get("Description", "")
            if status not in ("404", "408", "409") or "deleted" in description.lower():
                self._error = f"{status} {description}".strip()
            self._ended = True
        self._wake.set()

    async def _ask(self, batch: int, body: dict[str, Any]) -> None:
        self._serial += 1
        self._request, self._ended = f"{self._prefix}.{self._serial}", False
        await self._nc.publish(self._next, json.dumps({"batch": batch, **body}).encode(), reply=self._request)

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Until ``done()`` (True) or ``timeout`` passes with it still false (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._wake.clear()
            try:
                async with asyncio.timeout(left):
                    await self._wake.wait()
            except TimeoutError:
                return done()
        return True

    def _more_than(self, count: int) -> Callable[[], bool]:
        return lambda: len(self._buffer) > count or self._ended

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        if len(self._buffer) < batch:  # what is there now
            await self._ask(batch - len(self._buffer), {"no_wait": True})
            await self._wait(lambda: len(self._buffer) >= batch or self._ended, timeout)
        if not self._buffer:  # nothing: linger until messages come (or the request expires)
            await self._ask(batch, {"expires": int(timeout * 1e9)})
            await self._wait(lambda: bool(self._buffer) or self._ended, timeout + 0.5)
            # then take what follows closely, up to the batch (the rest stays for next time)
            while self._buffer and len(self._buffer) < batch and not self._ended:
                if not await self._wait(self._more_than(len(self._buffer)), 0.02):
                    break
        if self._error is not None and not self._buffer:  # what was delivered is loaded first
            error, self._error = self._error, None
            raise TransientSinkError(f"pull on {self._next} refused: {error}")
        out, self._buffer = self._buffer[:batch], self._buffer[batch:]
        return out


class _Forwarder:
    """Forwards loaded events to a Segment-compatible endpoint when ``forward_url`` is set."""

    def __init__(self, config: CentralConfig) -> None:
        self._sink: HttpSink | None = None
        if config.forward_url:
            self._sink = HttpSink(
                HttpSinkConfig(enabled=True, base_url=config.forward_url, write_key=config.forward_write_key),
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
