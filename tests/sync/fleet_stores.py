"""Many simulated stores in one process, each a real journal + Outbox + JetStreamSink with the
store's own nkey identity (fleet test and bench/fleet.py).

``python fleet_stores.py FLEET_DIR NATS_URLS FIRST COUNT EVENTS SEED OUT`` journals EVENTS
mixed events (consented, unconsented, anonymous, about no one) for each of the stores
``f{FIRST:03d}`` … (journals next to OUT), writes the messageIds the send rule lets out to OUT
(one per line), prints ``ready``, then syncs every store concurrently until each is caught up
and exits 0.

With two more arguments ``RATE DURATION_S`` (bench/fleet.py) nothing is journaled up front:
each store journals RATE events/s for DURATION_S (``receivedAt`` = the moment it is journaled,
for end-to-end lag) while its outbox syncs, then catches up, writes OUT and exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import Source, expected_ids, make_event, mixed_specs  # noqa: E402

from edge.journal import Journal  # noqa: E402
from sync import MIGRATIONS  # noqa: E402
from sync.config import NatsSinkConfig, SyncConfig  # noqa: E402
from sync.identities import FleetIdentities  # noqa: E402
from sync.metrics import SyncMetrics  # noqa: E402
from sync.nats_sink import JetStreamSink  # noqa: E402
from sync.outbox import Outbox  # noqa: E402


def store_id(index: int) -> str:
    return f"f{index:03d}"


async def main(fleet_dir: str, urls: str, first: str, count: str, events: str, seed: str,
               out: str, rate: str = "0", duration: str = "0") -> None:  # fmt: skip
    fleet, servers = FleetIdentities(Path(fleet_dir)), urls.split(",")
    directory = Path(out).parent
    n_events, per_s = int(events), float(rate)
    config = SyncConfig(batch_events=250, backoff_base_s=0.05, backoff_cap_s=1.0, idle_poll_s=0.1)
    journals, expected = [], set()
    for index in range(int(first), int(first) + int(count)):
        sid = store_id(index)
        journal = Journal(directory / f"{sid}.db", synchronous="normal", migrations=MIGRATIONS)
        specs = mixed_specs(n_events, seed=int(seed) + index, users=50)
        built = [make_event(index * 100_000 + i, s, Source(sid, "kiosk-1", "kiosk", "mqtt"))
                 for i, s in enumerate(specs)]  # fmt: skip
        if per_s == 0:
            expected |= expected_ids(built)
            journal.commit(built)
        journals.append((sid, journal, index, specs))
    if per_s == 0:
        Path(out).write_text("\n".join(sorted(expected)))
    print("ready", flush=True)

    async def live(sid: str, journal: Journal, index: int, specs: list) -> None:
        end, i = time.monotonic() + float(duration), 0
        while time.monotonic() < end:
            spec = dataclasses.replace(specs[i % len(specs)], received_ms=int(time.time() * 1000))
            event = make_event(index * 100_000 + 50_000 + i, spec, Source(sid, "kiosk-1", "kiosk", "mqtt"))
            await asyncio.to_thread(journal.commit, [event])
            expected.update(expected_ids([event]))
            i += 1
            await asyncio.sleep(1 / per_s)

    async def one(sid: str, journal: Journal, index: int, specs: list) -> None:
        nats = NatsSinkConfig(enabled=True, servers=servers, credentials=str(fleet.store_seed(sid)),
                              ack_timeout_s=5)  # fmt: skip
        box = Outbox(journal, config, lambda u: True, SyncMetrics())
        sink = JetStreamSink(nats, sid)
        if per_s:
            producer = asyncio.create_task(live(sid, journal, index, specs))
            while not producer.done():
                await box.run_sink("nats", lambda: sink, until_caught_up=True)
                await asyncio.sleep(0.1)
            await producer
        await box.run_sink("nats", lambda: sink, until_caught_up=True)

    await asyncio.gather(*(one(*j) for j in journals))
    if per_s:
        Path(out).write_text("\n".join(sorted(expected)))
    for _, journal, _, _ in journals:
        journal.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:10]))
