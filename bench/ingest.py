"""Ingest benchmark: the gateway against a bare paho subscriber, in the same run.

    taskset -c 0 is applied to the measured process (gateway or bare subscriber) by this script;
    run:  .venv/bin/python bench/ingest.py [--events 50000] [--rate 2000] [--seconds 10]

1. Drain: N QoS 1 events are queued by the broker for an offline persistent session, then the
   consumer connects and drains them — a bare paho subscriber that only counts (and acks), then
   the gateway journaling every event with group commit. Rate = events / (first → last receipt).
   The gateway drains twice: with the identifier guard's matchers off (``guard.identifiers``),
   then on; the ratio on/off is the guard's cost.
2. Live latency: events published at a fixed rate; publish → visible-in-journal latency, p50/p99,
   by polling the journal from this (unpinned) process every millisecond.
3. Gateway RSS (VmRSS / VmHWM).

``--tls`` runs the store-network benchmark instead (``bench/ingest_tls.py``): device → journal
over MQTT/TLS vs plaintext in the same run, and a 400-device TLS reconnect storm.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge import schema  # noqa: E402
from edge.broker import free_port, mosquitto_conf, sync_broker_files, wait_for_port  # noqa: E402
from edge.registry import DeviceRegistry  # noqa: E402

TOPIC = "retail/v1/bench/pos/pub1/events"


def _client(client_id: str, user: str, password: str, port: int, clean: bool = True,
            inflight: int = 20) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(inflight)
    c.username_pw_set(user, password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    return c


def _payload(i: int, prefix: str) -> str:
    return json.dumps({"messageId": f"{prefix}-{i}", "event": "Product Added",
                       "timestamp": "2026-11-22T10:00:00.000Z",
                       "properties": {"sku": f"SKU-{i % 5000:05d}", "quantity": 1, "price": 2.49}})


def publish(n: int, prefix: str, user: str, password: str, port: int, rate: float = 0.0,
            sent_at: dict[str, float] | None = None) -> None:
    c = _client(f"pub-{prefix}", user, password, port, inflight=1000)
    c.loop_start()
    start = time.perf_counter()
    infos = []
    for i in range(n):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if sent_at is not None:
            sent_at[f"{prefix}-{i}"] = time.time()
        infos.append(c.publish(TOPIC, _payload(i, prefix), qos=1))
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def bare_subscriber(port: int, user: str, password: str, n: int, subscribe_only: bool) -> None:
    """Runs pinned in its own process: count N messages, ack each (auto-ack), print the rate."""
    done = threading.Event()
    times: list[float] = []

    def on_message(_c, _u, _m):
        times.append(time.perf_counter())
        if len(times) >= n:
            done.set()

    c = _client("bare-sub", user, password, port, clean=False)
    c.on_message = on_message
    c.subscribe(TOPIC, qos=1)
    if subscribe_only:
        time.sleep(0.5)
        c.disconnect()
        return
    c.loop_start()
    done.wait(600)
    c.loop_stop()
    print(json.dumps({"rate": (len(times) - 1) / (times[-1] - times[0])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--core", default="0")
    parser.add_argument("--bare-subscriber", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--subscribe-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help="TLS vs plaintext ingest and a TLS reconnect storm")
    args = parser.parse_args()
    if args.tls:
        from bench.ingest_tls import run as run_tls

        run_tls(min(args.events, 20_000), args.core)
        return
    if args.bare_subscriber:
        port, user, password, n = args.bare_subscriber
        bare_subscriber(int(port), user, password, int(n), args.subscribe_only)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    port = free_port()
    cfg_path = tmp / "gateway.toml"
    cfg_path.write_text(f'[store]\nid = "bench"\nstate_dir = "{tmp / "state"}"\n[mqtt]\nmode = "external"\n'
                        f'url = "mqtt://127.0.0.1:{port}"\n[http]\nport = 0\n[features]\nenabled = []\n[log]\nlevel = "warning"\n')
    config = schema.load(cfg_path, env={})
    with schema.open_journal(config) as journal:
        registry = DeviceRegistry(journal)
        pub = registry.add("pos", "pub1")
        sub = registry.add("pos", "sub1")
        sync_broker_files(registry, "bench", config.store.state_dir)
    # the bare subscriber logs in as a device allowed to read the topic: widen its ACL for the bench
    acl = config.store.state_dir / "broker" / "acl"
    acl.write_text(acl.read_text() + f"\nuser sub1\ntopic read {TOPIC}\n")
    conf = tmp / "mosquitto.conf"
    conf.write_text(mosquitto_conf(config.store.state_dir, "127.0.0.1", port, 5_000_000))
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 10, broker)
    pin = ["taskset", "-c", args.core]
    me = [sys.executable, __file__]
    try:
        # 1a. bare subscriber drain
        bare_args = [*pin, *me, "--bare-subscriber", str(port), "sub1", sub.mqtt_password, str(args.events)]
        subprocess.run([*bare_args, "--subscribe-only"], check=True)
        publish(args.events, "bare", pub.mqtt_username, pub.mqtt_password, port)
        out = subprocess.run(bare_args, check=True, capture_output=True, text=True).stdout
        bare_rate = json.loads(out.strip().splitlines()[-1])["rate"]
        # end the bare subscriber's persistent session: left offline, it would queue every later
        # event of this run, and the broker's autosaves would rewrite that growing backlog
        gone = _client("bare-sub", "sub1", sub.mqtt_password, port, clean=True)
        gone.loop_start()
        gone.disconnect()
        gone.loop_stop()

        # 1b. gateway drain: create the persistent session, stop, queue a backlog, start again
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        gw_cmd = [*pin, sys.executable, "-m", "edge.cli", "run", "--config", str(cfg_path)]
        log = open(tmp / "gateway.log", "ab")
        db = sqlite3.connect(str(schema.journal_path(config)), timeout=30)

        def drain(prefix: str, extra_env: dict[str, str]) -> tuple[float, subprocess.Popen[bytes]]:
            run_env = dict(env, **extra_env)
            gw = subprocess.Popen(gw_cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env)
            _wait_online(port, pub)
            gw.send_signal(signal.SIGTERM)
            gw.wait(30)
            publish(args.events, prefix, pub.mqtt_username, pub.mqtt_password, port)
            gw = subprocess.Popen(gw_cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env)
            like = (f"{prefix}-%",)
            while db.execute("SELECT COUNT(*) FROM events WHERE message_id LIKE ?", like).fetchone()[0] < args.events:
                time.sleep(0.2)
            first, last = db.execute("SELECT MIN(received_ms), MAX(received_ms) FROM events"
                                     " WHERE message_id LIKE ?", like).fetchone()
            return (args.events - 1) / ((last - first) / 1000), gw

        # 1c. the identifier guard's cost: the same drain with its matchers off (text, numbers
        # and nesting are still checked), then on again for the figures below
        off_rate, gw = drain("noguard", {"EDGE_GUARD__IDENTIFIERS": "false"})
        gw.send_signal(signal.SIGTERM)
        gw.wait(30)
        gw_rate, gw = drain("drain", {})

        # 2. live latency at a fixed rate
        sent_at: dict[str, float] = {}
        seen: dict[str, float] = {}
        cursor = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        n_live = int(args.rate * args.seconds)
        publisher = threading.Thread(target=publish, args=(n_live, "live", pub.mqtt_username, pub.mqtt_password,
                                                             port, args.rate, sent_at))
        publisher.start()
        deadline = time.time() + args.seconds + 30
        while len(seen) < n_live and time.time() < deadline:
            rows = db.execute("SELECT seq, message_id FROM events WHERE seq > ?", (cursor,)).fetchall()
            now = time.time()
            for seq, mid in rows:
                seen[mid] = now
                cursor = max(cursor, seq)
            time.sleep(0.001)
        publisher.join()
        latencies = sorted((seen[m] - sent_at[m]) * 1000 for m in seen if m in sent_at)
        rss = _rss(gw.pid)
        gw.send_signal(signal.SIGTERM)
        gw.wait(30)
        log.close()
    finally:
        broker.terminate()
        broker.wait()

    prepare_on, prepare_off = _prepare_cost(tmp, min(args.events, 20_000))
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"ingest benchmark — {args.events} QoS 1 events drained from a broker backlog; "
          f"consumer pinned to core {args.core}")
    print(f"  bare paho subscriber (count + ack)   {bare_rate:10,.0f} events/s")
    print(f"  gateway (parse + journal commit)     {gw_rate:10,.0f} events/s")
    print(f"  ratio gateway / bare                 {gw_rate / bare_rate:10.2f}   (target >= 0.50)")
    print(f"  gateway, identifier guard off        {off_rate:10,.0f} events/s")
    print(f"  ratio guard on / off                 {gw_rate / off_rate:10.2f}   (target >= 0.90)")
    print(f"  validate + guard + parse, in-process  {prepare_on:8.1f} us/event, guard matchers off {prepare_off:.1f}"
          f" (ratio {prepare_off / prepare_on:.2f})")
    print(f"  live {args.rate:,.0f} events/s for {args.seconds:.0f} s: publish->commit p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms   (target p99 <= 50 ms); {len(latencies)}/{n_live} seen")
    print(f"  gateway RSS {rss['VmRSS'] / 1024:.0f} MB, peak {rss['VmHWM'] / 1024:.0f} MB   (target <= 120 MB)")


def _prepare_cost(tmp: Path, n: int) -> tuple[float, float]:
    """The producer-side CPU per event (decode, guard, parse) with the guard's matchers on and
    off, alternated three times in this process: the guard's cost without the broker's noise."""
    from edge.bus import Source
    from edge.guard import IdentifierGuard
    from edge.ingest import Ingestor
    from edge.journal import Journal
    from edge.metrics import IngestMetrics

    payloads = [_payload(i, "cpu").encode() for i in range(n)]
    source = Source("bench", "pub1", "pos", "mqtt")
    best = {True: float("inf"), False: float("inf")}
    with Journal(tmp / "prepare.db") as journal:
        for _ in range(3):
            for on in (False, True):
                ingestor = Ingestor(journal, IngestMetrics(), guard=IdentifierGuard(identifiers=on))
                started = time.perf_counter()
                for payload in payloads:
                    ingestor.prepare_payload(source, payload)
                best[on] = min(best[on], (time.perf_counter() - started) / n * 1e6)
    return best[True], best[False]


def _wait_online(port: int, creds) -> None:
    online = threading.Event()
    c = _client("bench-watch", creds.mqtt_username, creds.mqtt_password, port)
    c.on_message = lambda _c, _u, m: online.set() if b'"online"' in m.payload else None
    c.subscribe("retail/v1/bench/gateway/status", qos=1)
    c.loop_start()
    if not online.wait(60):
        raise SystemExit("gateway did not come online")
    c.disconnect()
    c.loop_stop()


def _rss(pid: int) -> dict[str, int]:
    # taskset execs the gateway, so the pid is the gateway itself
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


if __name__ == "__main__":
    main()
