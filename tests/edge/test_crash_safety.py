"""Nothing the broker acknowledged is lost, nothing is stored twice — across SIGKILLs.

An independent publisher sends 20,000 QoS 1 events to a real Mosquitto while the gateway (a
separate `edge run` process, external broker mode) is killed with SIGKILL at random moments and
restarted. Afterwards the journal must hold every event the broker acknowledged, exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from support.gateway import register, wait_until
from support.paho import close_client
from support.services import free_port, mosquitto

from edge import schema
from edge.broker import mosquitto_conf, sync_broker_files
from edge.registry import DeviceRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 20_000
KILLS = 6


def _config_file(tmp_path, port):
    text = f"""
[store]
id = "s1"
state_dir = "{tmp_path / "state"}"
[mqtt]
mode = "external"
url = "mqtt://127.0.0.1:{port}"
[http]
port = 0
[features]
enabled = []
"""
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def _start_gateway(config_path, log):
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def test_sigkill_during_a_qos1_stream_loses_and_duplicates_nothing(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash test seed {seed} (CRASH_SEED={seed} to repeat)")
    rng = random.Random(seed)
    port = free_port()
    config_path = _config_file(tmp_path, port)
    config = schema.load(config_path)
    creds = register(config, [("pos", "pub1")])["pub1"]
    with schema.open_journal(config) as journal:
        sync_broker_files(DeviceRegistry(journal), "s1", config.store.state_dir)
    conf = mosquitto_conf(config.store.state_dir, "127.0.0.1", port, 1_000_000)
    with open(tmp_path / "gateway.log", "ab") as log, mosquitto(conf, tmp_path, port):
        publisher = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="publisher", protocol=mqtt.MQTTv5
        )
        publisher.username_pw_set(creds.mqtt_username, creds.mqtt_password)
        publisher.max_inflight_messages_set(100)
        sent: list[tuple[mqtt.MQTTMessageInfo, str]] = []
        failures: list[int] = []
        publisher.on_publish = lambda _c, _u, mid, reason, _p: failures.append(mid) if reason.is_failure else None

        def acked() -> set[str]:
            return {message_id for info, message_id in sent if info.is_published()}

        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        topic = "retail/v1/s1/pos/pub1/events"

        def publish_all():
            for i in range(EVENTS):
                payload = (
                    f'{{"messageId":"c-{i}","event":"Product Added","properties":{{"sku":"S{i % 97}","quantity":1}}}}'
                )
                sent.append((publisher.publish(topic, payload, qos=1), f"c-{i}"))
                if i % 200 == 199:
                    time.sleep(0.08)  # ~2,500 events/s: the stream spans all the kills

        sender = threading.Thread(target=publish_all)
        online = threading.Event()
        publisher.on_message = lambda _c, _u, m: online.set() if b'"online"' in m.payload else None
        publisher.subscribe("retail/v1/s1/gateway/status", qos=1)
        gateway = _start_gateway(config_path, log)
        assert online.wait(30), "the gateway never subscribed"  # its persistent session exists from now on
        sender.start()
        kills = 0
        while kills < KILLS:
            time.sleep(rng.uniform(0.4, 1.6))
            gateway.send_signal(signal.SIGKILL)
            gateway.wait()
            kills += 1
            gateway = _start_gateway(config_path, log)
        sender.join()
        wait_until(lambda: len(acked()) == EVENTS, timeout=60)
        try:
            with schema.open_journal(config) as journal:
                wait_until(lambda: journal.stats()["events"] >= EVENTS, timeout=120, interval=0.5)
                stored = journal.message_ids()
                rows = journal.stats()["events"]
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
            close_client(publisher, disconnect=False)  # its broker went with the gateway
    print(f"{kills} SIGKILLs, {len(acked())} acknowledged, {rows} journaled")
    assert kills >= 5 and not failures
    missing = acked() - stored
    assert not missing, f"{len(missing)} acknowledged events missing"
    assert rows == len(stored) == EVENTS  # each exactly once, nothing invented
