"""The central sync job: JetStream ``cdp.events.>`` → PostgreSQL, idempotently; erasure fan-out.

A durable pull consumer (``central``) over every store's subject. Each fetched batch is parsed,
loaded in one PostgreSQL transaction (``messageId`` primary key, ``ON CONFLICT DO NOTHING``,
properties and context as JSONB; consent changes upserted into ``cdp_consent``; erasure
confirmations and drop reports into their tables), and acked only after the commit — so a crash
anywhere redelivers and the primary key absorbs it. Events of a person with an erasure request
are not loaded even if they were in flight. Optionally every loaded event is also forwarded to
a Segment-compatible endpoint before the ack. :meth:`CentralJob.request_erasure` records an
erasure, deletes what is loaded and publishes the request on every known store's downlink.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import psycopg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg.types.json import Jsonb

from edge.backoff import backoff_delay
from sync.config import CentralConfig, HttpSinkConfig
from sync.downlink import DOWNLINK_SUBJECTS
from sync.errors import TransientSinkError
from sync.http_sink import HttpSink
from sync.messages import ErasureRequest, downlink_subject, encode_downlink
from sync.nats_sink import EVENTS_SUBJECTS, connect, ensure_stream
from sync.sink import OutboundEvent

__all__ = ["SCHEMA", "CentralJob", "LoadResult", "parse_event_message"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cdp_events (
    message_id text PRIMARY KEY,
    store_id text NOT NULL,
    type text NOT NULL,
    event text,
    user_id text,
    anonymous_id text,
    "timestamp" text,
    received_at text,
    properties jsonb NOT NULL,
    context jsonb NOT NULL,
    body jsonb NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cdp_events_user ON cdp_events (user_id);
CREATE TABLE IF NOT EXISTS cdp_consent (
    user_id text PRIMARY KEY, preferences jsonb NOT NULL, store_id text NOT NULL,
    message_id text NOT NULL, updated_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS cdp_stores (store_id text PRIMARY KEY, last_seen timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS cdp_erasure_requests (
    request_id text PRIMARY KEY, user_id text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cdp_erasure_user ON cdp_erasure_requests (user_id);
CREATE TABLE IF NOT EXISTS cdp_erasure_confirmations (
    request_id text NOT NULL, store_id text NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, store_id)
);
CREATE TABLE IF NOT EXISTS cdp_sync_drops (
    message_id text PRIMARY KEY, store_id text NOT NULL, drops jsonb NOT NULL,
    reported_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS cdp_rejects (
    id bigserial PRIMARY KEY, subject text NOT NULL, reason text NOT NULL, excerpt text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"""

_INSERT_EVENT = (
    "INSERT INTO cdp_events (message_id, store_id, type, event, user_id, anonymous_id,"
    ' "timestamp", received_at, properties, context, body) VALUES'
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING"
)


@dataclass(frozen=True)
class ParsedEvent:
    message_id: str
    store_id: str
    body: dict[str, Any]

    def row(self) -> tuple[Any, ...]:
        b = self.body
        props = b.get("properties") if isinstance(b.get("properties"), dict) else {}
        context = b.get("context") if isinstance(b.get("context"), dict) else {}
        return (
            self.message_id, self.store_id, _text(b.get("type")) or "track", _text(b.get("event")),
            _text(b.get("userId")), _text(b.get("anonymousId")), _text(b.get("timestamp")),
            _text(b.get("receivedAt")), Jsonb(props), Jsonb(context), Jsonb(b),
        )  # fmt: skip


@dataclass(frozen=True)
class LoadResult:
    loaded: int
    rejected: int


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
    return ParsedEvent(message_id, parts[2], body)


