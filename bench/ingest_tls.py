"""TLS ingest benchmark (``bench/ingest.py --tls``): the store network's cost, in the same run.

1. Device → journal over MQTT/TLS vs plaintext: one device floods N QoS 1 events into the
   broker's TLS listener (8883 role, on 127.0.0.2 as the store LAN's stand-in), then the same
   over the plaintext loopback device listener, alternating; rate = N / (first publish → last
   event committed in the journal). The gateway (its plain loopback link, as in production) is
   pinned to one core; broker and publisher share the other. Target: TLS / plaintext ≥ 0.80.
2. Reconnect storm: 400 device clients connected over TLS (each its own registered device: the
   broker binds client ids to usernames), the broker restarted (as ``systemctl restart``): time
   until all 400 and the gateway are back, and the gateway's CPU seconds meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry

from edge import schema
from edge.broker import broker_dir, free_port, mosquitto_conf, sync_broker_files, wait_for_port
from edge.registry import DeviceRegistry
from edge.store_network import StoreNetwork

LAN = "127.0.0.2"
STORM = 400
WORKERS = 4


def _client(client_id: str, user: str, password: str, context: ssl.SSLContext | None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    if context is not None:
        c.tls_set_context(context)
    c.reconnect_delay_set(1, 5)
    return c


def _flood(host: str, port: int, context: ssl.SSLContext | None, creds, topic: str, n: int, prefix: str) -> None:
    c = _client(f"flood-{prefix}", creds.mqtt_username, creds.mqtt_password, context)
    c.max_inflight_messages_set(1000)
    c.connect(host, port)
    c.loop_start()
    infos = []
    for i in range(n):
        body = {
            "messageId": f"{prefix}-{i}",
            "event": "Product Added",
            "timestamp": "2026-11-22T10:00:00.000Z",
            "properties": {"sku": f"SKU-{i % 5000:05d}", "quantity": 1, "price": 2.49},
        }
        infos.append(c.publish(topic, json.dumps(body), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def _count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(events: int, core: str, rounds: int = 2) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    port = free_port()
    cfg_path = tmp / "gateway.toml"
    cfg_path.write_text(
        f'[store]\nid = "bench"\nstate_dir = "{tmp / "state"}"\n[mqtt]\nmode = "external"\n'
        f'url = "mqtt://127.0.0.1:{port}"\n[http]\nport = 0\n[tls]\nhttp = false\n[features]\nenabled = []\n'
        f'[broker]\ninterfaces = ["{LAN}"]\nmqtts_port = {free_port(LAN)}\nmtls_port = {free_port(LAN)}\n'
        f'plaintext_hosts = ["127.0.0.1"]\nplaintext_port = {free_port()}\n[log]\nlevel = "warning"\n'
    )
    config = schema.load(cfg_path, env={})
    with schema.open_journal(config) as journal:
        registry = DeviceRegistry(journal)
        pub = registry.add("pos", "pub1")
        storm = [registry.add("kiosk", f"storm-{i}") for i in range(STORM)]
        sync_broker_files(registry, "bench", config.store.state_dir)
    network = StoreNetwork(config, CollectorRegistry(), time.time)
    listeners = network.prepare(port)
    network.record(0)
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        mosquitto_conf(
            config.store.state_dir,
            "127.0.0.1",
            port,
            5_000_000,
            listeners=listeners,
            broker=config.broker,
            pki=network.pki,
        )
    )
    other = "1" if core == "0" else "0"

    def start_broker() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["taskset", "-c", other, "mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        (broker_dir(config.store.state_dir) / "mosquitto.pid").write_text(f"{proc.pid}\n")
        wait_for_port("127.0.0.1", port, 10, proc)
        return proc

    broker = start_broker()
    assert network.pki is not None
    context = ssl.create_default_context(cafile=str(network.pki.ca_path))
    tls_port = network.listener("mqtts")
    plain_port = network.listener("plaintext")
    assert tls_port and plain_port
    topic = "retail/v1/bench/pos/pub1/events"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(tmp / "gateway.log", "ab")
    gw = subprocess.Popen(
        ["taskset", "-c", core, sys.executable, "-m", "edge.cli", "run", "--config", str(cfg_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    db = sqlite3.connect(str(schema.journal_path(config)), timeout=30)
    rates: dict[str, list[float]] = {"plain": [], "tls": []}
    try:
        _wait_gateway(plain_port, pub)
        for r in range(rounds):
            for kind, (host, p), ctx in (("plain", plain_port, None), ("tls", tls_port, context)):
                before = _count(db)
                started = time.perf_counter()
                _flood(host, p, ctx, pub, topic, events, f"{kind}{r}")
                while _count(db) < before + events:
                    time.sleep(0.01)
                rates[kind].append(events / (time.perf_counter() - started))

        # paho's loop uses select(): one process holds at most ~300 TLS clients (FD_SETSIZE), so 4 workers
        creds_file = tmp / "storm.json"
        creds_file.write_text(json.dumps([[c.mqtt_username, c.mqtt_password] for c in storm]))
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", str(creds_file), str(w), str(WORKERS),
                                     str(network.pki.ca_path), tls_port[0], str(tls_port[1])],
                                    stdout=subprocess.PIPE, text=True) for w in range(WORKERS)]  # fmt: skip
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "up", (
                "storm clients did not connect"
            )
        time.sleep(1.0)
        cpu_before = _cpu_s(gw.pid)
        broker.send_signal(signal.SIGTERM)
        broker.wait(30)
        restarted = time.perf_counter()
        broker = start_broker()
        before = _count(db)
        _flood(*plain_port, None, pub, topic, 1, "after-restart")  # committed only once the gateway is back
        while _count(db) <= before:
            time.sleep(0.01)
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "back", "storm clients lost"
        storm_s = time.perf_counter() - restarted
        storm_cpu = _cpu_s(gw.pid) - cpu_before
        broker_cpu = _cpu_s(broker.pid)
        for worker in workers:
            worker.terminate()
            worker.wait()
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(30)
        log.close()
        broker.terminate()
        broker.wait()
    plain, tls = statistics.median(rates["plain"]), statistics.median(rates["tls"])
    print(
        f"TLS ingest benchmark — {events} QoS 1 events per run, device -> broker -> gateway journal; "
        f"gateway pinned to core {core}, broker and publisher on core {other}"
    )
    print(
        f"  plaintext device listener      {plain:10,.0f} events/s   (runs: {', '.join(f'{x:,.0f}' for x in rates['plain'])})"
    )
    print(
        f"  MQTT over TLS (8883 role)      {tls:10,.0f} events/s   (runs: {', '.join(f'{x:,.0f}' for x in rates['tls'])})"
    )
    print(f"  ratio TLS / plaintext          {tls / plain:10.2f}   (target >= 0.80)")
    print(
        f"  reconnect storm: {STORM} TLS devices + the gateway back {storm_s:.1f} s after a broker restart; "
        f"gateway CPU meanwhile {storm_cpu:.2f} s ({100 * storm_cpu / storm_s:.0f} % of its core; "
        f"the restarted broker {broker_cpu:.2f} s)"
    )


def _wait_gateway(address: tuple[str, int], creds) -> None:
    """Until the gateway's retained status says online (read through a device login)."""
    online = threading.Event()
    c = _client(f"watch-{time.monotonic_ns()}", creds.mqtt_username, creds.mqtt_password, None)
    c.on_message = lambda _c, _u, m: online.set() if b'"online"' in m.payload else None
    c.on_connect = lambda cl, _u, _f, _r, _p: cl.subscribe("retail/v1/bench/gateway/status", qos=1)
    c.connect(*address)
    c.loop_start()
    try:
        if not online.wait(120):
            raise SystemExit("gateway did not come online")
    finally:
        c.disconnect()
        c.loop_stop()


