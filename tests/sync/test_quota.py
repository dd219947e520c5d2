"""Bounded disk: a 72-hour outage (time-compressed) with a small outbox quota."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from fakes import RecordingSink
from helpers import T0_MS, Spec, expected_ids, fill

from edge.journal import Journal
from sync import MIGRATIONS
from sync.config import SyncConfig
from sync.errors import TransientSinkError
from sync.metrics import SyncMetrics
from sync.outbox import Outbox
from sync.policy import tier_of
from sync.quota import DROPS_REPORTED, enforce_quota, unsent_bytes

HOUR_MS = 3_600_000
NAMES = {  # event name → share of traffic
    "Zone Entered": 0.35, "Audience Measured": 0.2, "Product Viewed": 0.25, "Offer Viewed": 0.05,
    "Product Added": 0.07, "Order Completed": 0.05, "Consent Updated": 0.03,
}  # fmt: skip


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "journal.db", synchronous="normal", migrations=MIGRATIONS) as j:
        yield j


def test_72_hour_outage_drops_by_value_counts_everything_and_delivers_the_rest(journal):
    rnd = random.Random(7)
    metrics = SyncMetrics()
    sink = RecordingSink("http")
    box = Outbox(journal, SyncConfig(), lambda u: True, metrics)
    sink.down = True
    quota = 400_000
    all_events = []
    now_ms = T0_MS
    for hour in range(72):  # one simulated hour per step: 150 events, then a quota check
        specs = []
        for i in range(150):
            name = rnd.choices(list(NAMES), weights=list(NAMES.values()))[0]
            specs.append(Spec(name, user=rnd.randrange(50), consent=True,
                              received_ms=now_ms + i * 20_000))  # fmt: skip
        all_events += fill(journal, specs, start=hour * 1000)
        now_ms += HOUR_MS
        with pytest.raises(TransientSinkError):
            asyncio.run(box.drain(sink))
        enforce_quota(journal, ["http"], quota, low_water=0.9, store_id="s1", metrics=metrics,
                      clock=lambda t=now_ms: t / 1000)  # fmt: skip
        assert unsent_bytes(journal, ["http"])[1] <= quota + 2_000  # + the drop report itself

    kept = journal.message_ids()
    dropped = [e for e in all_events if e.message_id not in kept]
    assert dropped, "the quota must have forced drops"
    # value order: nothing of a tier was dropped while a lower tier still had events left
    highest_dropped = max(tier_of(e.name) for e in dropped)
    for tier in range(highest_dropped):
        assert not any(tier_of(e.name) == tier and e.message_id in kept for e in all_events), tier
    assert not any(e.name in ("Order Completed", "Consent Updated") for e in dropped)
    # oldest first within the highest tier that lost events
    partial = [e for e in all_events if tier_of(e.name) == highest_dropped]
    lost = [e.message_id in kept for e in partial]
    assert lost == sorted(lost), "within a tier, drops go oldest first"
    # every drop is counted, by type, in /metrics and in the journal
    by_name: dict[str, int] = {}
    for e in dropped:
        by_name[e.name] = by_name.get(e.name, 0) + 1
    for name, n in by_name.items():
        assert metrics.registry.get_sample_value("sync_events_dropped_total", {"event": name}) == n
    from sync.tables import drops

    assert {k: v["count"] for k, v in drops(journal).items()} == by_name

    # the link is back: the rest arrives, with the drop reports
    sink.down = False
    asyncio.run(box.drain(sink))
    survivors = [e for e in all_events if e.message_id in kept]
    reports = [json.loads(b) for b in sink.bodies if DROPS_REPORTED in b]
    assert set(sink.received) - {r["messageId"] for r in reports} == expected_ids(survivors)
    reported: dict[str, int] = {}
    for r in reports:
        assert r["storeId"] == "s1" and "userId" not in r
        for name, v in r["properties"]["drops"].items():
            reported[name] = reported.get(name, 0) + v["count"]
    assert reported == by_name


def test_no_quota_no_drops_and_reports_survive_pressure(journal):
    fill(journal, [Spec("Zone Entered", pad=500) for _ in range(100)])
    assert enforce_quota(journal, ["http"], 0, low_water=0.9, store_id="s1").dropped == {}
    result = enforce_quota(journal, ["http"], 10_000, low_water=0.5, store_id="s1")
    assert result.dropped_events > 0
    # a second squeeze with only the report left cannot drop the report
    enforce_quota(journal, ["http"], 1, low_water=0.5, store_id="s1")
    with journal.connection() as conn:
        names = [r[0] for r in conn.execute("SELECT event FROM events")]
    assert names and set(names) == {DROPS_REPORTED}
