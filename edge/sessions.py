"""Broker sessions the gateway manages from its loopback listener (short, blocking paho calls).

* :func:`prime_gateway_session` — the gateway's persistent session and subscription exist from
  the broker's first start, before any device connects, so events published before the gateway
  ever ran are queued for it instead of dropped ("no matching subscribers"). It is made with the
  gateway's own client id, ``clean_start=False`` and the session expiry, then the broker is asked
  to save at once (SIGUSR1) so a crash right after cannot forget it.
* :func:`kick` — end a device's live session: connecting with its client id on the gateway's
  listener (the only one where client ids are not bound to the username) takes the session
  over, and a clean disconnect ends it. Used after ``edge devices remove``: Mosquitto's SIGHUP
  reload drops password users no longer in the file but keeps certificate sessions.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.errors import BrokerError
from edge.mqtt import gateway_subscription
from edge.registry import GATEWAY_USER

__all__ = ["kick", "prime_gateway_session"]


def _connect(host: str, port: int, password: str, client_id: str, *, clean_start: bool,
             expiry_s: int, timeout_s: float) -> tuple[mqtt.Client, bool]:  # fmt: skip
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(GATEWAY_USER, password)
    done = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(_c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: object, _p: object) -> None:
        outcome["reason"], outcome["present"] = reason, flags.session_present
        done.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry_s
    try:
        client.connect(host, port, keepalive=10, clean_start=clean_start, properties=props)
    except OSError as exc:
        raise BrokerError(f"cannot reach the broker's gateway listener at {host}:{port}: {exc}") from exc
    client.loop_start()
    if not done.wait(timeout_s) or getattr(outcome.get("reason"), "is_failure", True):
        _release(client)
        raise BrokerError(f"the broker at {host}:{port} refused the gateway: {outcome.get('reason', 'no answer')}")
    return client, bool(outcome["present"])


def _close(client: mqtt.Client, timeout_s: float = 2.0) -> None:
    """Disconnect and wait until paho has written the DISCONNECT and closed its socket: stopping
    its network thread at once can leave both undone (the broker then keeps a will-less session
    open until keepalive, and the socket goes to the garbage collector)."""
    gone = threading.Event()
    client.on_disconnect = lambda *_args: gone.set()
    client.disconnect()
    gone.wait(timeout_s)
    _release(client)


def _release(client: mqtt.Client) -> None:
    """Stop the network thread and close whatever socket paho still holds (a refused CONNACK
    leaves it open), now rather than in ``Client.__del__`` in some other thread."""
    client.loop_stop()
    client._reset_sockets()  # its MQTT socket and its wake-up socket pair


def prime_gateway_session(host: str, port: int, password: str, client_id: str, store_id: str,
                          expiry_s: int, timeout_s: float = 10.0) -> bool:  # fmt: skip
    """Create the gateway's persistent session if the broker has none; True if it was created."""
    client, present = _connect(host, port, password, client_id, clean_start=False, expiry_s=expiry_s,
                               timeout_s=timeout_s)  # fmt: skip
    try:
        if present:
            return False
        topic, options = gateway_subscription(store_id)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.subscribe(topic, options=options)
        if not subscribed.wait(timeout_s):
            raise BrokerError("the broker did not confirm the gateway's subscription")
        return True
    finally:
        _close(client)


def kick(host: str, port: int, password: str, client_id: str, timeout_s: float = 10.0) -> None:
    """Take over and end the live session of ``client_id`` (a device id: its bound client id)."""
    client, _present = _connect(host, port, password, client_id, clean_start=True, expiry_s=0,
                                timeout_s=timeout_s)  # fmt: skip
    _close(client)
