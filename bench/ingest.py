"""Ingest benchmark: the gateway against a bare paho subscriber and a peer gateway, in the same run.

    .venv/bin/python bench/ingest.py [--mode all|drain|live|flood|peer] [--events 50000] ...

The measured process (gateway, bare subscriber, peer) is pinned to ``--core`` (default 0) by
this script with taskset; this process (publisher, counters, journal polling) pins itself, and
the brokers, to the other core. CPU seconds are read from /proc; compare the ratios printed in
one run, since absolute figures move with the machine's load.

Modes (``all``, the default, runs drain, live and peer; each runs alone too):

flood: one publisher floods ``--flood-events`` (20,000) QoS 1 ~200-byte events live into the
   broker while the gateway (``--features``: the default set) ingests them; rate = events / (first publish →
   last event committed in the journal), with the gateway's CPU seconds per 1,000 events
   (from /proc) and its RSS peak. Every event is committed before its PUBACK.
peer: flood, then the same workload through ThingsBoard IoT Gateway 3.8.5 (the nearest
   open-source Python peer): its MQTT connector subscribed to the same broker, SQLite storage,
   sending to a second local Mosquitto where this script plays the platform — it answers the
   gateway's ``getSessionLimits`` RPC (the peer sends nothing before that reply) and counts
   the readings that arrive. Rate = readings / (first publish → last reading at the platform).
   Prints both and the ratios. The peer is installed by this script into its own venv under
   ``$XDG_CACHE_HOME/edge-bench`` (~/.cache; pip, once) — nothing of it is committed.

1. Drain (``drain``): N QoS 1 events are queued by the broker for an offline persistent session, then the
   consumer connects and drains them — a bare paho subscriber that only counts (and acks), then
   the gateway journaling every event with group commit. Rate = events / (first → last receipt).
   The gateway drains twice: with the identifier guard's matchers off (``guard.identifiers``),
   then on; the ratio on/off is the guard's cost.
2. Live latency (``live``): events published at a fixed rate; publish → visible-in-journal latency, p50/p99,
   by polling the journal from this process (on the other core) every millisecond; ``--repeat``
   runs in a row (target: p99 <= 50 ms in every one).
3. Gateway RSS (VmRSS / VmHWM) after the live runs, and its peak in the flood.

``--tls`` runs the store-network benchmark instead (``bench/ingest_tls.py``): device → journal
over MQTT/TLS vs plaintext in the same run, and a 400-device TLS reconnect storm.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
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
from edge.store_network import make_pki  # noqa: E402

TOPIC = "retail/v1/bench/pos/pub1/events"
PEER_TOPIC = "peer/bench/pub1/events"  # not under the gateway's subscription: its session queues none of it
PEER_VERSION = "3.8.5"
BENCH_CORE = "1"


def _client(client_id: str, user: str, password: str, port: int, clean: bool = True, inflight: int = 20) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(inflight)
    c.username_pw_set(user, password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    return c


def _payload(i: int, prefix: str) -> str:
    """A ~200-byte event; each its own timestamp (the peer merges readings of equal time)."""
    at = f"2026-11-22T{10 + i // 3_600_000 % 10:02d}:{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z"
    return json.dumps(
        {
            "messageId": f"{prefix}-{i}",
            "event": "Product Added",
            "timestamp": at,
            "properties": {
                "sku": f"SKU-{i % 5000:05d}",
                "quantity": 1,
                "price": 2.49,
                "currency": "EUR",
                "list": "aisle-07",
            },
        }
    )


def publish(
    n: int,
    prefix: str,
    user: str,
    password: str,
    port: int,
    rate: float = 0.0,
    sent_at: dict[str, float] | None = None,
    topic: str = TOPIC,
) -> None:
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
        infos.append(c.publish(topic, _payload(i, prefix), qos=1))
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


class Rig:
    """The broker, the registry's devices and the gateway's config, in a scratch directory."""

    def __init__(self, features: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        self.port = free_port()
        self.cfg_path = self.tmp / "gateway.toml"
        enabled = ""
        if features != "default":
            names = [] if features == "none" else [f.strip() for f in features.split(",") if f.strip()]
            enabled = f"[features]\nenabled = {json.dumps(names)}\n"
        self.cfg_path.write_text(
            f'[store]\nid = "bench"\nstate_dir = "{self.tmp / "state"}"\n[mqtt]\nmode = "external"\n'
            f'url = "mqtt://127.0.0.1:{self.port}"\n[http]\nport = 0\n{enabled}[log]\nlevel = "warning"\n'
        )
        self.config = schema.load(self.cfg_path, env={})
        with schema.open_journal(self.config) as journal:
            registry = DeviceRegistry(journal)
            self.pub = registry.add("pos", "pub1")
            self.sub = registry.add("pos", "sub1")
            sync_broker_files(registry, "bench", self.config.store.state_dir)
        # the store PKI as every start but a box's very first finds it (made at install or first
        # boot): the gateway then reads its certificate with ssl and never loads cryptography
        make_pki(self.config).ensure()
        self.widen_acl()
        conf = self.tmp / "mosquitto.conf"
        conf.write_text(mosquitto_conf(self.config.store.state_dir, "127.0.0.1", self.port, 5_000_000))
        self.broker = subprocess.Popen(
            ["taskset", "-c", BENCH_CORE, "mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, 10, self.broker)
        self.log = open(self.tmp / "gateway.log", "ab")
        self.db = sqlite3.connect(str(schema.journal_path(self.config)), timeout=30)

    def widen_acl(self, reload: bool = False) -> None:
        """The bare subscriber and the peer log in as a device allowed to read the topic, and the
        publisher may write the peer's topic (the gateway rewrites the ACL when it starts)."""
        acl = self.config.store.state_dir / "broker" / "acl"
        text = acl.read_text()
        if PEER_TOPIC not in text:
            text = text.replace("user pub1\n", f"user pub1\ntopic write {PEER_TOPIC}\n", 1)
            acl.write_text(text + f"\nuser sub1\ntopic read {TOPIC}\ntopic read {PEER_TOPIC}\n")
        if reload:
            self.broker.send_signal(signal.SIGHUP)
            time.sleep(0.5)

    def gateway(self, core: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start the gateway pinned to ``core`` and wait until it is online."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
        gw = subprocess.Popen(
            ["taskset", "-c", core, sys.executable, "-m", "edge.cli", "run", "--config", str(self.cfg_path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _wait_online(self.port, self.pub)
        return gw

    def publish(self, n: int, prefix: str, **kw) -> None:
        publish(n, prefix, self.pub.mqtt_username, self.pub.mqtt_password, self.port, **kw)

    def flood(self, n: int, prefix: str, topic: str, publisher: str) -> None:
        """The flood's one publisher: Mosquitto's own C client (``mosquitto_pub -l``, one line a
        message, 1,000 in flight) unless ``--publisher paho`` — a Python publisher sharing the
        other core with the broker tops out near the rates measured, hiding the consumer's."""
        if publisher == "paho":
            self.publish(n, prefix, topic=topic)
            return
        lines = self.tmp / f"{prefix}.lines"
        lines.write_text("".join(_payload(i, prefix) + "\n" for i in range(n)))
        with open(lines, "rb") as stdin:
            subprocess.run(
                [
                    "taskset",
                    "-c",
                    BENCH_CORE,
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-u",
                    self.pub.mqtt_username,
                    "-P",
                    self.pub.mqtt_password,
                    "-V",
                    "5",
                    "-q",
                    "1",
                    "-M",
                    "1000",
                    "-t",
                    topic,
                    "-l",
                ],
                stdin=stdin,
                check=True,
                timeout=600,
            )

    def max_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    def close(self) -> None:
        self.log.close()
        self.db.close()
        self.broker.terminate()
        self.broker.wait()
        if not os.environ.get("BENCH_KEEP"):  # BENCH_KEEP=1 keeps the journal and logs to look at
            shutil.rmtree(self.tmp, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_drain(rig: Rig, args: argparse.Namespace) -> dict[str, float]:
    pin = ["taskset", "-c", args.core]
    me = [sys.executable, __file__]
    # 1a. bare subscriber drain
    rig.widen_acl(reload=True)
    bare_args = [*pin, *me, "--bare-subscriber", str(rig.port), "sub1", rig.sub.mqtt_password, str(args.events)]
    subprocess.run([*bare_args, "--subscribe-only"], check=True)
    rig.publish(args.events, "bare")
    out = subprocess.run(bare_args, check=True, capture_output=True, text=True).stdout
    bare_rate = json.loads(out.strip().splitlines()[-1])["rate"]
    # end the bare subscriber's persistent session: left offline, it would queue every later
    # event of this run, and the broker's autosaves would rewrite that growing backlog
    gone = _client("bare-sub", "sub1", rig.sub.mqtt_password, rig.port, clean=True)
    gone.loop_start()
    gone.disconnect()
    gone.loop_stop()

    # 1b. gateway drain: create the persistent session, stop, queue a backlog, start again
    def drain(prefix: str, extra_env: dict[str, str]) -> float:
        _stop(rig.gateway(args.core, extra_env))
        rig.publish(args.events, prefix)
        gw = subprocess.Popen(
            ["taskset", "-c", args.core, sys.executable, "-m", "edge.cli", "run", "--config", str(rig.cfg_path)],
            stdout=rig.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **extra_env),
        )
        like = (f"{prefix}-%",)
        try:
            while (
                rig.db.execute("SELECT COUNT(*) FROM events WHERE message_id LIKE ?", like).fetchone()[0] < args.events
            ):
                time.sleep(0.2)
            first, last = rig.db.execute(
                "SELECT MIN(received_ms), MAX(received_ms) FROM events WHERE message_id LIKE ?", like
            ).fetchone()
        finally:
            _stop(gw)
        return (args.events - 1) / ((last - first) / 1000)

    # 1c. the identifier guard's cost: the same drain with its matchers off (text, numbers
    # and nesting are still checked), then on again
    off_rate = drain("noguard", {"EDGE_GUARD__IDENTIFIERS": "false"})
    gw_rate = drain("drain", {})
    prepare_on, prepare_off = _prepare_cost(rig.tmp, min(args.events, 20_000))
    print(f"drain — {args.events} QoS 1 events drained from a broker backlog; consumer pinned to core {args.core}")
    print(f"  bare paho subscriber (count + ack)   {bare_rate:10,.0f} events/s")
    print(f"  gateway (parse + journal commit)     {gw_rate:10,.0f} events/s")
    print(f"  ratio gateway / bare                 {gw_rate / bare_rate:10.2f}   (target >= 0.70)")
    print(f"  gateway, identifier guard off        {off_rate:10,.0f} events/s")
    print(f"  ratio guard on / off                 {gw_rate / off_rate:10.2f}   (target >= 0.90)")
    print(
        f"  validate + guard + parse, in-process  {prepare_on:8.1f} us/event, guard matchers off {prepare_off:.1f}"
        f" (ratio {prepare_off / prepare_on:.2f})"
    )
    return {"bare": bare_rate, "gateway": gw_rate, "ratio": gw_rate / bare_rate}


def run_live(rig: Rig, args: argparse.Namespace) -> dict[str, float]:
    """Publish → visible-in-journal latency at a fixed rate, ``--repeat`` runs in a row."""
    gw = rig.gateway(args.core)
    p99s = []
    try:
        for run in range(args.repeat):
            sent_at: dict[str, float] = {}
            seen: dict[str, float] = {}
            cursor = rig.max_seq()
            n_live = int(args.rate * args.seconds)
            prefix = f"live{run}"
            publisher = threading.Thread(
                target=rig.publish, args=(n_live, prefix), kwargs={"rate": args.rate, "sent_at": sent_at}
            )
            publisher.start()
            deadline = time.time() + args.seconds + 30
            while len(seen) < n_live and time.time() < deadline:
                rows = rig.db.execute("SELECT seq, message_id FROM events WHERE seq > ?", (cursor,)).fetchall()
                now = time.time()
                for seq, mid in rows:
                    seen[mid] = now
                    cursor = max(cursor, seq)
                time.sleep(0.001)
            publisher.join()
            latencies = sorted((seen[m] - sent_at[m]) * 1000 for m in seen if m in sent_at)
            p50 = statistics.median(latencies)
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            p99s.append(p99)
            print(
                f"live {args.rate:,.0f} events/s for {args.seconds:.0f} s (run {run + 1}/{args.repeat}): "
                f"publish->commit p50 {p50:.1f} ms, p99 {p99:.1f} ms   (target p99 <= 50 ms); "
                f"{len(latencies)}/{n_live} seen"
            )
        rss = _rss(gw.pid)
    finally:
        _stop(gw)
    print(
        f"  gateway RSS {rss['VmRSS'] / 1024:.1f} MB, peak {rss['VmHWM'] / 1024:.1f} MB   (target <= 120 MB);"
        f" of it anonymous {rss['RssAnon'] / 1024:.0f} MB, mapped files {rss['RssFile'] / 1024:.0f} MB;"
        f" cryptography loaded: {'yes' if rss['cryptography'] else 'no'}"
    )
    return {"p99_max": max(p99s)}


def run_flood(rig: Rig, args: argparse.Namespace) -> dict[str, float]:
    """The gateway under one publisher's live QoS 1 flood (see the module's docstring)."""
    gw = rig.gateway(args.core)
    try:
        time.sleep(1.0)  # settled: features loaded, the first housekeeping done
        n = args.flood_events
        start_seq = rig.max_seq()
        cpu0 = _cpu_s(gw.pid)
        t0 = time.perf_counter()
        publisher = threading.Thread(target=rig.flood, args=(n, f"flood{int(t0)}", TOPIC, args.publisher))
        publisher.start()
        deadline = t0 + 300
        while rig.max_seq() - start_seq < n and time.perf_counter() < deadline:
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        cpu = _cpu_s(gw.pid) - cpu0
        done = rig.max_seq() - start_seq
        publisher.join()
        rss = _rss(gw.pid)
    finally:
        _stop(gw)
    result = {
        "rate": done / elapsed,
        "cpu_per_1000": cpu / done * 1000,
        "rss_peak_mb": rss["VmHWM"] / 1024,
        "events": done,
    }
    print(
        f"flood — one publisher, {n} QoS 1 events of ~{len(_payload(0, 'flood0000000000'))} bytes, live; "
        f"gateway pinned to core {args.core}, broker + publisher on core {BENCH_CORE}"
    )
    print(
        f"  gateway, committed before PUBACK      {result['rate']:10,.0f} events/s   "
        f"{result['cpu_per_1000']:.3f} CPU-s/1,000 (target <= 0.12)   RSS peak {result['rss_peak_mb']:.1f} MB"
        f" (target <= 120)   {done}/{n} committed"
    )
    return result


def run_peer(rig: Rig, args: argparse.Namespace) -> dict[str, float]:
    """ThingsBoard IoT Gateway on the flood's workload (see the module's docstring)."""
    python = _peer_python()
    rig.widen_acl(reload=True)
    platform_port = free_port()
    platform_conf = rig.tmp / "platform.conf"
    platform_conf.write_text(f"listener {platform_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    platform = subprocess.Popen(
        ["taskset", "-c", BENCH_CORE, "mosquitto", "-c", str(platform_conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", platform_port, 10, platform)
    counter = _Platform(platform_port)
    config_dir = _peer_config(rig, python, platform_port)
    log = open(rig.tmp / "peer.log", "ab")
    launcher = (
        "import thingsboard_gateway.tb_utility.tb_updater as u\n"
        "u.TBUpdater.check_for_new_version = lambda self: None  # no update check: no traffic off this machine\n"
        "from thingsboard_gateway.tb_gateway import main\nmain()\n"
    )
    env = dict(
        os.environ,
        TB_GW_CONFIG_DIR=str(config_dir) + "/",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
    )
    peer = subprocess.Popen(
        ["taskset", "-c", args.core, str(python), "-c", launcher],
        cwd=rig.tmp / "peer",
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        # warm up: single events until one reaches the platform (connector subscribed, limits applied)
        deadline = time.time() + 120
        i = 0
        while not counter.seen("warm") and time.time() < deadline:
            if peer.poll() is not None:
                raise SystemExit(f"the peer exited ({peer.returncode}); see {rig.tmp / 'peer.log'}")
            rig.publish(1, f"warm{i}", topic=PEER_TOPIC)
            i += 1
            time.sleep(0.5)
        if not counter.seen("warm"):
            raise SystemExit(f"the peer forwarded nothing in 120 s; see {rig.tmp / 'peer.log'}")
        time.sleep(2.0)
        n = args.flood_events
        cpu0 = _cpu_s(peer.pid)
        t0 = time.perf_counter()
        publisher = threading.Thread(target=rig.flood, args=(n, "peer", PEER_TOPIC, args.publisher))
        publisher.start()
        deadline = t0 + 600
        while counter.seen("peer") < n and time.perf_counter() < deadline and peer.poll() is None:
            time.sleep(0.005)
        elapsed = (counter.last_at or time.perf_counter()) - t0
        cpu = _cpu_s(peer.pid) - cpu0
        done = counter.seen("peer")
        publisher.join()
        rss = _rss(peer.pid)
    finally:
        _stop(peer)
        log.close()
        counter.close()
        platform.terminate()
        platform.wait()
    result = {
        "rate": done / elapsed,
        "cpu_per_1000": cpu / max(done, 1) * 1000,
        "rss_peak_mb": rss["VmHWM"] / 1024,
        "events": done,
    }
    print(
        f"peer — ThingsBoard IoT Gateway {PEER_VERSION} (MQTT connector, SQLite storage, acks before storing),"
        f" same workload, pinned to core {args.core}"
    )
    print(
        f"  peer, readings at the platform        {result['rate']:10,.0f} readings/s "
        f"{result['cpu_per_1000']:.3f} CPU-s/1,000                RSS peak {result['rss_peak_mb']:.0f} MB"
        f"                {done}/{n} forwarded"
    )
    return result


class _Platform:
    """The peer's platform side on the second broker: answers getSessionLimits, counts readings."""

    def __init__(self, port: int) -> None:
        self._ids: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.last_at: float | None = None
        c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="platform", protocol=mqtt.MQTTv311
        )
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.subscribe("v1/#", qos=1)
        c.loop_start()
        self.client = c

    def _on_message(self, client, _u, msg) -> None:
        if msg.topic.startswith("v1/devices/me/rpc/request/"):
            request = json.loads(msg.payload)
            if request.get("method") == "getSessionLimits":  # no limits: as fast as it can
                reply = {
                    "maxPayloadSize": 65536,
                    "maxInflightMessages": 10000,
                    "rateLimits": {},
                    "gatewayRateLimits": {},
                }
                client.publish("v1/devices/me/rpc/response/" + msg.topic.rsplit("/", 1)[1], json.dumps(reply), qos=1)
            return
        if msg.topic != "v1/gateway/telemetry":
            return
        now = time.perf_counter()
        data = json.loads(msg.payload)
        with self._lock:
            for readings in data.values():
                for reading in readings if isinstance(readings, list) else [readings]:
                    mid = str(reading.get("values", reading).get("messageId", ""))
                    prefix = mid.rstrip("0123456789").rstrip("-")
                    prefix = "warm" if prefix.startswith("warm") else prefix
                    self._ids.setdefault(prefix, set()).add(mid)
            self.last_at = now

    def seen(self, prefix: str) -> int:
        with self._lock:
            return len(self._ids.get(prefix, ()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _peer_python() -> Path:
    """The peer's interpreter: its own venv in the cache dir, made with pip the first time."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-bench"
    venv = cache / f"thingsboard-gateway-{PEER_VERSION}"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import thingsboard_gateway"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing thingsboard-gateway=={PEER_VERSION} into {venv} (once) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"thingsboard-gateway=={PEER_VERSION}"], check=True)
    subprocess.run(probe, check=True)
    return python


def _peer_config(rig: Rig, python: Path, platform_port: int) -> Path:
    """The peer's config dir: its shipped defaults, then the gateway, storage and connector set
    for this workload (logging at WARNING, statistics and remote configuration off)."""
    shipped = (
        Path(
            subprocess.run(
                [
                    str(python),
                    "-c",
                    "import thingsboard_gateway, os; print(os.path.dirname(thingsboard_gateway.__file__))",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        / "config"
    )
    config_dir = rig.tmp / "peer" / "config"
    (rig.tmp / "peer").mkdir(exist_ok=True)
    import shutil

    shutil.copytree(shipped, config_dir, dirs_exist_ok=True)
    logs = json.loads((config_dir / "logs.json").read_text())
    for section in ("handlers", "loggers"):
        for entry in logs.get(section, {}).values():
            entry["level"] = "WARNING"
            if "filename" in entry:
                entry["filename"] = str(rig.tmp / "peer" / "logs" / Path(entry["filename"]).name)
    logs.get("root", {})["level"] = "WARNING"
    (rig.tmp / "peer" / "logs").mkdir(exist_ok=True)
    (config_dir / "logs.json").write_text(json.dumps(logs, indent=2))
    main = {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": platform_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600, "customStatsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False, "filterFile": "list.json"},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "bench"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {
            "type": "sqlite",
            "data_file_path": str(rig.tmp / "peer" / "storage.db"),
            "messages_ttl_check_in_hours": 1,
            "messages_ttl_in_days": 7,
            "max_read_records_count": 1000,
            "writing_batch_size": 1000,
        },
        "grpc": {"enabled": False},
        "connectors": [{"type": "mqtt", "name": "MQTT Broker Connector", "configuration": "bench_mqtt.json"}],
    }
    (config_dir / "tb_gateway.json").write_text(json.dumps(main, indent=2))
    connector = {
        "broker": {
            "name": "store broker",
            "host": "127.0.0.1",
            "port": rig.port,
            "clientId": "tb-peer",
            "version": 5,
            "maxMessageNumberPerWorker": 10,
            "maxNumberOfWorkers": 100,
            "cleanSession": True,
            "cleanStart": True,
            "sessionExpiryInterval": 0,
            "security": {"type": "basic", "username": "sub1", "password": rig.sub.mqtt_password},
        },
        "mapping": [
            {
                "topicFilter": PEER_TOPIC,
                "subscriptionQos": 1,
                "converter": {
                    "type": "json",
                    "deviceInfo": {
                        "deviceNameExpressionSource": "constant",
                        "deviceNameExpression": "pub1",
                        "deviceProfileExpressionSource": "constant",
                        "deviceProfileExpression": "pos",
                    },
                    "sendDataOnlyOnChange": False,
                    "timeout": 60000,
                    "attributes": [],
                    "timeseries": [
                        {"type": "string", "key": "messageId", "value": "${messageId}"},
                        {"type": "string", "key": "event", "value": "${event}"},
                        {"type": "string", "key": "sku", "value": "${properties.sku}"},
                        {"type": "integer", "key": "quantity", "value": "${properties.quantity}"},
                        {"type": "double", "key": "price", "value": "${properties.price}"},
                    ],
                },
            }
        ],
        "requestsMapping": {},
    }
    (config_dir / "bench_mqtt.json").write_text(json.dumps(connector, indent=2))
    return config_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--mode",
        choices=["all", "drain", "live", "flood", "peer"],
        default="all",
        help="what to run (default all: drain, live, then flood + peer)",
    )
    parser.add_argument("--events", type=int, default=50_000, help="drain: backlog size (default 50,000)")
    parser.add_argument("--flood-events", type=int, default=20_000, help="flood/peer: events published (20,000)")
    parser.add_argument("--rate", type=float, default=2000.0, help="live: events/s (default 2,000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="live: seconds per run (default 10)")
    parser.add_argument("--repeat", type=int, default=5, help="live: consecutive runs (default 5)")
    parser.add_argument(
        "--features",
        default="default",
        help="gateway features: the config's default set, none, or a comma-separated list"
        " (e.g. edge.model,edge.decisioning) to find what costs (default: default)",
    )
    parser.add_argument(
        "--publisher",
        choices=["c", "paho"],
        default="c",
        help="flood/peer publisher: mosquitto_pub -l (default) or a paho client",
    )
    parser.add_argument("--core", default="0", help="the core the measured process is pinned to (default 0)")
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
    global BENCH_CORE
    BENCH_CORE = "1" if args.core != "1" else "0"
    with contextlib.suppress(OSError):  # publisher, counters and polling on the other core
        os.sched_setaffinity(0, {int(BENCH_CORE)})
    rig = Rig(args.features)
    try:
        if args.mode in ("all", "drain"):
            run_drain(rig, args)
        if args.mode in ("all", "live"):
            run_live(rig, args)
        if args.mode in ("all", "flood", "peer"):
            ours = run_flood(rig, args)
        if args.mode in ("all", "peer"):
            theirs = run_peer(rig, args)
            print(
                f"  ratio gateway / peer: events/s {ours['rate'] / theirs['rate']:.2f} (target >= 3), "
                f"CPU per event {theirs['cpu_per_1000'] / ours['cpu_per_1000']:.2f}x less, "
                f"RSS peak {ours['rss_peak_mb'] / theirs['rss_peak_mb']:.2f}"
            )
    finally:
        rig.close()
    print("(absolute figures depend on the machine and its load: compare the ratios from one run)")


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
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    out["cryptography"] = int("/cryptography/" in Path(f"/proc/{pid}/maps").read_text())
    return out


if __name__ == "__main__":
    main()