class CentralJob:
    def __init__(
        self,
        config: CentralConfig,
        *,
        on_lag: Callable[[int], None] | None = None,
        stream: str = "CDP_EVENTS",
        downlink_stream: str = "CDP_DOWNLINK",
        replicas: int | None = None,
    ) -> None:
        self.config = config
        self.stream = stream
        self.downlink_stream = downlink_stream
        self.replicas = config.replicas if replicas is None else replicas
        self.on_lag = on_lag
        self.lag: int | None = None
        self.loaded = 0

    # -- PostgreSQL ------------------------------------------------------------------------
    async def _pg(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.config.postgres, autocommit=False)

    async def create_schema(self) -> None:
        async with await self._pg() as pg:
            await pg.execute(SCHEMA)
            await pg.commit()

    async def load(
        self, pg: psycopg.AsyncConnection[Any], messages: Sequence[tuple[str, bytes]]
    ) -> LoadResult:
        """Load (subject, data) pairs in one transaction; caller acks after this returns."""
        parsed: list[ParsedEvent] = []
        rejects: list[tuple[str, str, str]] = []
        for subject, data in messages:
            try:
                parsed.append(parse_event_message(subject, data))
            except ValueError as exc:
                rejects.append((subject[:200], str(exc), data[:200].decode("utf-8", "replace")))
        async with pg.cursor() as cur:
            users = sorted({u for p in parsed if isinstance(u := p.body.get("userId"), str)})
            erased: set[str] = set()
            if users:
                await cur.execute(
                    "SELECT DISTINCT user_id FROM cdp_erasure_requests WHERE user_id = ANY(%s)",
                    (users,),
                )
                erased = {r[0] for r in await cur.fetchall()}
            rows = [p.row() for p in parsed if p.body.get("userId") not in erased]
            if rows:
                await cur.executemany(_INSERT_EVENT, rows)
            await self._side_tables(cur, [p for p in parsed if p.body.get("userId") not in erased])
            if rejects:
                await cur.executemany(
                    "INSERT INTO cdp_rejects (subject, reason, excerpt) VALUES (%s, %s, %s)",
                    rejects,
                )
        await pg.commit()
        self.loaded += len(parsed)
        return LoadResult(len(parsed), len(rejects))

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

    # -- erasure fan-out ---------------------------------------------------------------------
    async def request_erasure(
        self, user_id: str, request_id: str, stores: Sequence[str] = ()
    ) -> list[str]:
        """Record, delete what is loaded, publish to each store's downlink; returns the stores."""
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
                known = [r[0] for r in await cur.fetchall()]
            await pg.commit()
        targets = sorted(set(known) | set(stores))
        nc = await connect(self.config.servers, name="edge-central-erasure")
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.downlink_stream, DOWNLINK_SUBJECTS, replicas=self.replicas,
                                duplicate_window_s=3600)  # fmt: skip
            payload = encode_downlink(ErasureRequest(request_id, user_id))
            for store in targets:
                msg_id = f"erasure-{request_id}-{store}"
                await js.publish(downlink_subject(store), payload, headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()
        return targets

    # -- the consumer loop --------------------------------------------------------------------
    async def run(self, *, stop_when_idle: bool = False) -> None:
        """Consume forever (or until nothing is pending): retry loop around the connections."""
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
        nc: Client = await connect(self.config.servers, name="edge-central")
        try:
            js = nc.jetstream(timeout=10)
            await ensure_stream(js, self.stream, EVENTS_SUBJECTS, replicas=self.replicas,
                                duplicate_window_s=3600)  # fmt: skip
            sub = await js.pull_subscribe(
                EVENTS_SUBJECTS, durable=self.config.durable, stream=self.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                      deliver_policy=DeliverPolicy.ALL,
                                      max_ack_pending=20_000, ack_wait=60),
            )  # fmt: skip
            async with await self._pg() as pg:
                async with _Forwarder(self.config) as forwarder:
                    last_report = 0.0
                    while True:
                        try:
                            msgs = await sub.fetch(self.config.fetch_batch, timeout=1)
                        except (TimeoutError, nats.errors.TimeoutError):
                            msgs = []
                        if msgs:
                            await self._handle(pg, forwarder, msgs)
                        now = time.monotonic()
                        if not msgs or now - last_report >= self.config.lag_report_s:
                            await self._report_lag(js)
                            last_report = now
                        if not msgs and stop_when_idle and self.lag == 0:
                            return True
                        if nc.is_closed:
                            raise TransientSinkError("NATS connection closed")
        finally:
            await nc.close()

    async def _handle(
        self, pg: psycopg.AsyncConnection[Any], forwarder: _Forwarder, msgs: list[Msg]
    ) -> None:
        await self.load(pg, [(m.subject, m.data) for m in msgs])
        await forwarder.forward(msgs)
        for m in msgs:
            await m.ack()

    async def _report_lag(self, js: JetStreamContext) -> None:
        info = await js.consumer_info(self.stream, self.config.durable)
        self.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
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
