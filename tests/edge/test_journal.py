"""The journal: once per messageId, bounded dead letters, cursors, migrations, erasure."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from edge.bus import Source
from edge.events import parse_event
from edge.ingest import Ingestor
from edge.journal import READER_CACHE_KIB, DeadLetter, Journal, Migration
from edge.metrics import IngestMetrics

SOURCE = Source("s1", "k1", "kiosk", "local")


def _event(message_id: str, user: str | None = None, sync: bool = False):
    raw = {"messageId": message_id, "event": "Product Viewed", "properties": {"sku": "A"}}
    if user:
        raw["userId"] = user
    raw["context"] = {"consent": {"categoryPreferences": {"cdp_sync": sync}}}
    return parse_event(raw, SOURCE, 1_790_000_000_000)


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.db", dead_letter_max=5) as j:
        yield j


def test_pragmas_and_recorded_migrations(journal, tmp_path):
    with journal.connection() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    calls = []
    extra = Migration("test-0001", lambda db: calls.append(db["t"].create({"x": int})))
    journal.close()
    for _ in range(2):  # a second open applies nothing again
        with Journal(tmp_path / "j.db", migrations=[extra]) as again:
            assert again.applied_migrations() == ["core-0001-events", "test-0001"]
    assert len(calls) == 1


def test_a_redelivered_event_is_stored_once(journal):
    first = journal.commit([_event("a"), _event("b"), _event("a")])
    assert first.inserted == (True, True, False)
    assert journal.commit([_event("b")]).duplicates == 1
    assert journal.stats()["events"] == 2


def _derived_table(journal):
    with journal.connection() as conn:
        conn.execute("CREATE TABLE derived (message_id TEXT PRIMARY KEY)")


def _derive(conn, events):
    conn.executemany("INSERT INTO derived VALUES (?)", [(e.message_id,) for e in events])


def _derived(journal):
    with journal.connection() as conn:
        return sorted(r[0] for r in conn.execute("SELECT message_id FROM derived"))


def test_commit_writers_see_only_new_events_in_the_same_transaction(journal):
    _derived_table(journal)
    seen = []
    result = journal.commit([_event("a"), _event("b")], writers=[_derive, lambda c, ev: seen.append(len(ev))])
    assert result.writer_failures == 0 and _derived(journal) == ["a", "b"]
    journal.commit([_event("a"), _event("c")], writers=[_derive, lambda c, ev: seen.append(len(ev))])
    assert _derived(journal) == ["a", "b", "c"] and seen == [2, 1]  # the redelivered "a" left out
    journal.commit([_event("c")], writers=[lambda c, ev: seen.append(len(ev))])
    assert seen == [2, 1]  # nothing new: writers are not called


def test_a_failing_writer_rolls_back_alone_and_is_counted(journal, caplog):
    _derived_table(journal)

    def half_then_fail(conn, events):
        conn.execute("INSERT INTO derived VALUES ('from-the-failing-writer')")
        raise ValueError("bug in a writer")

    result = journal.commit([_event("a")], writers=[half_then_fail, _derive])
    assert result.writer_failures == 1 and result.inserted == (True,)
    assert _derived(journal) == ["a"]  # its own row rolled back, the next writer's kept
    assert journal.stats()["events"] == 1 and "bug in a writer" in caplog.text


def test_derived_rows_and_events_commit_or_vanish_together(journal):
    """What a power cut between "events committed" and "rows derived" would break: the rows are
    in the commit itself, so a commit that does not happen leaves neither."""
    _derived_table(journal)

    def cut(conn, events):
        raise KeyboardInterrupt  # not an Exception: the whole transaction unwinds

    with pytest.raises(KeyboardInterrupt):
        journal.commit([_event("a")], writers=[_derive, cut])
    assert journal.stats()["events"] == 0 and _derived(journal) == []
    journal.commit([_event("a")], writers=[_derive])
    assert journal.stats()["events"] == 1 and _derived(journal) == ["a"]


def test_dead_letters_are_bounded_and_scrubbed(journal):
    letters = [
        DeadLetter("mqtt:kiosk/k1", "invalid_json", "bad", f"mail bob{i}@example.com +49 170 1234567".encode())
        for i in range(8)
    ]
    journal.commit([], letters)
    rows = journal.dead_letters()
    assert len(rows) == 5 and rows[0]["id"] == 8
    assert all("example.com" not in r["excerpt"] and "1234567" not in r["excerpt"] for r in rows)


def test_cursor_confirm_per_sink(journal):
    journal.commit([_event(f"e{i}") for i in range(10)])
    batch = journal.read_after("http", limit=4)
    assert [r.message_id for r in batch] == ["e0", "e1", "e2", "e3"]
    journal.confirm("http", batch[-1].seq)
    journal.confirm("http", 1)  # never backwards
    assert journal.cursor("http") == batch[-1].seq and journal.backlog("http") == 6
    assert journal.backlog("nats") == 10  # sinks progress independently
    assert len(journal.read_after("http", max_bytes=1)) == 1  # at least one, then the byte cap


def test_erasure_leaves_no_copy_in_file_or_wal(journal):
    token = "ct_" + "ab" * 16
    journal.commit([_event("p1", token), _event("p2"), _event("p3", token)])
    assert journal.erase_user(token) == 2
    data = journal.path.read_bytes()
    wal = journal.path.with_name(journal.path.name + "-wal")
    assert token.encode() not in data
    assert not wal.exists() or token.encode() not in wal.read_bytes()


def test_ingestor_group_commits_and_reports(tmp_path):
    async def run():
        with Journal(tmp_path / "g.db") as journal:
            ingestor = Ingestor(journal, IngestMetrics())
            ingestor.start()
            results = await asyncio.gather(
                *[ingestor.publish(SOURCE, [{"messageId": f"g{i}", "event": "Cart Viewed"}]) for i in range(200)]
            )
            ingestor.stop()
            assert sum(r.accepted for r in results) == 200
            commits = ingestor.metrics.commit_events.collect()[0].samples
            count = next(s.value for s in commits if s.name.endswith("_count"))
            assert count < 200  # concurrent publishes shared commits

    asyncio.run(run())


def _commits(ingestor):
    samples = ingestor.metrics.commit_events.collect()[0].samples
    return next(s.value for s in samples if s.name.endswith("_count"))


def test_a_flowing_stream_lingers_into_one_commit_a_lone_input_does_not(tmp_path):
    with Journal(tmp_path / "l.db") as journal:
        ingestor = Ingestor(journal, IngestMetrics(), linger_ms=400)
        done = threading.Event()
        seen = []

        def on_done(result):
            seen.append(result)
            if len(seen) == 3:
                done.set()

        for name in ("a", "b"):  # a stream: more than one input waiting when the writer looks
            ingestor.enqueue(ingestor.prepare(SOURCE, [{"messageId": name, "event": "Cart Viewed"}]), on_done)
        ingestor.start()
        time.sleep(0.1)  # well inside the linger
        ingestor.enqueue(ingestor.prepare(SOURCE, [{"messageId": "c", "event": "Cart Viewed"}]), on_done)
        assert done.wait(10)
        assert _commits(ingestor) == 1 and journal.stats()["events"] == 3

        lone = Ingestor(journal, IngestMetrics(), linger_ms=60_000)  # a linger nobody could wait out
        lone.start()

        async def one():
            return await asyncio.wait_for(
                lone.publish(SOURCE, [{"messageId": "d", "event": "Cart Viewed"}]), timeout=10
            )

        assert asyncio.run(one()).accepted == 1  # an awaited lone input is committed at once
        lone.stop()
        ingestor.stop()


def test_a_failed_commit_acknowledges_nothing(tmp_path):
    async def run():
        journal = Journal(tmp_path / "f.db")
        ingestor = Ingestor(journal, IngestMetrics())
        ingestor.start()
        journal.close()  # every commit now fails
        with pytest.raises(sqlite3.ProgrammingError):
            await ingestor.publish(SOURCE, [{"messageId": "x", "event": "Cart Viewed"}])
        assert not ingestor.healthy
        ingestor.stop()

    asyncio.run(run())


def test_a_fault_outside_the_commit_fails_its_batch_and_the_writer_goes_on(tmp_path, monkeypatch):
    """Under Debian 12 arm64's libfaketime, CPython's time.sleep raises OSError(EINVAL)
    (tests/support/faketime.py): the writer's linger sleep raised it and the writer thread died,
    leaving a gateway that answered /healthz and stored nothing. Now the batch in hand is failed
    (nothing of it acknowledged), the journal reads not ready, and the next batch commits."""
    import edge.ingest

    real_sleep = time.sleep
    faults = [OSError(22, "Invalid argument")]

    def sleep(seconds):
        if faults:
            raise faults.pop()
        real_sleep(seconds)

    monkeypatch.setattr(edge.ingest.time, "sleep", sleep)
    with Journal(tmp_path / "w.db") as journal:
        ingestor = Ingestor(journal, IngestMetrics(), linger_ms=5)
        told: list = []
        settled = threading.Event()

        def on_done(result):
            told.append(result)
            if len(told) == 2:
                settled.set()

        for name in ("a", "b"):  # two inputs waiting: the writer lingers, and the sleep raises
            ingestor.enqueue(ingestor.prepare(SOURCE, [{"messageId": name, "event": "Cart Viewed"}]), on_done)
        ingestor.start()
        assert settled.wait(10)
        assert [type(r) for r in told] == [OSError, OSError]  # failed, so MQTT sends no PUBACK
        assert journal.stats()["events"] == 0 and not ingestor.healthy
        assert ingestor.metrics.registry.get_sample_value("edge_journal_writer_crashes_total") == 1

        def shout(_result):
            raise RuntimeError("a caller's callback")

        async def redelivered():  # the broker redelivers both; a raising callback spoils nobody else's
            ingestor.enqueue(ingestor.prepare(SOURCE, [{"messageId": "z", "event": "Cart Viewed"}]), shout)
            return await asyncio.gather(*[ingestor.publish(SOURCE, [{"messageId": n, "event": "Cart Viewed"}])
                                          for n in ("a", "b")])  # fmt: skip

        results = asyncio.run(redelivered())
        assert [r.accepted for r in results] == [1, 1]
        wait = time.monotonic() + 10
        while journal.stats()["events"] < 3 and time.monotonic() < wait:
            real_sleep(0.01)
        assert journal.stats()["events"] == 3 and ingestor.healthy
        assert ingestor.metrics.registry.get_sample_value("edge_journal_writer_crashes_total") == 1
        ingestor.stop()


def test_dead_letter_excerpts_never_keep_identifiers(journal):
    import json

    secret = {
        "event": "Nope",
        "userId": "ct_" + "9" * 32,
        "properties": {"identifiers": {"appId": "app-zz-1", "loyaltyId": "4711"}, "note": "call 0170 555 1234"},
        "traits": {"email": "carol@example.org"},
    }
    journal.commit(
        [],
        [
            DeadLetter("mqtt:kiosk/k1", "unknown_event", "x", json.dumps(secret).encode()),
            DeadLetter(
                "mqtt:kiosk/k1", "invalid_json", "x", b"{broken carol@example.org 47110815 " + b"ct_" + b"9" * 32
            ),
        ],
    )
    excerpts = " ".join(r["excerpt"] for r in journal.dead_letters())
    for raw in ("app-zz-1", "4711", "555 1234", "carol@example.org", "9" * 32):
        assert raw not in excerpts
    assert "Nope" in excerpts  # what was wrong stays visible


def test_read_connections_keep_a_small_page_cache_and_the_writer_sqlite_s_default(tmp_path):
    """Memory on the box (bench/ingest.py's RSS peak): one read connection per querying thread,
    each with READER_CACHE_KIB of pages; the writer, which the group commit leans on, keeps 2,000."""
    with Journal(tmp_path / "j.db") as journal:
        assert journal.reader().execute("PRAGMA cache_size").fetchone()[0] == READER_CACHE_KIB
        with journal.connection() as conn:
            assert conn.execute("PRAGMA cache_size").fetchone()[0] == -2000
