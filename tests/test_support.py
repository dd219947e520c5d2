"""The suite's own helpers, tested against the library they wrap (paho-mqtt 2.x)."""

from __future__ import annotations

import gc
import os
import warnings

import paho.mqtt.client as mqtt
from support.paho import close_client


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class _Holder:
    """A test's session object: its bound-method callback and the client refer to each other."""

    def __init__(self) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cycle", protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect

    def _on_connect(self, *_args: object) -> None:
        pass


def test_loop_stop_leaves_paho_wakeup_sockets_open_and_close_client_closes_them():
    """paho's ``loop_start()`` opens a TCP socket pair on 127.0.0.1 that ``loop_stop()`` leaves
    open until ``Client.__del__``; in a reference cycle the collector may finalize those sockets
    first, and the ResourceWarning fails whichever test collects them (stop 22's CI)."""
    before = _open_fds()
    plain = _Holder()
    plain.client.loop_start()
    plain.client.loop_stop()
    left = _open_fds() - before
    assert len(left) >= 2, f"paho's loop_stop closed its socket pair: {left}"  # what close_client is for
    plain.client._reset_sockets()

    before = _open_fds()
    holder = _Holder()
    holder.client.loop_start()
    close_client(holder.client)
    assert _open_fds() - before == set()
    del holder
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()
