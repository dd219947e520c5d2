"""SIGKILL at random moments while 10,000 events sync to HTTP and JetStream.

Every consented event arrives, none that should not; duplicates before de-duplication are
counted and printed; after de-duplication there are none. ``SYNC_KILL_TRIALS`` sets the number of
trials (default 20, as the issue asks; fewer for a quick local run), ``SYNC_KILL_SEED`` pins
the random schedule (printed on every run).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Source, expected_ids, fill, mixed_specs, token

from edge.journal import Journal
from sync import MIGRATIONS
from sync.tables import sink_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 10_000
TRIALS = int(os.environ.get("SYNC_KILL_TRIALS", "20"))
WORKER = Path(__file__).with_name("sync_worker.py")
ROOT = Path(__file__).resolve().parents[2]


async def stream_ids(urls: list[str], subject: str) -> tuple[list[str], int]:
    """(messageIds stored on ``subject``, stream message count) via an ordered consumer."""
    import nats

    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream()
        info = await js.stream_info("CDP_EVENTS", subjects_filter=subject)
        total = (info.state.subjects or {}).get(subject, 0)
        sub = await js.subscribe(subject, ordered_consumer=True)
        ids = []
        while len(ids) < total:
            msg = await sub.next_msg(timeout=5)
            ids.append(msg.headers["Nats-Msg-Id"])
        await sub.unsubscribe()
        return ids, total
    finally:
        await nc.close()


def test_sigkill_during_sync_loses_nothing_and_leaks_nothing(tmp_path, receiver, nats_server):
    seed = int(os.environ.get("SYNC_KILL_SEED", random.randrange(1 << 30)))
    print(f"SYNC_KILL_SEED={seed} trials={TRIALS}")
    rnd = random.Random(seed)
    report = []
    for trial in range(TRIALS):
        store = f"t{trial}"
        path = tmp_path / f"journal-{trial}.db"
        withdrawn = {token(u) for u in rnd.sample(range(200), 10)}
        (tmp_path / "withdrawn.txt").write_text("\n".join(sorted(withdrawn)))
        with Journal(path, synchronous="normal", migrations=MIGRATIONS) as journal:
            events = fill(journal, mixed_specs(EVENTS, seed=seed + trial), start=trial * 100_000,
                          source=Source(store, "kiosk-1", "kiosk", "mqtt"))  # fmt: skip
        expected = expected_ids(events, withdrawn)
        kills = 0
        started = time.monotonic()
        while True:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(path), store, receiver.url, ",".join(nats_server.urls),
                 str(tmp_path / "withdrawn.txt")], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            if kills < 3:
                try:
                    proc.wait(rnd.uniform(0.3, 1.6))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            assert proc.wait(120) == 0
            break
        received = [i for i in receiver.received_ids() if int(i[2:]) // 100_000 == trial]
        in_stream, stream_count = asyncio.run(stream_ids(nats_server.urls, f"cdp.events.{store}"))
        with Journal(path, migrations=MIGRATIONS) as journal:
            nats_dups = sink_status(journal).get("nats", {}).get("duplicates", 0)
        assert set(received) == expected, "HTTP: every consented event, nothing else"
        assert set(in_stream) == expected, "JetStream: every consented event, nothing else"
        assert len(in_stream) == stream_count == len(expected), "JetStream de-duplicated"
        report.append((trial, kills, len(expected), len(received) - len(set(received)), nats_dups,
                       round(time.monotonic() - started, 1)))  # fmt: skip
    print("trial kills expected http_duplicates_before_dedup nats_duplicate_acks seconds")
    for row in report:
        print(*row)
