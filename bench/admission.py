"""What the privacy rule inside every commit costs: group commits of the same events through a
bare journal and through one with the decisioning admission (suppression check, ordered consent,
consent stamp), measured in the same run on one pinned core.

    run:  .venv/bin/python bench/admission.py [--events 50000] [--group 500] [--suppressed 1000]

Three passes over fresh journals (synchronous=NORMAL; rates are per CPU-second of this process):
bare ``Journal.commit``; with the admission and an empty suppression list; with the admission and
``--suppressed`` erased persons on the list (every event's token then gets a keyed digest).
One event in 50 is a ``Consent Updated``; events belong to 5,000 persons.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bus import Source  # noqa: E402
from edge.decisioning import MIGRATIONS  # noqa: E402
from edge.decisioning.admission import CommitAdmission  # noqa: E402
from edge.decisioning.consent import ConsentLedger  # noqa: E402
from edge.decisioning.erasure import Eraser  # noqa: E402
from edge.decisioning.identity import Identity  # noqa: E402
from edge.events import Event, parse_event  # noqa: E402
from edge.journal import Journal  # noqa: E402

SOURCE = Source("bench", "kiosk-1", "kiosk", "mqtt")


def events(n: int, seed: int = 7) -> list[Event]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        token = f"ct_{rnd.randrange(5000):032x}"
        if i % 50 == 0:
            raw = {
                "event": "Consent Updated",
                "userId": token,
                "messageId": f"c-{i}",
                "timestamp": f"2026-12-01T10:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z",
                "properties": {"categoryPreferences": {"cdp_sync": rnd.random() < 0.7}, "consentSource": "app"},
            }
        else:
            raw = {
                "event": "Product Viewed",
                "userId": token,
                "messageId": f"e-{i}",
                "properties": {"sku": f"SKU{rnd.randrange(50000):05d}", "price": 2.5},
            }
        out.append(parse_event(raw, SOURCE, 1_796_000_000_000 + i))
    return out


def run(batch: list[Event], group: int, admission: str, suppressed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "j.db", synchronous="normal", migrations=MIGRATIONS)
        identity = Identity(b"k" * 32)
        if admission != "none":
            eraser = Eraser(journal, identity, time.time)
            if suppressed:
                with journal.transaction() as conn:
                    conn.executemany(
                        "INSERT INTO suppressions VALUES (?, 0)",
                        [(eraser.digest(f"ct_{10**6 + i:032x}"),) for i in range(suppressed)],
                    )
                eraser.refresh()
            ledger = ConsentLedger(journal)
            journal.admit_with(CommitAdmission(eraser, ledger, lambda user_id: None))
        started = time.process_time()  # CPU time: the machine is shared, the wall clock noisy
        for k in range(0, len(batch), group):
            journal.commit(batch[k : k + group])
        elapsed = time.process_time() - started
        journal.close()
    return len(batch) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--group", type=int, default=500)
    parser.add_argument("--suppressed", type=int, default=1000)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    bare = run(events(args.events), args.group, "none", 0)
    empty = run(events(args.events), args.group, "admission", 0)
    listed = run(events(args.events), args.group, "admission", args.suppressed)
    print(f"group commits of {args.group}, {args.events} events, one core:")
    print(f"  bare Journal.commit                      {bare:10,.0f} events/s")
    print(f"  + admission, empty suppression list      {empty:10,.0f} events/s  (ratio {empty / bare:.2f})")
    print(
        f"  + admission, {args.suppressed:,} persons suppressed    {listed:10,.0f} events/s  (ratio {listed / bare:.2f})"
    )


if __name__ == "__main__":
    main()
