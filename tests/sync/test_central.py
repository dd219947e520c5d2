"""The central job: JetStream → PostgreSQL, idempotent; and a 3-node cluster losing a node."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

import psycopg
import pytest
from helpers import Source, Spec, expected_ids, fill, mixed_specs, token
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.journal import Journal
from sync import MIGRATIONS
from sync.central import CentralJob, parse_event_message
from sync.config import NatsSinkConfig, SyncConfig
from sync.metrics import SyncMetrics
from sync.nats_sink import JetStreamSink
from sync.outbox import Outbox
from sync.quota import enforce_quota, unsent_bytes

WORKER = Path(__file__).with_name("sync_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def pg_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT message_id FROM cdp_events")]


@settings(max_examples=300, deadline=None)
@given(subject=st.sampled_from(["cdp.events.s1", "cdp.events.", "cdp.x.s1", "a"]), data=st.binary(max_size=200))
def test_fuzz_event_messages_parse_or_raise_value_error(subject, data):
    try:
        parsed = parse_event_message(subject, data)
    except ValueError:
        return
    assert parsed.store_id == "s1" and parsed.message_id


@pytest.mark.integration
def test_two_stores_load_idempotently_with_consent_drops_and_erasure(tmp_path, nats_server, postgres):
    expected: set[str] = set()
    for store in ("s1", "s2"):
        with Journal(tmp_path / f"{store}.db", synchronous="normal", migrations=MIGRATIONS) as journal:
            source = Source(store, "kiosk-1", "kiosk", "mqtt")
            specs = mixed_specs(1500, seed=len(store) + ord(store[1]))
            specs.append(Spec("Consent Updated", user=3, consent=True))
            events = fill(journal, specs, start=0 if store == "s1" else 10_000, source=source)
            pending = unsent_bytes(journal, ["nats"])[1]
            dropped = enforce_quota(journal, ["nats"], pending // 2, low_water=1.0, store_id=store)
            assert dropped.dropped_events and "Consent Updated" not in dropped.dropped
            kept = journal.message_ids()
            expected |= {i for i in expected_ids(events) if i in kept}
            box = Outbox(journal, SyncConfig(), lambda u: True, SyncMetrics())
            sink = JetStreamSink(NatsSinkConfig(enabled=True, servers=nats_server.urls), store)
            asyncio.run(box.run_sink("nats", lambda s=sink: s, until_caught_up=True))
            with journal.connection() as conn:
                expected |= {r[0] for r in conn.execute(
                    "SELECT message_id FROM events WHERE event = 'Sync Drops Reported'")}  # fmt: skip
    lags: list[int] = []
    job = CentralJob(nats_server.central_config(postgres=postgres), on_lag=lags.append)

    async def go():
        await job.create_schema()
        await job.run(stop_when_idle=True)

    asyncio.run(go())
    assert set(pg_ids(postgres)) == expected and lags[-1] == 0
    with psycopg.connect(postgres) as conn:
        # idempotent: loading the same messages again changes nothing
        rows = conn.execute("SELECT store_id, body::text FROM cdp_events LIMIT 50").fetchall()

        async def reload():
            async with await psycopg.AsyncConnection.connect(postgres) as pg:
                await job.load(pg, [(f"cdp.events.{s}", b.encode()) for s, b in rows])

        asyncio.run(reload())
        assert conn.execute("SELECT count(*) FROM cdp_events").fetchone()[0] == len(expected)
        assert conn.execute("SELECT count(*) FROM cdp_sync_drops").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM cdp_consent").fetchone()[0] >= 1
        assert conn.execute("SELECT jsonb_typeof(properties) FROM cdp_events LIMIT 1").fetchone()[0] == "object"
        erased = token(5)
        had = conn.execute("SELECT count(*) FROM cdp_events WHERE user_id = %s", (erased,)).fetchone()[0]
    assert had > 0
    assert asyncio.run(job.request_erasure(erased, "req-9")) == ["s1", "s2"]
    with psycopg.connect(postgres) as conn:
        assert conn.execute("SELECT count(*) FROM cdp_events WHERE user_id = %s", (erased,)).fetchone()[0] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_cluster_node_killed_mid_sync_postgres_ends_with_exactly_the_consented_set(tmp_path, nats_cluster, postgres):
    seed = int(os.environ.get("SYNC_CLUSTER_SEED", random.randrange(1 << 30)))
    print(f"SYNC_CLUSTER_SEED={seed}")
    rnd = random.Random(seed)
    path = tmp_path / "journal.db"
    withdrawn = {token(u) for u in range(0, 200, 17)}
    (tmp_path / "withdrawn.txt").write_text("\n".join(withdrawn))
    with Journal(path, synchronous="normal", migrations=MIGRATIONS) as journal:
        events = fill(journal, mixed_specs(10_000, seed=seed))
        # the receiver is not part of this test: the HTTP sink's cursor is parked past the end
        journal.confirm("http", 10**9)
    expected = expected_ids(events, withdrawn)
    urls = nats_cluster.urls

    async def go():
        # the centre created the backbone with 3 replicas on this cluster (the fixture)
        job = CentralJob(nats_cluster.central_config(postgres=postgres))
        await job.create_schema()
        worker_nats = ",".join(urls)
        central = asyncio.create_task(job.run())
        worker = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), str(path), "s1", "http://127.0.0.1:9", worker_nats,
            str(tmp_path / "withdrawn.txt"), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        await asyncio.sleep(rnd.uniform(0.3, 1.5))
        victim = rnd.randrange(3)
        await asyncio.to_thread(nats_cluster.nodes[victim].kill)
        assert await asyncio.wait_for(worker.wait(), 120) == 0
        for _ in range(600):
            if len(await asyncio.to_thread(pg_ids, postgres)) >= len(expected) and job.lag == 0:
                break
            await asyncio.sleep(0.1)
        central.cancel()
        try:
            await central
        except asyncio.CancelledError:
            pass
        return victim

    victim = asyncio.run(go())
    print(f"killed node n{victim}")
    ids = pg_ids(postgres)
    assert len(ids) == len(set(ids)) and set(ids) == expected
