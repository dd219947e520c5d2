"""Shared pieces for the store-page tests: a gateway with its TLS links on 127.0.0.2 (the store
LAN's stand-in), Debian's Chromium driven by Playwright, the checks every page must pass (no
host but the gateway, axe-core), screenshots, and the one function that pushes an offer."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from support.emulation import EMULATED
from support.gateway import GatewayHandle, make_config
from support.paho import close_client

from edge.broker import gateway_password
from edge.config import Config
from edge.registry import GATEWAY_USER, Credentials

LAN = "127.0.0.2"
CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[3]
AXE = ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
FEATURES = ("edge.model", "edge.decisioning")


def pages_config(state_dir: Path, **sections: dict[str, Any]) -> Config:
    """HTTPS and MQTT/TLS on the 'LAN' (the pages' secure WebSockets need both); the gateway's own
    listener stays on 127.0.0.1."""
    base: dict[str, dict[str, Any]] = {
        "broker": {"interfaces": [LAN], "mqtts_port": 0, "mtls_port": 0, "plaintext_hosts": []},
        "tls": {"http": True},
        "http": {"host": LAN, "port": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return make_config(state_dir, **base)


def device_storage(handle: GatewayHandle, creds: Credentials) -> dict[str, Any]:
    """What the pairing page leaves in the browser (``Edge.save`` of the provisioning bundle)."""
    root = f"retail/v1/{handle.config.store.id}/{creds.kind}/{creds.device_id}"
    return {"deviceId": creds.device_id, "kind": creds.kind, "storeId": handle.config.store.id,
            "token": creds.http_token, "mqttUsername": creds.mqtt_username, "mqttPassword": creds.mqtt_password,
            "topics": {leaf: f"{root}/{leaf}" for leaf in ("events", "status", "offers")}}  # fmt: skip


@dataclass
class Browser:
    """One Chromium profile (in the test's temp dir: the privacy scan reads what it stored)."""

    context: Any
    requests: list[str] = field(default_factory=list)

    def open(self, handle: GatewayHandle, page: str, creds: Credentials | None = None, query: str = "") -> Any:
        self.requests.clear()  # the network log is per page under test
        tab = self.context.new_page()
        tab.on("request", lambda r: self.requests.append(r.url))
        tab.on("websocket", lambda ws: self.requests.append(ws.url))
        if creds is not None:
            tab.add_init_script(
                f"localStorage.setItem('edge.device', {json.dumps(json.dumps(device_storage(handle, creds)))});"
            )
        tab.goto(f"{handle.http}/pages/{page}{query}")
        return tab

    def foreign_requests(self, handle: GatewayHandle) -> list[str]:
        gateway = urlsplit(handle.http).netloc
        return [u for u in self.requests if urlsplit(u).netloc != gateway]


@functools.cache
def emulated_chromium_fault() -> str | None:
    """Why Debian's Chromium does not start under qemu-user, or None when it does.

    In the arm64 root file system of `make test-arm64` it aborts before it renders anything
    (2026-12-02, Debian 12's arm64 chromium under qemu-user 7.2 emulating a Cortex-A72): "GPU
    process isn't usable. Goodbye." with the GPU process, and a trace trap with
    ``--in-process-gpu`` or ``--single-process``; crashpad's ``ptrace`` is not implemented there
    either. A native arm64 box (a Pi) runs it: this is the emulator, so only under emulation do
    the page tests skip, naming what Chromium said."""
    try:
        probe = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--dump-dom", "data:text/html,<p>ok</p>"],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "chromium --headless --dump-dom did not answer in 300 s"
    if probe.returncode == 0 and "<p>ok</p>" in probe.stdout:
        return None
    lines = probe.stderr.splitlines()
    said = [line for line in lines if "FATAL" in line or line.startswith("qemu:")] or lines[-1:] or ["no output"]
    return f"chromium exited {probe.returncode}: {said[0].strip()}"


@contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed; .ci/bootstrap test must install it")
        pytest.skip("Debian's chromium is not installed (.ci/bootstrap test installs it)")
    if EMULATED and (fault := emulated_chromium_fault()):
        pytest.skip(f"Chromium does not start under qemu-user emulation: {fault}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, ignore_https_errors=True,  # the store CA
            args=["--no-sandbox", "--disable-dev-shm-usage"], viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        try:
            yield Browser(context)
        finally:
            context.close()


def axe_violations(tab: Any) -> list[dict[str, Any]]:
    """axe-core (npm, installed by .ci/bootstrap) run in the page: serious and critical violations."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run .ci/bootstrap test")
    tab.evaluate(AXE.read_text() + "\n;true")
    result = tab.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result if v["impact"] in ("serious", "critical")]  # fmt: skip


def screenshot(tab: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def push_offer(
    handle: GatewayHandle, kind: str, device_id: str, payload: dict[str, Any], *, retain: bool = True
) -> None:
    """Publish a pushed offer as the gateway does (its own credentials, its loopback listener).

    Until the triggers feature is merged this stands for a trigger firing; at merge, replace the
    body with one that makes a trigger fire (the payload shape is the agreed one)."""
    host, port = handle.gateway.broker_address
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{GATEWAY_USER}-test-push-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.username_pw_set(GATEWAY_USER, gateway_password(handle.config.store.state_dir))
    done = threading.Event()
    client.on_publish = lambda *_a: done.set()
    client.connect(host, port)
    client.loop_start()
    try:
        topic = f"retail/v1/{handle.config.store.id}/{kind}/{device_id}/offers"
        client.publish(topic, json.dumps(payload), qos=1, retain=retain)
        assert done.wait(10), "the broker did not acknowledge the pushed offer"
    finally:
        close_client(client)


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
