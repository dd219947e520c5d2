"""The ops dashboard against the gateway running the simulated store (`edge demo`'s simulator:
BLE app presence, kiosks and a display over MQTT, the till over a pty, the camera): devices
online, live rates and an uplift chart from real traffic. (The simulator has no store beacon,
so beacon battery is checked in test_pages_units.)"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pagekit import axe_violations, screenshot, wait_for
from support.gateway import running_gateway

from edge.demo import _simulated_hardware, demo_config, register_fleet, write_fleet_file

pytestmark = pytest.mark.integration


def test_dashboard_on_the_simulated_store(tmp_path, browser):
    from devices.sim import run_demo_store

    config = demo_config(tmp_path / "state", 0, _simulated_hardware())
    fleet = register_fleet(config)
    ops = next(d for d in fleet if d["kind"] == "ops")
    with running_gateway(config, features=tuple(config.features.enabled)) as handle:
        fleet_file = tmp_path / "fleet.json"
        write_fleet_file(fleet_file, handle.gateway, fleet)

        async def start() -> asyncio.Task:
            return asyncio.ensure_future(run_demo_store(handle.gateway.features.devices, fleet_file, speed=600, seed=3))

        store = asyncio.run_coroutine_threadsafe(start(), handle.loop).result(10)
        try:
            tab = browser.context.new_page()
            browser.requests.clear()
            tab.on("request", lambda r: browser.requests.append(r.url))
            device = {
                "deviceId": ops["device_id"],
                "kind": "ops",
                "storeId": config.store.id,
                "token": ops["http_token"],
            }
            tab.add_init_script(f"localStorage.setItem('edge.device', {json.dumps(json.dumps(device))});")
            tab.goto(f"{handle.http}/pages/ops?pollMs=1000")
            wait_for(lambda: float(tab.inner_text("#kpi-ingest .v").replace("—", "0") or 0) > 0, timeout=30)
            wait_for(lambda: "online" in tab.inner_text("#devices"), timeout=30)
            wait_for(lambda: tab.locator("#uplift-chart svg rect.bar").count() > 0, timeout=60)
            wait_for(lambda: float(tab.inner_text("#kpi-decisions .v").replace("—", "0") or 0) > 0, timeout=30)
            time.sleep(3)  # a few more samples on the rate chart
            assert axe_violations(tab) == []
            screenshot(tab, "ops-simulated-store")
            assert browser.foreign_requests(handle) == []
            tab.close()
        finally:

            async def stop() -> BaseException | None:
                store.cancel()  # and wait until the simulation has unwound, before the gateway stops
                (outcome,) = await asyncio.gather(store, return_exceptions=True)
                return None if isinstance(outcome, asyncio.CancelledError) else outcome

            failure = asyncio.run_coroutine_threadsafe(stop(), handle.loop).result(30)
            assert failure is None, f"the simulated store failed: {failure!r}"
