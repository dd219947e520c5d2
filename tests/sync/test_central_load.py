"""The central loader's staged path (COPY into a temp table, one INSERT … SELECT) against a
real PostgreSQL: the columns it derives, bodies PostgreSQL refuses, and workers racing over
the same redelivered messages."""

from __future__ import annotations

import asyncio
import json
import random
import time

import psycopg
import pytest

from sync.central import CentralJob
from sync.config import CentralConfig

RECEIVED = "2026-11-30T10:00:00.000Z"


def body(i: int, store: str = "s1", **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"type": "track", "event": "Product Viewed", "messageId": f"m-{i:06d}",
                              "userId": f"ct_{i % 7:032x}", "properties": {"sku": f"sku-{i}"},
                              "context": {"consent": {"categoryPreferences": {"cdp_sync": True}}},
                              "storeId": store, "receivedAt": RECEIVED, "timestamp": RECEIVED}  # fmt: skip
    out.update(extra)
    return out


def message(b: dict[str, object], raw: str | None = None) -> tuple[str, bytes]:
    return f"cdp.events.{b['storeId']}", (raw if raw is not None else json.dumps(b)).encode()


async def fresh(dsn: str) -> CentralJob:
    job = CentralJob(CentralConfig(postgres=dsn))
    await job.create_schema()
    return job


@pytest.mark.integration
def test_derived_columns_escapes_and_refused_bodies(postgres):
    odd = body(1, type="", event=7, userId="u" * 300, properties=[1, 2], context="x",
               note="tab\there\nnew line \\ back\\slash \"quoted\" é ✓")  # fmt: skip
    # valid JSON with raw whitespace (newline, tab, CR) between tokens: staged as it came
    spaced = json.dumps(body(2), indent="\t").replace("\n", "\r\n")
    nul = body(3, properties={"note": "a\u0000b"})  # JSON PostgreSQL's jsonb refuses
    surrogate = '{"messageId": "m-000004", "storeId": "s1", "receivedAt": "' + RECEIVED + '", "x": "\\ud800"}'
    garbage = b"\xff\xfe{}"
    nul_byte = b'{"messageId": "m-000006", "storeId": "s1", "note": "a\x00b"}'  # not JSON: a raw NUL
    batch = [message(odd), message(body(2), spaced), message(nul), ("cdp.events.s1", surrogate.encode()),
             ("cdp.events.s1", garbage), ("cdp.events.s1", nul_byte), message(body(5))]  # fmt: skip

    async def go():
        job = await fresh(postgres)
        async with await psycopg.AsyncConnection.connect(postgres) as pg:
            first = await job.load(pg, batch)
            again = await job.load(pg, batch)  # a redelivery changes nothing
        return first, again

    first, again = asyncio.run(go())
    assert (first.loaded, first.rejected) == (3, 4) and (again.loaded, again.rejected) == (3, 4)
    with psycopg.connect(postgres) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT message_id, type, event, user_id, properties, context, body FROM cdp_events")}  # fmt: skip
        rejects = conn.execute("SELECT reason, excerpt FROM cdp_rejects ORDER BY id").fetchall()
        stores = conn.execute("SELECT store_id FROM cdp_stores").fetchall()
    assert sorted(rows) == ["m-000001", "m-000002", "m-000005"]
    type_, event, user, props, context, stored = rows["m-000001"]
    assert (type_, event, user, props, context) == ("track", None, "u" * 256, {}, {})
    assert stored == odd, "the body is stored as sent, escapes and all"
    assert rows["m-000002"][5] == body(2)
    reasons = [r for r, _ in rejects]
    assert reasons.count("payload is not UTF-8 JSON") == 4
    assert sum(r.startswith("payload not storable as jsonb") for r in reasons) == 4
    assert any("m-000003" in excerpt for _, excerpt in rejects)
    assert any("m-000006" in excerpt and "a\ufffdb" in excerpt for _, excerpt in rejects), "NUL kept out"
    assert stores == [("s1",)]


@pytest.mark.integration
def test_four_workers_racing_over_redelivered_messages_load_each_once(postgres):
    """Every message is in two batches given to different workers at the same time (what a
    redelivery after ``ack_wait`` does): no deadlock, no error, each message once."""
    stores = [f"s{i}" for i in range(40)]
    messages = [message(body(i, random.Random(i).choice(stores))) for i in range(6000)]
    rnd = random.Random(17)
    copies = messages + messages
    rnd.shuffle(copies)
    batches = [copies[i : i + 250] for i in range(0, len(copies), 250)]

    async def worker(job: CentralJob, mine: list[list[tuple[str, bytes]]]) -> int:
        async with await psycopg.AsyncConnection.connect(postgres) as pg:
            for batch in mine:
                await job.load(pg, batch)
        return job.loaded

    async def go():
        jobs = [await fresh(postgres) for _ in range(4)]
        return await asyncio.gather(*(worker(j, batches[k::4]) for k, j in enumerate(jobs)))

    loaded = asyncio.run(go())
    assert sum(loaded) == len(copies), "every worker counted what it committed"
    with psycopg.connect(postgres) as conn:
        ids = [r[0] for r in conn.execute("SELECT message_id FROM cdp_events")]
        seen = {r[0] for r in conn.execute("SELECT store_id FROM cdp_stores")}
    assert len(ids) == len(set(ids)) == 6000
    assert seen == {json.loads(d)["storeId"] for _, d in messages}


@pytest.mark.integration
def test_the_pull_loop_returns_what_is_there_at_once_and_waits_only_when_there_is_nothing(nats_server):
    """The worker's own pull loop (not nats-py's fetch): a partial batch comes back without
    waiting for the request to expire; with nothing there it lingers and returns shortly after
    the next message is published; every message is delivered once and acks stick."""
    from sync.backbone import EVENTS_STREAM
    from sync.central import _Puller
    from sync.nats_sink import connect

    config = nats_server.central_config()

    async def go():
        nc = await connect(nats_server.urls, "", name="test-puller")
        js = nc.jetstream(timeout=10)
        try:
            for i in range(30):
                await js.publish("cdp.events.s1", json.dumps(body(i)).encode())
            puller = _Puller(nc, EVENTS_STREAM, config.durable)
            await puller.start()
            started = time.monotonic()
            first = await puller.fetch(500, timeout=5)
            partial_s = time.monotonic() - started
            for m in first:
                await m.ack()

            async def later():
                await asyncio.sleep(0.5)
                await js.publish("cdp.events.s1", json.dumps(body(99)).encode())

            publisher = asyncio.create_task(later())
            started = time.monotonic()
            second = await puller.fetch(500, timeout=5)
            linger_s = time.monotonic() - started
            await publisher
            for m in second:
                await m.ack()
            await nc.flush()
            empty = await puller.fetch(500, timeout=0.5)  # acked: nothing comes back
            info = await js.consumer_info(EVENTS_STREAM, config.durable)
            return first, partial_s, second, linger_s, empty, info
        finally:
            await nc.close()

    first, partial_s, second, linger_s, empty, info = asyncio.run(go())
    assert [json.loads(m.data)["messageId"] for m in first] == [f"m-{i:06d}" for i in range(30)]
    assert partial_s < 2.5, f"a partial batch waited {partial_s:.2f} s (the request expires at 5 s)"
    assert [json.loads(m.data)["messageId"] for m in second] == ["m-000099"]
    assert 0.4 < linger_s < 2.5, f"lingered {linger_s:.2f} s for a message published after 0.5 s"
    assert empty == [] and info.num_ack_pending == 0 and info.num_pending == 0
