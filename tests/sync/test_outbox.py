"""The outbox against an in-memory sink: consent rule, cursors, confirm-after-send, erasure."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import RecordingSink
from helpers import Spec, expected_ids, fill, mixed_specs, token

from edge.events import MAX_EVENT_BYTES
from edge.journal import Journal
from sync import MIGRATIONS
from sync.config import SyncConfig
from sync.errors import TransientSinkError
from sync.metrics import SyncMetrics
from sync.outbox import Outbox
from sync.policy import eligible


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "journal.db", synchronous="normal", migrations=MIGRATIONS) as j:
        yield j


def outbox(journal, still_allowed=lambda u: True, **config):
    return Outbox(journal, SyncConfig(**config), still_allowed, SyncMetrics())


def drain(box, sink):
    return asyncio.run(box.drain(sink))


def test_policy_table():
    assert eligible(user_id="u", has_anonymous_id=False, sync_allowed=True, still_allowed=True)
    assert not eligible(user_id="u", has_anonymous_id=False, sync_allowed=True, still_allowed=False)
    assert not eligible(user_id="u", has_anonymous_id=True, sync_allowed=False, still_allowed=True)
    assert eligible(user_id=None, has_anonymous_id=True, sync_allowed=True, still_allowed=False)
    assert not eligible(user_id=None, has_anonymous_id=True, sync_allowed=False, still_allowed=True)
    assert eligible(user_id=None, has_anonymous_id=False, sync_allowed=False, still_allowed=False)


def test_only_consented_events_leave_and_the_cursor_passes_the_rest(journal):
    events = fill(journal, mixed_specs(3000))
    sink = RecordingSink()
    consumed = drain(outbox(journal), sink)
    assert consumed == 3000
    assert set(sink.received) == expected_ids(events)
    assert len(sink.received) == len(set(sink.received))
    assert journal.backlog("mem") == 0


def test_batches_respect_event_and_byte_limits(journal):
    fill(journal, [Spec("Audience Measured", pad=2000) for _ in range(800)])
    sink = RecordingSink()

    class Sizes(RecordingSink):
        sizes: list[tuple[int, int]] = []

        async def send(self, events):
            self.sizes.append((len(events), sum(len(e.body) for e in events)))
            return await super().send(events)

    sink = Sizes()
    drain(outbox(journal, batch_events=300, batch_bytes=200_000), sink)
    assert len(sink.received) == 800
    assert all(n <= 300 and size + n + 256 <= 200_000 for n, size in sink.sizes)


def test_sinks_progress_independently_and_confirm_only_after_success(journal):
    events = fill(journal, mixed_specs(1000))
    box = outbox(journal)
    up, down = RecordingSink("up"), RecordingSink("down")
    down.down = True
    drain(box, up)
    with pytest.raises(TransientSinkError):
        drain(box, down)
    assert journal.backlog("up") == 0 and journal.backlog("down") == 1000
    down.down = False
    drain(box, down)
    assert set(down.received) == set(up.received) == expected_ids(events)


def test_withdrawal_is_checked_at_send_time_not_ingest_time(journal):
    events = fill(journal, [Spec("Product Viewed", user=u % 4, consent=True) for u in range(400)])
    withdrawn = {token(1), token(2)}
    sink = RecordingSink()
    drain(outbox(journal, still_allowed=lambda u: u not in withdrawn), sink)
    assert set(sink.received) == expected_ids(events, withdrawn)
    assert not any(token(1) in b or token(2) in b for b in sink.bodies)


def test_withdrawal_and_erasure_during_an_outage(journal):
    """Nothing about a person who withdrew or was erased during the outage leaves afterwards."""
    suppressed: set[str] = set()
    box = outbox(journal, still_allowed=lambda u: u not in suppressed, batch_events=50)
    sink = RecordingSink()
    before = fill(journal, [Spec("Product Viewed", user=u % 3, consent=True) for u in range(150)])
    drain(box, sink)
    sent_before = set(sink.received)
    sink.down = True
    during = fill(journal, [Spec("Order Completed", user=u % 3, consent=True) for u in range(300)], start=1000)
    with pytest.raises(TransientSinkError):
        drain(box, sink)
    suppressed.add(token(0))  # withdrew cdp_sync
    suppressed.add(token(1))  # erased: suppression first, then the journal rows go
    journal.erase_user(token(1))
    sink.down = False
    drain(box, sink)
    after = set(sink.received) - sent_before
    assert after == {e.message_id for e in during if e.user_id == token(2)}
    assert sent_before == {e.message_id for e in before}


def test_oversized_events_are_dead_lettered_not_sent(journal):
    fill(journal, [Spec("Audience Measured", pad=MAX_EVENT_BYTES + 10), Spec("Audience Measured")])
    sink = RecordingSink()
    drain(outbox(journal), sink)
    assert len(sink.received) == 1
    dead = journal.dead_letters()
    assert [d["reason"] for d in dead] == ["too_large"] and dead[0]["source"] == "sync:mem"


def test_retry_loop_backs_off_and_recovers(journal):
    fill(journal, mixed_specs(200))
    sink = RecordingSink()
    sink.down = True
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            sink.down = False

    box = Outbox(journal, SyncConfig(), lambda u: True, SyncMetrics(), sleep=fake_sleep, rng=lambda: 0.0)
    asyncio.run(box.run_sink("mem", lambda: sink, until_caught_up=True))
    assert sleeps == [0.5, 1.0, 2.0, 4.0]
    assert journal.backlog("mem") == 0
    status = json.dumps(__import__("sync.tables", fromlist=["x"]).sink_status(journal))
    assert "link down" in status
