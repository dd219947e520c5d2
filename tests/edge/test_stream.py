"""The WebSocket stream: associates see consented customers only; displays see no person."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from support.gateway import make_config, register, running_gateway

from edge.bus import Source

pytestmark = pytest.mark.integration

TOKEN_YES = "ct_" + "1" * 32
TOKEN_NO = "ct_" + "2" * 32


def _zone(user, consent, mid):
    return {
        "messageId": mid,
        "event": "Zone Entered",
        "userId": user,
        "properties": {"zoneId": "z1"},
        "context": {"consent": {"categoryPreferences": {"personalization": consent}}},
    }


def test_stream_views_per_role_and_auth(tmp_path):
    config = make_config(tmp_path / "state")
    creds = register(config, [("tablet", "t1"), ("display", "d1"), ("kiosk", "k1")])
    with running_gateway(config) as handle:
        ws_url = handle.http.replace("http://", "ws://") + "/v1/stream"

        async def scenario():
            with pytest.raises(websockets.exceptions.ConnectionClosed) as refused:
                async with websockets.connect(ws_url) as ws:
                    await ws.recv()
            assert refused.value.rcvd.code == 4401
            with pytest.raises(websockets.exceptions.ConnectionClosed) as forbidden:
                async with websockets.connect(f"{ws_url}?token={creds['k1'].http_token}") as ws:
                    await ws.recv()
            assert forbidden.value.rcvd.code == 4403
            headers = {"Authorization": f"Bearer {creds['t1'].http_token}"}
            async with (
                websockets.connect(ws_url, additional_headers=headers) as tablet,
                websockets.connect(f"{ws_url}?token={creds['d1'].http_token}") as display,
            ):
                await asyncio.sleep(0.2)
                bus = handle.gateway.context.bus
                source = Source("s1", "beacons", "beacon", "ble")
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(
                        bus.publish(source, [_zone(TOKEN_NO, False, "z-no"), _zone(TOKEN_YES, True, "z-yes")]),
                        handle.loop,
                    )
                )
                seen = json.loads(await asyncio.wait_for(tablet.recv(), 10))
                assert seen["userId"] == TOKEN_YES and seen["zoneId"] == "z1"
                shown = [json.loads(await asyncio.wait_for(display.recv(), 10)) for _ in range(2)]
                assert all("userId" not in s for s in shown) and shown[0]["properties"] == {"zoneId": "z1"}
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(tablet.recv(), 0.5)  # the non-consented person never shows

        asyncio.run(scenario())
