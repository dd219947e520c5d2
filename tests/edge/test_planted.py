"""Planted identifiers, end to end: Hypothesis plants raw identifiers (e-mail, phone, card,
loyalty and app ids) at random paths of random event shapes, sent over HTTP and MQTT (a real
Mosquitto) as valid and refused events, invalid JSON and oversized batches. Afterwards no raw
identifier — as sent, lower-case, URL-encoded, base64 or digits only — is in the journal file,
its WAL (free pages included: the files are read raw), the broker's persistence and log, the
gateway's logs, or what a local Segment-style receiver got from the sync.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.gateway import device_client, make_config, register, running_gateway, topic, wait_until
from support.planted import APP_ID_PATTERN, LOYALTY_PATTERN, identifiers, plant, shapes
from support.privacy import needle_forms, scan_for

from edge import schema
from edge.broker import free_port

pytestmark = pytest.mark.integration


class _Capture(BaseHTTPRequestHandler):
    """A Segment-style batch receiver that keeps every body it got, as it got it (un-gzipped)."""

    store: Path

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self.store.open("ab") as fh:
            fh.write(body + b"\n")
        answer = b'{"success": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def capture(tmp_path):
    store = tmp_path / "receiver-bodies.jsonl"
    handler = type("Capture", (_Capture,), {"store": store})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store
    finally:
        server.shutdown()
        server.server_close()


def _variant(event: dict, kind: str) -> bytes:
    if kind == "invalid_json":
        text = json.dumps(event)
        return text[: max(1, len(text) - 3)].encode() + b"\x00oops"
    if kind == "oversized":
        return json.dumps({"batch": [copy.deepcopy(event) for _ in range(600)] + [{"pad": "x" * 520_000}]}).encode()
    if kind == "batch":
        return json.dumps({"batch": [event, {"event": "Cart Viewed"}]}).encode()
    return json.dumps(event).encode()


def test_planted_identifiers_reach_no_disk_log_or_network(tmp_path, capture, caplog):
    url, bodies = capture
    state = tmp_path / "state"
    config = make_config(
        state,
        guard={"loyalty_patterns": [LOYALTY_PATTERN], "app_id_patterns": [APP_ID_PATTERN]},
        sync={"idle_poll_s": 0.1},
        sync_http={"enabled": True, "base_url": url, "write_key": "k", "gzip": True},
    )
    creds = register(config, [("kiosk", "kh"), ("pos", "pm"), ("ops", "ops1")])
    planted: list[str] = []
    sent = {"http": 0, "mqtt": 0}
    with (
        running_gateway(config, features=("edge.model", "edge.decisioning", "sync")) as handle,
        device_client(handle, creds["pm"]) as client,
        httpx.Client(
            base_url=handle.http, timeout=30, headers={"Authorization": f"Bearer {creds['kh'].http_token}"}
        ) as http,
    ):

        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            shapes,
            st.lists(identifiers, min_size=1, max_size=3),
            st.integers(0, 2**32),
            st.sampled_from(["http", "mqtt"]),
            st.sampled_from(["single", "single", "batch", "invalid_json", "oversized"]),
        )
        def send(shape, found, seed, transport, kind):
            event = copy.deepcopy(shape)
            rng = random.Random(seed)
            for _, raw in found:
                plant(event, raw, rng)
                planted.append(raw)
            payload = _variant(event, kind)
            sent[transport] += 1
            if transport == "http":
                answer = http.post("/v1/events", content=payload, headers={"Content-Type": "application/json"})
                assert answer.status_code in (200, 400, 413), answer.text
            else:
                client.publish(topic(handle, creds["pm"], "events"), payload, qos=1).wait_for_publish(30)

        send()
        # identified people too: their raw identifiers in identifier fields are tokenised
        for i, raw in enumerate(p for p in planted if "@" in p):
            http.post(
                "/v1/events",
                json={
                    "type": "identify",
                    "userId": raw,
                    "messageId": f"who-{i}",
                    "traits": {"email": raw, "name": raw},
                },
            )
        sentinel = {"messageId": "planted-sentinel", "event": "Device Status", "properties": {"status": "done"}}
        client.publish(topic(handle, creds["pm"], "events"), json.dumps(sentinel), qos=1).wait_for_publish(30)
        with schema.open_journal(handle.config) as journal:
            wait_until(lambda: journal.get("planted-sentinel") is not None, timeout=30)
            stats = journal.stats()
        wait_until(lambda: bodies.exists() and b"planted-sentinel" in bodies.read_bytes(), timeout=60)
        metrics = http.get("/metrics", headers={"Authorization": f"Bearer {creds['ops1'].http_token}"}).text
    masked = {line.split('"')[1] for line in metrics.splitlines() if line.startswith("edge_identifiers_masked_total{")}
    assert masked, "the guard counts what it masks, by kind"
    assert masked <= {"email", "phone", "card", "loyaltyId", "appId"}
    assert sent["http"] and sent["mqtt"] and planted
    assert stats["events"] > 1 and sum(stats["dead_letters"].values()) > 0, stats
    needles = sorted({form for raw in planted for form in needle_forms(raw)})
    hits = scan_for([state, bodies], needles)
    assert not hits, hits[:10]
    logged = caplog.text.lower()
    assert not [n for n in needles if n.lower() in logged]
