"""Many simulated stores in one process, each a real journal + Outbox + JetStreamSink with the
store's own nkey identity (fleet test and bench/fleet.py).

``python fleet_stores.py FLEET_DIR NATS_URLS FIRST COUNT EVENTS SEED OUT`` journals EVENTS
mixed events (consented, unconsented, anonymous, about no one) for each of the stores
``f{FIRST:03d}`` … (journals next to OUT), writes the messageIds the send rule lets out to OUT
(one per line), prints ``ready``, then syncs every store concurrently until each is caught up
and exits 0.
"""

from __future__ import annotations

import asyncio
import sys
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
               out: str) -> None:  # fmt: skip
    fleet, servers = FleetIdentities(Path(fleet_dir)), urls.split(",")
    directory = Path(out).parent
    n_events = int(events)
    config = SyncConfig(batch_events=250, backoff_base_s=0.05, backoff_cap_s=1.0, idle_poll_s=0.1)
    journals, expected = [], set()
    for index in range(int(first), int(first) + int(count)):
        sid = store_id(index)
        journal = Journal(directory / f"{sid}.db", synchronous="normal", migrations=MIGRATIONS)
        specs = mixed_specs(n_events, seed=int(seed) + index, users=50)
        built = [make_event(index * 100_000 + i, s, Source(sid, "kiosk-1", "kiosk", "mqtt"))
                 for i, s in enumerate(specs)]  # fmt: skip
        expected |= expected_ids(built)
        journal.commit(built)
        journals.append((sid, journal))
    Path(out).write_text("\n".join(sorted(expected)))
    print("ready", flush=True)

    async def one(sid: str, journal: Journal) -> None:
        nats = NatsSinkConfig(enabled=True, servers=servers, credentials=str(fleet.store_seed(sid)),
                              ack_timeout_s=5)  # fmt: skip
        box = Outbox(journal, config, lambda u: True, SyncMetrics())
        sink = JetStreamSink(nats, sid)
        await box.run_sink("nats", lambda: sink, until_caught_up=True)

    await asyncio.gather(*(one(*j) for j in journals))
    for _, journal in journals:
        journal.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
