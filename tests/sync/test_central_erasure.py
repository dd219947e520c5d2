"""An erasure issued centrally: gone from PostgreSQL and JetStream, confirmed by every store.

Two stores with their own identities on a hub that admits only the fleet; each store erases with
the gateway's own :class:`edge.decisioning.erasure.Eraser` and sends its ``Customer Erased``
confirmation through its outbox, like the running gateway does.
"""

from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest
from helpers import Source, expected_ids, fill, mixed_specs, token

from edge import schema
from edge.decisioning.erasure import Eraser
from edge.decisioning.identity import Identity
from edge.events import parse_event
from edge.journal import Journal
from sync.central import CentralJob
from sync.config import DownlinkConfig, NatsSinkConfig, SyncConfig
from sync.downlink import Downlink, DownlinkHandlers
from sync.metrics import SyncMetrics
from sync.nats_sink import JetStreamSink, connect
from sync.outbox import Outbox

PERSON = token(5)


class Store:
    def __init__(self, store_id: str, journal: Journal, seed: str, urls: list[str]) -> None:
        self.id, self.journal, self.urls, self.seed = store_id, journal, urls, seed
        self.eraser = Eraser(journal, Identity(b"k" * 32), time.time)
        self.source = Source(store_id, "kiosk-1", "kiosk", "mqtt")

    async def sync(self) -> None:
        box = Outbox(self.journal, SyncConfig(), lambda u: not self.eraser.is_suppressed(u), SyncMetrics())
        sink = JetStreamSink(NatsSinkConfig(enabled=True, servers=self.urls, credentials=self.seed), self.id)
        await box.run_sink("nats", lambda: sink, until_caught_up=True)

    async def apply_downlink(self) -> int:
        handlers = DownlinkHandlers(lambda u, p, s: None, self.eraser.erase, lambda b: None, lambda d: None)
        config = DownlinkConfig(enabled=True, servers=self.urls, credentials=self.seed)
        down = Downlink(self.journal, config, handlers, self.id, self.journal.path.parent, SyncMetrics())
        applied = await down.consume_available()
        for request_id, erased_ms, removed in self.eraser.pending_confirmations():  # as the gateway does
            raw = {
                "type": "track",
                "event": "Customer Erased",
                "messageId": f"erased-{self.id}-{request_id}",
                "properties": {"requestId": request_id, "erasedMs": erased_ms, "removed": removed},
            }
            gateway = Source(self.id, "gateway", "gateway", "local")
            self.journal.commit([parse_event(raw, gateway, int(time.time() * 1000))])
            self.eraser.confirmed(request_id)
        return applied


async def stream_bodies(urls: list[str], seed: str) -> list[bytes]:
    nc = await connect(urls, seed, name="audit")
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("cdp.events.>", stream="CDP_EVENTS")
        bodies: list[bytes] = []
        while True:
            try:
                msgs = await sub.fetch(500, timeout=1)
            except TimeoutError:
                return bodies
            bodies += [m.data for m in msgs]
            if msgs[-1].metadata.num_pending == 0:
                return bodies
    finally:
        await nc.close()


@pytest.mark.integration
def test_central_erasure_leaves_no_message_of_the_person_and_every_store_confirms(
    tmp_path, secured_nats, fleet, postgres
):
    urls = secured_nats.urls
    job = CentralJob(secured_nats.central_config(postgres=postgres, lag_report_s=0.5))
    stores, expected, of_person = [], set(), set()
    for n, store_id in enumerate(["s1", "s2"]):
        journal = Journal(tmp_path / f"{store_id}.db", synchronous="normal", migrations=schema.migrations())
        store = Store(store_id, journal, str(fleet.store_seed(store_id)), urls)
        events = fill(journal, mixed_specs(600, seed=n + 1, users=20), start=n * 10_000, source=store.source)
        expected |= expected_ids(events)
        of_person |= {e.message_id for e in events if e.user_id == PERSON}
        stores.append(store)
    assert expected & of_person, "the person has consented events to erase"

    async def go():
        await job.create_schema()
        for store in stores:
            await store.sync()
        await job.run(stop_when_idle=True)
        with psycopg.connect(postgres) as conn:
            before = conn.execute("SELECT count(*) FROM cdp_events WHERE user_id = %s", (PERSON,)).fetchone()[0]
        assert before > 0
        asked = await job.request_erasure(PERSON, "req-1")
        pending_before = await job.pending_erasures()
        # one of the person's events was in flight while the erasure ran: it arrives afterwards
        nc = await connect(urls, str(fleet.store_seed("s1")), store_id="s1")
        late = {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "late-1",
            "storeId": "s1",
            "userId": PERSON,
            "receivedAt": "2026-12-01T10:00:00.000Z",
            "properties": {},
        }
        await nc.jetstream().publish("cdp.events.s1", json.dumps(late).encode(), headers={"Nats-Msg-Id": "late-1"})
        await nc.close()
        for store in stores:
            assert await store.apply_downlink() == 1
            await store.sync()
        await job.run(stop_when_idle=True)
        return asked, pending_before, await job.pending_erasures()

    asked, pending_before, pending_after = asyncio.run(go())
    assert asked == ["s1", "s2"]
    assert [(p["request_id"], p["stores"]) for p in pending_before] == [("req-1", ["s1", "s2"])]
    assert pending_after == [], "every store confirmed"
    bodies = asyncio.run(stream_bodies(urls, secured_nats.central_credentials))
    assert bodies and not [b for b in bodies if PERSON.encode() in b], "no message of the person in JetStream"
    with psycopg.connect(postgres) as conn:
        rows = conn.execute("SELECT count(*) FROM cdp_events WHERE body::text LIKE %s", (f"%{PERSON}%",)).fetchone()[0]
        confirmed = conn.execute("SELECT store_id FROM cdp_erasure_confirmations ORDER BY 1").fetchall()
        loaded = {r[0] for r in conn.execute("SELECT message_id FROM cdp_events")}
    assert rows == 0 and confirmed == [("s1",), ("s2",)]
    assert loaded == (expected - of_person) | {"erased-s1-req-1", "erased-s2-req-1"}, (
        "everyone else's events stay, once"
    )
    for store in stores:
        with store.journal.connection() as conn:
            assert conn.execute("SELECT count(*) FROM events WHERE user_id = ?", (PERSON,)).fetchone()[0] == 0
        store.journal.close()
