"""A gateway-like sync process for the SIGKILL trials: drains a journal to HTTP and JetStream.

``python sync_worker.py JOURNAL STORE_ID RECEIVER_URL NATS_URLS WITHDRAWN_FILE`` runs both sinks
concurrently until each is caught up, then exits 0. ``still_allowed`` reads the withdrawn
tokens from WITHDRAWN_FILE (one per line).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from edge.journal import Journal
from sync import MIGRATIONS
from sync.config import HttpSinkConfig, NatsSinkConfig, SyncConfig
from sync.http_sink import HttpSink
from sync.metrics import SyncMetrics
from sync.nats_sink import JetStreamSink
from sync.outbox import Outbox


async def main(journal_path: str, store: str, receiver: str, nats_urls: str, withdrawn_file: str) -> None:
    withdrawn = set(Path(withdrawn_file).read_text().split())
    config = SyncConfig(batch_events=250, backoff_base_s=0.05, backoff_cap_s=0.5)
    http = HttpSinkConfig(enabled=True, base_url=receiver, write_key="test-key")
    nats = NatsSinkConfig(enabled=True, servers=nats_urls.split(","), ack_timeout_s=5)
    with Journal(journal_path, migrations=MIGRATIONS) as journal:
        box = Outbox(journal, config, lambda u: u not in withdrawn, SyncMetrics())
        await asyncio.gather(
            box.run_sink("http", lambda: HttpSink(http), until_caught_up=True),
            box.run_sink("nats", lambda: JetStreamSink(nats, store), until_caught_up=True),
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
