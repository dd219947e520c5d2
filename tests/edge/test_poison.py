"""Poison isolation: one device's bad input never fails, delays or loses another device's event.

Each poison (lone surrogates in a property, a messageId, an identifier and a status; a 5,000-digit
integer; NaN, Infinity, 1e400; a non-string decisionId) is mixed into streams of good events
from other devices, over HTTP and over MQTT through a real Mosquitto: every good event is stored
and answered, every bad one refused with its reason, counted and dead-lettered, and /readyz
stays ready. A burst of poisons larger than ``receive_maximum`` does not stop ingest, and the
poisons are acknowledged (a restart redelivers none of them).
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from support.gateway import device_client, dumps, make_config, register, running_gateway, topic, wait_until

from edge import schema
from edge.bus import Source
from edge.events import Event
from edge.ingest import Ingestor
from edge.journal import Journal
from edge.metrics import IngestMetrics

# (raw bytes as a device sends them, the reason they must be refused with)
POISONS: list[tuple[bytes, str]] = [
    (b'{"messageId": "p-sur-prop", "event": "Cart Viewed", "properties": {"note": "x\\ud800y"}}', "bad_text"),
    (b'{"messageId": "p-sur-\\udfff", "event": "Cart Viewed"}', "bad_text"),
    (b'{"messageId": "p-sur-key", "event": "Cart Viewed", "properties": {"\\ud83d": 1}}', "bad_text"),
    (
        b'{"messageId": "p-sur-id", "event": "Cart Viewed", "properties": {"identifiers": {"email": "\\ud800@x.test"}}}',
        "bad_text",
    ),
    (b'{"messageId": "p-sur-status", "event": "Device Status", "properties": {"status": "\\udc00"}}', "bad_text"),
    (
        b'{"messageId": "p-bigint", "event": "Product Added", "properties": {"sku": "A", "quantity": '
        + b"9" * 5000
        + b"}}",
        "bad_number",
    ),
    (b'{"messageId": "p-nan", "event": "Product Added", "properties": {"sku": "A", "price": NaN}}', "bad_number"),
    (b'{"messageId": "p-inf", "event": "Product Added", "properties": {"sku": "A", "price": -Infinity}}', "bad_number"),
    (b'{"messageId": "p-1e400", "event": "Product Added", "properties": {"sku": "A", "price": 1e400}}', "bad_number"),
    (
        b'{"messageId": "p-deep", "event": "Cart Viewed", "properties": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}",
        "too_deep",
    ),
    (
        b'{"messageId": "p-decision", "event": "Offer Viewed", "properties": {"offerId": "o1", "decisionId": {"a": 1}}}',
        "wrong_type",
    ),
    (
        b'{"messageId": "p-decision2", "event": "Offer Clicked", "properties": {"offerId": "o1", "decisionId": 17}}',
        "wrong_type",
    ),
]
GOOD_PER_DEVICE = 40


def _good(device: str, i: int) -> dict[str, object]:
    if i % 4 == 3:  # feedback rows share the commit with the poisons' attribution writer
        return {
            "messageId": f"{device}-{i}",
            "event": "Offer Viewed",
            "properties": {"offerId": "o1", "decisionId": f"d-{device}-{i}"},
        }
    return {
        "messageId": f"{device}-{i}",
        "event": "Product Added",
        "properties": {"sku": f"SKU{i:05d}", "quantity": 1, "price": 2.5},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("poison") / "state", mqtt={"managed_port": 0, "receive_maximum": 20})
    devices = [
        ("kiosk", "hgood1"),
        ("kiosk", "hgood2"),
        ("kiosk", "hbad"),
        ("pos", "mgood1"),
        ("pos", "mgood2"),
        ("pos", "mbad"),
        ("ops", "ops1"),
    ]
    creds = register(config, devices)
    with running_gateway(config, features=("edge.model", "edge.decisioning")) as handle:
        yield handle, creds


def _metrics(handle, creds) -> str:
    return httpx.get(f"{handle.http}/metrics", headers={"Authorization": f"Bearer {creds['ops1'].http_token}"}).text


def _publish_all(client: mqtt.Client, topic_name: str, payloads: list[bytes]) -> None:
    infos = [client.publish(topic_name, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
        assert info.rc == 0


def test_poison_mixed_into_good_streams_over_http_and_mqtt(store):
    handle, creds = store
    answers: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def http_good(device: str) -> None:
        headers = {"Authorization": f"Bearer {creds[device].http_token}"}
        codes = answers.setdefault(device, [])
        try:
            with httpx.Client(base_url=handle.http, headers=headers, timeout=30) as client:
                for i in range(GOOD_PER_DEVICE):
                    codes.append(client.post("/v1/events", json={"batch": [_good(device, i)]}).status_code)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def mqtt_good(device: str) -> None:
        try:
            with device_client(handle, creds[device]) as client:
                _publish_all(
                    client,
                    topic(handle, creds[device], "events"),
                    [dumps(_good(device, i)) for i in range(GOOD_PER_DEVICE)],
                )
        except BaseException as exc:
            errors.append(exc)

    refused_http: list[tuple[int, str]] = []

    def http_bad() -> None:
        headers = {"Authorization": f"Bearer {creds['hbad'].http_token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=handle.http, headers=headers, timeout=30) as client:
            for _ in range(3):
                for payload, _reason in POISONS:
                    response = client.post("/v1/events", content=payload)
                    refused_http.append((response.status_code, response.json()["rejected"][0]["reason"]))
                    assert handle.gateway.ready.is_set()
                    assert client.get("/readyz").status_code == 200

    def mqtt_bad() -> None:
        with device_client(handle, creds["mbad"]) as client:
            for _ in range(3):
                _publish_all(client, topic(handle, creds["mbad"], "events"), [p for p, _ in POISONS])

    threads = [threading.Thread(target=http_good, args=(d,)) for d in ("hgood1", "hgood2")]
    threads += [threading.Thread(target=mqtt_good, args=(d,)) for d in ("mgood1", "mgood2")]
    threads += [threading.Thread(target=http_bad), threading.Thread(target=mqtt_bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for device in ("hgood1", "hgood2"):
        assert answers[device] == [200] * GOOD_PER_DEVICE, device
    assert refused_http == [(400, reason) for _ in range(3) for _, reason in POISONS]
    good_ids = {f"{d}-{i}" for d in ("hgood1", "hgood2", "mgood1", "mgood2") for i in range(GOOD_PER_DEVICE)}
    with schema.open_journal(handle.config) as journal:
        wait_until(lambda: good_ids <= journal.message_ids(), timeout=30)
        stored = journal.message_ids()
        assert not {i for i in stored if i.startswith("p-")}, "a poison was stored"
        wait_until(
            lambda: len([d for d in journal.dead_letters(1000) if d["source"] == "mqtt:pos/mbad"]) == 3 * len(POISONS)
        )
        letters = journal.dead_letters(1000)
        feedback = journal.reader().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        assert feedback >= 6 * len(POISONS)
    for source in ("mqtt:pos/mbad", "http:kiosk/hbad"):
        reasons = sorted(d["reason"] for d in letters if d["source"] == source)
        assert reasons == sorted(r for _ in range(3) for _, r in POISONS), source
        for letter in (d for d in letters if d["source"] == source):
            assert letter["size"] > 0 and len(letter["sha256"]) == 64 and letter["excerpt"]
    metrics = _metrics(handle, creds)
    for transport in ("http", "mqtt"):
        for reason in {r for _, r in POISONS}:
            expected = 3 * sum(1 for _, r in POISONS if r == reason)
            line = f'edge_events_rejected_total{{reason="{reason}",transport="{transport}"}} {float(expected)}'
            assert line in metrics, line
    assert httpx.get(f"{handle.http}/readyz").status_code == 200


def test_a_burst_of_poison_beyond_receive_maximum_is_acknowledged_and_ingest_goes_on(store, tmp_path):
    handle, creds = store
    burst = [
        json.dumps({"messageId": f"burst-{i}", "event": "Cart Viewed"}).encode()[:-1]
        + b', "properties": {"n": "\\ud800"}}'
        for i in range(60)
    ]  # 3 x receive_maximum (20)
    with device_client(handle, creds["mbad"]) as client:
        _publish_all(client, topic(handle, creds["mbad"], "events"), burst)
        _publish_all(
            client,
            topic(handle, creds["mbad"], "events"),
            [dumps({"messageId": f"after-burst-{i}", "event": "Cart Viewed"}) for i in range(10)],
        )
    with schema.open_journal(handle.config) as journal:
        wait_until(lambda: {f"after-burst-{i}" for i in range(10)} <= journal.message_ids(), timeout=30)
        burst_letters = (
            journal.reader()
            .execute("SELECT COUNT(*) FROM dead_letters WHERE detail LIKE '%surrogate%' AND source = 'mqtt:pos/mbad'")
            .fetchone()[0]
        )
    # acknowledged: reconnecting the gateway's persistent session redelivers none of them
    link = handle.gateway.context.publisher
    link.reconnect()
    wait_until(lambda: not link.connected.is_set())
    wait_until(link.connected.is_set)
    time.sleep(1.0)
    with schema.open_journal(handle.config) as journal:
        again = (
            journal.reader()
            .execute("SELECT COUNT(*) FROM dead_letters WHERE detail LIKE '%surrogate%' AND source = 'mqtt:pos/mbad'")
            .fetchone()[0]
        )
    assert again == burst_letters
    assert httpx.get(f"{handle.http}/readyz").status_code == 200


class _Corrupting:
    """A post-stage with a bug: it writes a lone surrogate into one device's events (after
    validation, so only the journal's own encoding can notice)."""

    def __call__(self, event: Event) -> None:
        if event.source.device_id == "buggy":
            event.body["properties"]["oops"] = "\ud800"


