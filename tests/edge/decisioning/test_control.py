"""The control socket (edge.control) with a real Unix socket: mode 0600, one JSON line each way,
clear refusals, and ControlUnavailable when nothing listens (the CLI then works on the file)."""

from __future__ import annotations

import asyncio
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edge import control


async def _echo(message: Mapping[str, Any]) -> dict[str, Any]:
    if message.get("fail"):
        raise ValueError("fail was asked for")
    return {"echo": message.get("value")}


def _raw(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(data)
        return sock.recv(65536)


@pytest.mark.anyio
async def test_control_socket_round_trip_and_refusals(tmp_path: Path) -> None:
    path = control.socket_path(tmp_path / "state")
    with pytest.raises(control.ControlUnavailable):
        control.request(path, {"op": "echo"})
    path.parent.mkdir(parents=True)
    path.write_text("stale")  # left by a crashed gateway: replaced
    async with control.serve(path, {"echo": _echo}):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.is_socket()
        ask = asyncio.to_thread
        assert await ask(control.request, path, {"op": "echo", "value": 7}) == {"echo": 7}
        refused = await ask(control.request, path, {"op": "echo", "fail": True})
        assert refused == {"error": "refused", "detail": "fail was asked for"}
        unknown = await ask(control.request, path, {"op": "drop-tables"})
        assert unknown["error"] == "bad_request" and "echo" in unknown["detail"]
        garbage = await ask(_raw, path, b"\xff not json\n")
        assert b'"bad_request"' in garbage
    assert not path.exists()
    with pytest.raises(control.ControlUnavailable):
        control.request(path, {"op": "echo"})
