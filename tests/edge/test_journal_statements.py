"""The journal owns its tables: nesting transactions and the named statements other packages use."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from edge.bus import Source
from edge.events import Event, parse_event
from edge.journal import DeadLetter, Journal

SOURCE = Source("s1", "k1", "kiosk", "local")


def _event(message_id: str, *, name: str = "Product Viewed", user: str | None = None,
           anonymous: str | None = None, received_ms: int = 1_790_000_000_000):  # fmt: skip
    raw: dict = {"messageId": message_id, "event": name, "properties": {"sku": "A"}}
    if user:
        raw["userId"] = user
    if anonymous:
        raw["anonymousId"] = anonymous
    return parse_event(raw, SOURCE, received_ms)


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        with j.transaction() as conn:
            conn.execute("CREATE TABLE notes (n INTEGER)")
        yield j


def _notes(journal: Journal) -> list[int]:
    return [r[0] for r in journal.reader().execute("SELECT n FROM notes ORDER BY n")]


def test_a_nested_transaction_is_a_savepoint_that_rolls_back_alone(journal):
    with journal.transaction() as conn:
        conn.execute("INSERT INTO notes VALUES (1)")
        with pytest.raises(RuntimeError), journal.transaction() as inner:
            inner.execute("INSERT INTO notes VALUES (2)")
            raise RuntimeError("inner unit fails")
        with journal.transaction() as inner:
            inner.execute("INSERT INTO notes VALUES (3)")
        assert _notes(journal) == []  # a reader sees nothing before the outermost commit
    assert _notes(journal) == [1, 3]


def test_an_outer_failure_undoes_the_released_inner_units_too(journal):
    with pytest.raises(KeyboardInterrupt), journal.transaction() as conn:
        with journal.transaction() as inner:
            inner.execute("INSERT INTO notes VALUES (1)")
            with journal.transaction() as innermost:
                innermost.execute("INSERT INTO notes VALUES (2)")
        conn.execute("INSERT INTO notes VALUES (3)")
        raise KeyboardInterrupt
    assert _notes(journal) == []
    with journal.connection() as conn:
        assert not conn.in_transaction  # no savepoint or transaction left open
    with journal.transaction() as conn:  # and the next one starts cleanly
        conn.execute("INSERT INTO notes VALUES (4)")
    assert _notes(journal) == [4]


def test_a_group_commit_inside_a_transaction_is_durable_only_with_it(journal):
    with pytest.raises(RuntimeError), journal.transaction():
        result = journal.commit([_event("a")], [DeadLetter("test", "bad_json", "x", b"{")])
        assert result.accepted == 1 and journal.has("a")
        raise RuntimeError("the outer unit fails")
    assert not journal.has("a") and journal.dead_letters() == []
    with journal.transaction():
        journal.commit([_event("b")])
        journal.confirm("http", 1)
    assert journal.has("b") and journal.cursor("http") == 1


def test_other_threads_wait_for_the_outermost_commit(journal):
    entered, release = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def other() -> None:
        entered.wait()
        with journal.transaction() as conn:  # not nested: this thread has no transaction
            conn.execute("INSERT INTO notes VALUES (9)")
        seen.append(_notes(journal))

    thread = threading.Thread(target=other)
    thread.start()
    with journal.transaction() as conn:
        conn.execute("INSERT INTO notes VALUES (1)")
        entered.set()
        release.wait(0.2)  # the other thread is blocked on the journal lock meanwhile
        assert _notes(journal) == []
    thread.join(5)
    assert seen == [[1, 9]]


def test_named_statements_for_the_outbox_quota_and_status(journal):
    events = [
        _event("a", user="ct_" + "a" * 32, received_ms=1_000),
        _event("b", received_ms=2_000),  # about no one
        _event("c", anonymous="v1", received_ms=3_000),
        _event("d", name="Product Clicked", received_ms=4_000),
    ]
    journal.commit(events)
    sizes = {e.message_id: len(e.encoded().encode()) for e in events}
    assert journal.max_seq() == 4
    assert journal.personless_seqs(1, 4) == {2, 4}
    assert journal.personless_seqs(3, 3) == set()
    assert journal.bytes_after(1) == sizes["b"] + sizes["c"] + sizes["d"]
    assert journal.bytes_after(4) == 0
    assert journal.oldest_after(1) == 2_000 and journal.oldest_after(4) is None
    assert journal.sizes_after(0, ["Product Clicked"]) == [(4, "Product Clicked", sizes["d"])]
    assert [s for s, _, _ in journal.sizes_after(1, ["Product Clicked"], named=False)] == [2, 3]
    assert [s for s, _, _ in journal.sizes_after(0, ["Product Clicked"], named=False, limit=1)] == [1]
    assert journal.delete_events([2, 3, 99]) == 2
    assert journal.max_seq() == 4 and journal.personless_seqs(1, 4) == {4}


def test_record_stores_a_gateway_event_once_without_admission(journal):
    body = {"type": "track", "event": "Sync Drops Reported", "messageId": "drops-1", "properties": {},
            "context": {}}  # fmt: skip
    report = Event("drops-1", "track", "Sync Drops Reported", None, None, "2026-12-01T00:00:00.000Z",
                   1_790_000_000_000, Source("s1", "gateway", "gateway"), body)  # fmt: skip
    with journal.transaction():
        assert journal.record(report) is True
        assert journal.record(report) is False  # same messageId: stored once
    assert journal.stats()["by_event"] == {"Sync Drops Reported": 1}


def test_named_statements_for_decisioning(journal):
    token = "ct_" + "b" * 32
    journal.commit([
        _event("a", user=token, anonymous="visit-2"), _event("b", user=token, anonymous="visit-1"),
        _event("c", user=token), _event("d", anonymous="visit-3"),
    ])  # fmt: skip
    assert journal.has("a") and not journal.has("zzz")
    assert journal.visits_of(token) == ("visit-1", "visit-2")
    reader = journal.reader()
    reader.execute("BEGIN")  # a read transaction: its snapshot is taken at the first read
    try:
        assert journal.visits_of(token, snapshot=True) == ("visit-1", "visit-2")
        journal.commit([_event("e", user=token, anonymous="visit-0")])  # after the snapshot
        assert journal.visits_of(token, snapshot=True) == ("visit-1", "visit-2")
    finally:
        reader.execute("COMMIT")
    assert journal.visits_of(token) == ("visit-0", "visit-1", "visit-2")


def test_the_reader_cannot_write(journal):
    with pytest.raises(sqlite3.OperationalError):
        journal.reader().execute("INSERT INTO notes VALUES (1)")
