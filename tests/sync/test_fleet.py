"""A fleet through a 3-node hub into the central job, losing a NATS node and a worker.

400 simulated stores (real journals, Outbox and JetStreamSink, each with its own nkey identity,
in four processes) and two real gateways (HTTP ingest → journal → sync, their own identities)
publish to a 3-node JetStream cluster that admits only the fleet's identities; two central
workers (`edge central run`, separate processes) share the durable
consumer. Mid-run one NATS node is SIGKILLed and one worker is kill -9'd: PostgreSQL ends with
exactly the set of consented events, each once. ``FLEET_SEED`` pins the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from natsservers import running_nats, stop
from support.gateway import make_config, register, running_gateway, wait_until
from support.services import free_port

from edge import schema
from edge.journal import Journal
from sync.central import CentralJob
from sync.identities import FleetIdentities

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
STORES, PROCESSES, EVENTS = 400, 4, 60
GATEWAYS = ("g1", "g2")


def post_events(handle, token: str, store: str, count: int) -> None:
    """Events about no one (no userId, no anonymousId): the send rule always lets them out."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=handle.http, headers=headers, timeout=30) as client:
        for start in range(0, count, 50):
            batch = [{"messageId": f"{store}-{i}", "type": "track", "event": "Cart Viewed",
                      "properties": {"items": i % 7}} for i in range(start, min(count, start + 50))]  # fmt: skip
            response = client.post("/v1/events", json={"batch": batch})
            assert response.status_code == 200 and response.json()["accepted"] == len(batch)


def edge_central(*argv: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "import sys; from edge.cli import main; sys.exit(main())", "central", *argv],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip


def loaded(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT message_id) FROM cdp_events").fetchone()
    return row[0], row[1]


@pytest.mark.integration
@pytest.mark.slow
def test_400_stores_through_a_cluster_losing_a_node_and_a_worker_load_exactly_once(tmp_path, postgres):
    seed = int(os.environ.get("FLEET_SEED", random.randrange(1 << 30)))
    print(f"FLEET_SEED={seed}")
    rnd = random.Random(seed)
    fleet = FleetIdentities(tmp_path / "fleet")
    fleet.add([f"f{i:03d}" for i in range(STORES)] + list(GATEWAYS))
    with running_nats(tmp_path / "hub", 3, fleet=fleet, backbone=False) as hub:
        hub.create_backbone([], ack_wait_s=4.0)
        toml = tmp_path / "central.toml"
        servers = ", ".join(f'"{u}"' for u in hub.urls)
        toml.write_text(
            f'[central]\nservers = [{servers}]\ncredentials = "{fleet.central_seed}"\n'
            f'postgres = "{postgres}"\nreplicas = 3\nevents_max_bytes = {512 * 1024**2}\n'
            "ack_wait_s = 4.0\nfetch_batch = 250\nlag_report_s = 1.0\n"
        )
        asyncio.run(CentralJob(hub.central_config(postgres=postgres)).create_schema())
        metrics_port = free_port()
        workers = [
            edge_central("run", "--config", str(toml), log=tmp_path / "worker-0.log"),
            edge_central(
                "run", "--config", str(toml), "--metrics-port", str(metrics_port), log=tmp_path / "worker-1.log"
            ),
        ]
        stores, expected = [], set()
        gateways = contextlib.ExitStack()
        try:
            handles = {}
            for store in GATEWAYS:
                config = make_config(
                    tmp_path / store, store={"id": store},
                    sync_nats={"enabled": True, "servers": hub.urls, "credentials": str(fleet.store_seed(store)),
                               "ack_timeout_s": 5},
                    sync={"backoff_cap_s": 1.0, "idle_poll_s": 0.1},
                )  # fmt: skip
                token = register(config, [("kiosk", "k1")])["k1"].http_token
                handle = gateways.enter_context(running_gateway(config, features=tuple(config.features.enabled)))
                handles[store] = (handle, token, config)
            posting = [threading.Thread(target=post_events, args=(h, t, s, 400)) for s, (h, t, _) in handles.items()]
            for thread in posting:
                thread.start()
            per = STORES // PROCESSES
            for p in range(PROCESSES):
                out = tmp_path / f"stores-{p}" / "expected.txt"
                out.parent.mkdir()
                with open(out.parent / "log", "ab") as log:
                    stores.append(subprocess.Popen(
                        [sys.executable, str(HERE / "fleet_stores.py"), str(fleet.root), ",".join(hub.urls),
                         str(p * per), str(per), str(EVENTS), str(seed), str(out)],
                        stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    ))  # fmt: skip
            for p, proc in enumerate(stores):
                assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
                expected |= set((tmp_path / f"stores-{p}" / "expected.txt").read_text().split())
            started = time.monotonic()
            time.sleep(rnd.uniform(0.2, 1.0))
            victim = rnd.randrange(3)
            hub.nodes[victim].kill()
            time.sleep(rnd.uniform(0.3, 1.0))
            during = loaded(postgres)[0]
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            print(f"killed node n{victim}, then worker 0 with {during} events loaded")
            for proc in stores:
                assert proc.wait(90) == 0
            for thread in posting:
                thread.join(60)
            for handle, _, _ in handles.values():
                sync = handle.gateway.features.sync
                wait_until(lambda s=sync: s.status()["sinks"]["nats"]["backlog"] == 0, timeout=60, interval=0.2)
            gateways.close()
            for _, _, config in handles.values():
                with Journal(schema.journal_path(config), migrations=schema.migrations()) as journal:
                    with journal.connection() as conn:
                        rows = conn.execute("SELECT message_id, user_id, anonymous_id FROM events").fetchall()
                assert rows and all(u is None and a is None for _, u, a in rows), "only events about no one"
                expected |= {m for m, _, _ in rows}
            deadline = time.monotonic() + 60
            while loaded(postgres)[0] < len(expected) and time.monotonic() < deadline:
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            for _ in range(50):  # the worker reports the consumer's backlog once it is idle
                metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                if "central_consumer_pending 0.0" in metrics:
                    break
                time.sleep(0.2)
        finally:
            gateways.close()
            for proc in stores + workers:
                stop(proc, signal.SIGKILL)
                if proc.stdout is not None:
                    proc.stdout.close()
    assert during < len(expected), "the worker was killed mid-run"
    total, distinct = loaded(postgres)
    print(
        f"{len(expected)} consented of {STORES * EVENTS} simulated + the gateways' events,"
        f" loaded {total} in {elapsed:.1f} s"
    )
    with psycopg.connect(postgres) as conn:
        ids = {r[0] for r in conn.execute("SELECT message_id FROM cdp_events")}
        per_store = conn.execute("SELECT count(DISTINCT store_id) FROM cdp_events").fetchone()[0]
    assert total == distinct == len(expected) and ids == expected
    assert per_store == STORES + len(GATEWAYS)
    # the surviving worker's own metrics: load and lag per store, the shared consumer's backlog
    stores_seen = set(re.findall(r'central_events_loaded_total\{store="(f\d+)"\}', metrics))
    lags = re.findall(r'central_load_lag_seconds\{store="f\d+"\} ([0-9.e+]+)', metrics)
    assert len(stores_seen) > STORES // 2 and len(lags) == len(stores_seen)
    assert "central_consumer_pending 0.0" in metrics
