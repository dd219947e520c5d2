"""Ending a test's paho client without leaving its socket to the garbage collector.

``disconnect()`` then ``loop_stop()`` can stop paho's network thread before it has written the
DISCONNECT and closed the socket (and a connection refused at CONNACK, or one whose broker went
away, keeps its socket too): the socket is then closed by the collector in some later test, as
an unraisable ResourceWarning. The same goes for the wake-up socket pair ``loop_start()`` opens
on 127.0.0.1, which ``loop_stop()`` leaves open: when the client sits in a reference cycle (its
callbacks are bound methods of an object holding it), the collector may finalize those sockets
before ``Client.__del__`` closes them (stop 22's CI: ``unclosed <socket ... laddr=('127.0.0.1',
43487), raddr=('127.0.0.1', 36450)>`` in test_tls_links). :func:`close_client` closes all of
them now, as the gateway's own ``edge.sessions._release`` does."""

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
    client._reset_sockets()  # its MQTT socket and its wake-up socket pair (paho has no public call)
