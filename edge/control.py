"""The gateway's local control socket: operator commands the running process must carry out.

``edge forget`` (and ``edge export``) on the store box ask the running gateway, so an erasure is
in force in that process — caches, suppression list, open sessions — when the command returns.
The socket is a Unix stream socket ``<state dir>/control.sock``, mode 0600 in the 0700 state
directory, and a connection is served only for the gateway's own user or root (``SO_PEERCRED``).

Protocol: the client sends one JSON object on one line, ``{"op": NAME, …}``, and reads one JSON
line back: the handler's answer, or ``{"error": reason, "detail": …}``. Handlers are async
callables registered by features; one that raises is answered ``{"error": "failed"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

__all__ = ["ControlUnavailable", "Handler", "SOCKET_NAME", "request", "serve", "socket_path"]

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024
Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


class ControlUnavailable(EdgeError):
    """No gateway is listening on the control socket (not running, or another state dir)."""


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


@contextlib.asynccontextmanager
async def serve(path: Path, handlers: Mapping[str, Handler]) -> AsyncIterator[asyncio.AbstractServer]:
    """Listen on ``path`` for the duration of the block (a stale socket file is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _serve_one(r, w, handlers), path=str(path), limit=MAX_REQUEST_BYTES
        )
    finally:
        os.umask(old_umask)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handlers: Mapping[str, Handler]
) -> None:
    try:
        answer = await _answer(reader, writer, handlers)
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handlers: Mapping[str, Handler]
) -> dict[str, Any]:
    if not _peer_allowed(writer.get_extra_info("socket")):
        return {"error": "forbidden", "detail": "only the gateway's user or root may use this socket"}
    try:
        line = await reader.readline()
        message = json.loads(line)
    except (ValueError, asyncio.LimitOverrunError):
        return {"error": "bad_request", "detail": "send one JSON object on one line"}
    if not isinstance(message, dict) or message.get("op") not in handlers:
        return {"error": "bad_request", "detail": f"op must be one of {', '.join(sorted(handlers))}"}
    try:
        return await handlers[message["op"]](message)
    except EdgeError as exc:
        return {"error": "refused", "detail": str(exc)}
    except ValueError as exc:
        return {"error": "refused", "detail": str(exc)}
    except Exception:
        log.exception("control command %s failed", message["op"])
        return {"error": "failed", "detail": "the command failed; see the gateway's log"}


def _peer_allowed(sock: socket.socket | None) -> bool:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # the 0600 mode still guards it
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


def request(path: Path, message: Mapping[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
    """Send one command to the running gateway and return its answer (blocking)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlUnavailable(f"no gateway listens on {path}") from exc
        sock.sendall(json.dumps(dict(message)).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise EdgeError(f"the gateway closed the control socket {path} without an answer") from None
    if not isinstance(answer, dict):
        raise EdgeError("the gateway's control answer is not an object")
    return answer
