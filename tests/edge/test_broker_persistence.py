"""Nothing acknowledged is lost at the broker — within the stated window for plain MQTT devices,
and not at all for devices using the project's client with end-to-end receipts.

The broker is the real Mosquitto with the configuration ``edge broker conf`` prints (as the
systemd unit runs it), primed by ``edge broker prime`` (ExecStartPost). Stated loss window: a
broker SIGKILL loses at most ``broker.autosave_changes`` acknowledged messages of devices
without receipts (Mosquitto saves after that many changes; we allow the one network read the
broker finishes before it saves), and none for receipt clients, which re-send until the gateway
confirms its commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from collections.abc import Coroutine
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from netkit import LAN, Session, session, tls_config, wait_for
from support.gateway import running_gateway
from support.paho import close_client
from support.services import free_port, require_program, start

from devices.mqtt_client import DeviceClient
from edge import schema
from edge.broker import broker_dir, gateway_password
from edge.cli import main
from edge.provision import provision

pytestmark = pytest.mark.integration

WINDOW = 100  # broker.autosave_changes in these tests (default 1000)
TRIALS = 20


def _external(tmp_path):
    """The systemd layout: the broker as its own process, the gateway connecting on 127.0.0.1."""
    port = free_port()
    config = tls_config(
        tmp_path / "state",
        mqtt={"mode": "external", "url": f"mqtt://127.0.0.1:{port}"},
        broker={"mqtts_port": free_port(LAN), "mtls_port": free_port(LAN), "autosave_changes": WINDOW},
    )
    return config, port


def _broker_conf(config, port, capsys, tmp_path):
    toml = tmp_path / "gateway.toml"
    from test_tls_links import _toml

    toml.write_text(_toml(config))
    capsys.readouterr()
    assert main(["broker", "conf", "--config", str(toml), "--port", str(port)]) == 0
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(capsys.readouterr().out)
    return toml, conf


class Broker:
    def __init__(self, conf, port, toml, tmp_path):
        self.argv = [require_program("mosquitto"), "-c", str(conf)]
        self.port, self.toml, self.log = port, toml, tmp_path / "mosquitto.out"
        self.service = None

    def start(self):
        self.service = start(self.argv, self.port, self.log)
        assert (
            main(
                [
                    "broker",
                    "prime",
                    "--config",
                    str(self.toml),
                    "--port",
                    str(self.port),
                    "--pid",
                    str(self.service.pid),
                ]
            )
            == 0
        )

    def kill(self):
        os.kill(self.service.pid, signal.SIGKILL)
        self.service.process.wait()

    def stop(self):
        if self.service is not None:
            self.service.stop()


def test_first_boot_events_wait_for_the_gateway(tmp_path, capsys):
    config, port = _external(tmp_path)
    toml, conf = _broker_conf(config, port, capsys, tmp_path)
    broker = Broker(conf, port, toml, tmp_path)
    broker.start()
    capsys.readouterr()
    try:
        bundle = provision(config, "kiosk", "k-early")
        with session(bundle) as s:
            codes = [s.publish(bundle["topics"]["events"], json.dumps({"messageId": f"early-{i}", "event": "Cart Viewed"}).encode())
                     for i in range(200)]  # fmt: skip
        assert codes == [0] * 200
        with running_gateway(config):
            with schema.open_journal(config) as journal:
                wait_for(lambda: all(journal.get(f"early-{i}") for i in range(200)), 30)
    finally:
        broker.stop()


def test_retained_event_publishes_are_not_kept(tmp_path):
    config = tls_config(tmp_path / "state")
    with running_gateway(config) as handle:
        bundle = provision(config, "kiosk", "k-retain")
        marker = "retained-marker-6d1f"
        with session(bundle) as s:
            event = {"messageId": "ret-1", "event": "Cart Viewed", "properties": {"note": marker}}
            assert s.publish(bundle["topics"]["events"], json.dumps(event).encode(), retain=True) == 0
        with schema.open_journal(config) as journal:
            wait_for(lambda: journal.get("ret-1") is not None)
        metric = handle.gateway.context.metrics.get_sample_value("edge_mqtt_retained_cleared_total", {"leaf": "events"})
        assert metric == 1
        # a new subscriber gets no retained copy, and the broker's saved database holds none
        host, port = handle.gateway.broker_address
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv5)
        probe.username_pw_set("edge-gateway", gateway_password(config.store.state_dir))
        got: list[bytes] = []
        probe.on_message = lambda _c, _u, m: got.append(m.payload)
        probe.connect(host, port)
        probe.loop_start()
        wait_for(probe.is_connected)
        probe.subscribe(bundle["topics"]["events"], qos=1)
        time.sleep(1.0)
        close_client(probe)
        assert [p for p in got if p] == []
        os.kill(int((broker_dir(config.store.state_dir) / "mosquitto.pid").read_text()), signal.SIGUSR1)
        db = broker_dir(config.store.state_dir) / "data" / "mosquitto.db"
        wait_for(db.exists)
        time.sleep(0.5)
        assert marker.encode() not in db.read_bytes()


def test_broker_sigkill_with_a_backlog(tmp_path, capsys):
    seed = int(os.environ.get("BROKER_KILL_SEED", random.randrange(1 << 30)))
    print(f"broker SIGKILL seed {seed} (BROKER_KILL_SEED={seed} to repeat)")
    rng = random.Random(seed)
    config, port = _external(tmp_path)
    toml, conf = _broker_conf(config, port, capsys, tmp_path)
    broker = Broker(conf, port, toml, tmp_path)
    broker.start()
    plain_bundle = provision(config, "pos", "p-plain")
    receipt_bundle = provision(config, "kiosk", "k-receipts")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def open_receipt_client() -> DeviceClient:
        client = DeviceClient.from_bundle(receipt_bundle, timeout_s=2.0, receipt_timeout_s=2.0)
        return await client.__aenter__()

    receipt_client = run(open_receipt_client())
    receipt_ids: list[str] = []

    async def publish_receipted(prefix: str, n: int) -> None:
        for i in range(n):
            event = {"messageId": f"{prefix}-{i}", "event": "Cart Viewed"}
            receipt_ids.append(event["messageId"])
            try:
                await receipt_client.publish_events([event])
            except Exception:  # the broker is gone: the event stays pending and is sent again
                pass

    acked: dict[int, list[str]] = {}
    try:
        for trial in range(TRIALS):
            n = rng.randint(200, 500)
            kill_at = rng.randint(1, n)
            plain = Session(plain_bundle, client_id="p-plain", reconnect=False)
            assert not plain.start().is_failure
            mids: dict[int, str] = {}
            acked[trial] = []
            killed = threading.Event()

            def on_publish(_c, _u, mid, reason, _p, trial=trial, mids=mids, kill_at=kill_at, killed=killed):
                if not reason.is_failure and mid in mids:
                    acked[trial].append(mids[mid])
                if len(acked[trial]) >= kill_at and not killed.is_set():
                    killed.set()
                    broker.kill()

            plain.client.on_publish = on_publish
            receipted = asyncio.run_coroutine_threadsafe(publish_receipted(f"r{trial}", n // 4), loop)
            for i in range(n):
                info = plain.client.publish(
                    plain_bundle["topics"]["events"],
                    json.dumps({"messageId": f"t{trial}-{i}", "event": "Cart Viewed"}),
                    qos=1,
                )
                mids[info.mid] = f"t{trial}-{i}"
            killed.wait(30)
            plain.abandon()
            receipted.result(60)
            broker.service.process.wait()
            broker.start()
        capsys.readouterr()
        with running_gateway(config):
            run(receipt_client.wait_committed(90), 120)
            with schema.open_journal(config) as journal:
                wait_for(lambda: journal.stats()["events"] >= len(receipt_ids), 60)
                time.sleep(1.0)  # what the restored backlog still delivers
                losses = [sum(1 for m in ids if journal.get(m) is None) for ids in acked.values()]
                receipt_lost = [m for m in receipt_ids if journal.get(m) is None]
        print(
            f"plain-device acknowledged events lost per SIGKILL: {losses} (window {WINDOW}); "
            f"receipt client: {len(receipt_ids)} sent, {len(receipt_lost)} lost, {receipt_client.resent} re-sent"
        )
        smallest = (
            len(plain_bundle["topics"]["events"]) + len(json.dumps({"messageId": "t0-0", "event": "Cart Viewed"})) + 5
        )
        bound = WINDOW + 2 * (16_384 // smallest)  # two publishing connections, one TLS record each
        assert max(losses) <= bound, (losses, bound)
        assert receipt_lost == []
        assert sum(len(ids) for ids in acked.values()) > TRIALS * 100
    finally:
        run(receipt_client.__aexit__(None, None, None))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        broker.stop()