def storm_worker(creds_file: str, index: int, workers: int, ca: str, host: str, port: int) -> None:
    """Connect this worker's share of the storm devices; say "up", then "back" once every one of
    them has been disconnected and has reconnected by itself (paho's own reconnect loop)."""
    creds = json.loads(Path(creds_file).read_text())[index::workers]
    context = ssl.create_default_context(cafile=ca)
    lock = threading.Lock()
    state = {"up": 0, "dropped": set(), "back": set()}
    all_back = threading.Event()

    def on_connect(client: mqtt.Client, user: str, _f: object, reason: object, _p: object) -> None:
        with lock:
            if user in state["dropped"]:
                state["back"].add(user)
                if len(state["back"]) == len(creds):
                    all_back.set()
            else:
                state["up"] += 1

    def on_disconnect(client: mqtt.Client, user: str, *_args: object) -> None:
        with lock:
            state["dropped"].add(user)

    clients = []
    for username, password in creds:
        c = _client(f"storm-{username}", username, password, context)
        c.user_data_set(username)
        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.connect(host, port, keepalive=30)
        c.loop_start()
        clients.append(c)
    while state["up"] < len(creds):
        time.sleep(0.01)
    print("up", flush=True)
    all_back.wait(600)
    print("back", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1] == "--worker":
        storm_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[7]))