def test_a_group_commit_that_still_fails_isolates_the_offender(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    metrics = IngestMetrics()
    ingestor = Ingestor(journal, metrics, post_stages=[_Corrupting()], linger_ms=0)
    outcomes: dict[str, object] = {}
    # queue everything before the writer starts, so all of it meets in one group commit
    for device in ("a", "buggy", "b", "c"):
        source = Source("s1", device, "kiosk", "mqtt")
        raws = [{"messageId": f"{device}-{i}", "event": "Cart Viewed"} for i in range(5)]
        ingestor.enqueue(ingestor.prepare(source, raws), lambda r, d=device: outcomes.__setitem__(d, r))
    ingestor.start()
    wait_until(lambda: len(outcomes) == 4)
    ingestor.stop()
    for device in ("a", "b", "c"):
        assert outcomes[device].accepted == 5 and not outcomes[device].rejected
    buggy = outcomes["buggy"]
    assert buggy.accepted == 0 and [r.reason for r in buggy.rejected] == ["commit_failed"] * 5
    assert journal.message_ids() == {f"{d}-{i}" for d in "abc" for i in range(5)}
    assert journal.stats()["dead_letters"] == {"commit_failed": 5}
    assert ingestor.healthy
    assert metrics.isolated._value.get() == 5
    journal.close()


def test_a_dead_letter_the_journal_cannot_store_costs_no_event(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    ingestor = Ingestor(journal, IngestMetrics(), linger_ms=0)
    outcomes: list[object] = []
    source = Source("s1", "k1", "kiosk", "mqtt")
    item = ingestor.prepare(source, [{"messageId": "fine-1", "event": "Cart Viewed"}])
    ingestor.enqueue(item, outcomes.append)
    # a refusal whose own text carries a lone surrogate (as a buggy adapter might build it)
    ingestor.reject(
        Source("s1", "k\ud800", "kiosk", "mqtt"), "unknown_device", "no device \udfff", b"{}", outcomes.append
    )
    ingestor.start()
    wait_until(lambda: len(outcomes) == 2)
    ingestor.stop()
    assert all(not isinstance(o, BaseException) for o in outcomes)
    assert journal.get("fine-1") is not None
    assert journal.stats()["dead_letters"] == {"unknown_device": 1}
    journal.close()
