"""Ending a test's paho client without leaving its socket to the garbage collector.

``disconnect()`` then ``loop_stop()`` can stop paho's network thread before it has written the
DISCONNECT and closed the socket (and a connection refused at CONNACK, or one whose broker went
away, keeps its socket too): the socket is then closed by the collector in some later test, as
an unraisable ResourceWarning. :func:`close_client` closes it now."""

from __future__ import annotations

from typing import Any

__all__ = ["close_client"]


def close_client(client: Any, *, disconnect: bool = True) -> None:
    """Disconnect (unless told not to), stop the network thread, close what is left."""
    if disconnect:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - already gone: closing is what matters here
            pass
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        sock.close()
