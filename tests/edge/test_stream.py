"""The WebSocket stream: associates see consented customers only; displays see no person."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import threading
import time

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


def test_a_stop_while_a_page_is_closing_its_websocket_stops_cleanly(tmp_path, caplog):
    """A page closes its WebSocket and never completes the TLS close after the server's answer
    (a browser tab killed mid-close, a display losing power): uvicorn has answered the close
    but keeps the connection until the TLS shutdown ends. A gateway stop in that window had
    uvicorn send its own close on it, websockets refused (``InvalidState: connection is
    closing``) and the exception ended the gateway's run with an error — CI saw it as the
    display page's restart test failing. The client here is a raw TLS socket speaking RFC 6455
    bytes, so nothing on its side tidies up."""
    config = make_config(tmp_path / "state", tls={"http": True})
    creds = register(config, [("display", "d1")])
    with running_gateway(config) as handle:
        host, port = handle.http.removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the store CA is not the point
        page = context.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        page.sendall(
            f"GET /v1/stream?token={creds['d1'].http_token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += page.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101")
        mask, code = os.urandom(4), struct.pack("!H", 1000)
        page.sendall(bytes([0x88, 0x80 | len(code)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(code)))
        echoed = answer.partition(b"\r\n\r\n")[2]
        while len(echoed) < 2:
            echoed += page.recv(4096)
        assert echoed[0] == 0x88  # the server answered the close; its TLS close now waits on us
        time.sleep(0.2)
        # the page goes away only once the stop is under way (its socket is then closed, not
        # left to the garbage collector)
        threading.Timer(1.0, page.close).start()
    # the gateway stopped without an error, and it met the connection in that state
    assert "could not be closed gracefully at shutdown (InvalidState" in caplog.text
