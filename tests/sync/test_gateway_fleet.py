"""A real gateway as a member of the fleet: its own identity, health reports, a refused rollout.

The gateway (managed Mosquitto, journal, HTTP, decisioning, model runtime, sync) runs with
``sync_nats`` and ``downlink`` pointed at a hub that admits only the fleet's identities. It
reports its health on ``cdp.status.g1``; a model release that fails its runtime's smoke test
is refused by it, and the centre's rollout halts in the first wave with the store still
serving its model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from natsservers import running_nats
from support.gateway import make_config, register, running_gateway

from models import DEFAULT_MODEL_DIR
from sync.identities import FleetIdentities
from sync.nats_sink import connect
from sync.rollout import ReleaseStore, model_release, read_health, roll_out

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@pytest.mark.integration
def test_a_gateway_reports_health_and_refuses_a_broken_model_which_halts_the_rollout(tmp_path):
    fleet = FleetIdentities(tmp_path / "fleet")
    fleet.add(["g1"])
    seed = str(fleet.store_seed("g1"))
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.onnx", "manifest.json", "catalog.csv", "history.json"):
        data = (DEFAULT_MODEL_DIR / name).read_bytes()
        (broken / name).write_bytes(data[: len(data) // 3] if name == "model.onnx" else data)
    release = model_release(broken, KEY, manifest["catalog_sha256"], "2026.12.03-1")
    with running_nats(tmp_path / "hub", 1, fleet=fleet, stores=["g1"]) as hub:
        config = make_config(
            tmp_path / "state", store={"id": "g1"},
            sync_nats={"enabled": True, "servers": hub.urls, "credentials": seed},
            downlink={"enabled": True, "servers": hub.urls, "credentials": seed,
                      "model_public_key": PUBLIC, "status_interval_s": 0.5},
        )  # fmt: skip
        token = register(config, [("kiosk", "k1")])["k1"].http_token
        with running_gateway(config, features=tuple(config.features.enabled)) as handle:
            with httpx.Client(base_url=handle.http, headers={"Authorization": f"Bearer {token}"}) as client:

                async def go():
                    nc = await connect(hub.urls, hub.central_credentials, name="centre")
                    js = nc.jetstream(timeout=10)
                    try:
                        for _ in range(100):
                            await asyncio.to_thread(
                                client.post, "/v1/decisions", json={"placement": "kiosk_home", "basket": []}
                            )
                            health = (await read_health(js, ["g1"])).get("g1")
                            if health and health[1].decisions > 0:
                                break
                            await asyncio.sleep(0.1)
                        result = await roll_out(js, release, ["g1"], ReleaseStore(fleet.root),
                                                canaries=1, wave_timeout_s=30, poll_s=0.2)  # fmt: skip
                        return health, result
                    finally:
                        await nc.close()

                health, result = asyncio.run(go())
                after = client.post("/v1/decisions", json={"placement": "kiosk_home", "basket": []})
                serving = handle.gateway.features.model.holder.current.manifest["version"]
    _, report = health
    assert report.store_id == "g1" and report.model == manifest["version"]
    assert report.decisions > 0 and report.latency_p99_ms is not None and report.at <= time.time()
    assert report.errors == 0, "every decision so far was answered (edge_decision_failures_total)"
    assert result.status == "halted" and list(result.failed) == ["g1"]
    assert "swap_failed" in result.failed["g1"] and result.rolled_back == []
    assert after.status_code == 200 and serving == manifest["version"], "the old model still serves"
