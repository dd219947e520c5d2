"""Shared pieces for the store-network tests: a gateway with TLS on 127.0.0.2 (the store LAN's
stand-in; nothing here uses any other address than 127.0.0.1/127.0.0.2), and real third-party
clients (paho-mqtt, httpx) configured from nothing but a provisioning bundle."""

from __future__ import annotations

import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from support.emulation import scaled
from support.gateway import make_config
from support.paho import close_client

from edge.config import Config

LAN = "127.0.0.2"


def tls_config(state_dir: Path, **sections: dict[str, Any]) -> Config:
    """Device links on the 'LAN' only over TLS; no plaintext device listener."""
    base: dict[str, dict[str, Any]] = {
        "broker": {
            "interfaces": [LAN],
            "mqtts_port": 0,
            "mtls_port": 0,
            "plaintext_hosts": [],
            "autosave_changes": 100,
        },
        "tls": {"http": True},
        "http": {"host": LAN, "port": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return make_config(state_dir, **base)


def ssl_context(bundle: dict[str, Any], *, client_cert: bool = False, ca: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca or bundle["ca_cert"])
    if client_cert:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            cert.write_text(bundle["client_cert"])
            key.write_text(bundle["client_key"])
            key.chmod(0o600)
            context.load_cert_chain(cert, key)
    return context


class Session:
    """A paho MQTT 5 client over TLS (or WSS) with connect/disconnect bookkeeping."""

    def __init__(
        self,
        bundle: dict[str, Any],
        via: str = "mqtts",
        *,
        client_id: str = "",
        context: ssl.SSLContext | None = None,
        password: str | None = None,
        reconnect: bool = False,
        clean_start: bool = True,
    ) -> None:
        url = urlsplit(bundle["urls"][via])
        self.host, self.port = url.hostname or "", url.port or 0
        transport = "websockets" if url.scheme == "wss" else "tcp"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{bundle['device_id']}-t",
            protocol=mqtt.MQTTv5,
            transport=transport,
        )
        if transport == "websockets":
            self.client.ws_set_options(path=url.path)
        self.client.tls_set_context(context or ssl_context(bundle, client_cert=via == "mtls"))
        if via != "mtls":
            self.client.username_pw_set(bundle["mqtt_username"], password or bundle["mqtt_password"])
        self.connects: list[Any] = []
        self.disconnects: list[Any] = []
        self.connected = threading.Event()
        self.changed = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 2)
        self._reconnect = reconnect
        self._clean_start = clean_start

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self.changed:
            self.connects.append(reason)
            if not reason.is_failure:
                self.connected.set()
            self.changed.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self.changed:
            self.connected.clear()
            self.disconnects.append(reason)
            self.changed.notify_all()

    def start(self, timeout: float = 10.0) -> Any:
        """Connect; returns the CONNACK reason (or raises what the TLS handshake raised)."""
        self.client.connect(self.host, self.port, keepalive=5, clean_start=self._clean_start)
        self.client.loop_start()
        with self.changed:
            self.changed.wait_for(lambda: self.connects or self.disconnects, timeout)
        if not self._reconnect and self.connects and self.connects[-1].is_failure:
            self.abandon()
        return self.connects[-1] if self.connects else None

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0) -> int:
        """QoS 1; the PUBACK reason code (0 = accepted)."""
        codes: list[int] = []
        done = threading.Event()
        self.client.on_publish = lambda _c, _u, _m, reason, _p: (codes.append(reason.value), done.set())
        self.client.publish(topic, payload, qos=1, retain=retain)
        assert done.wait(timeout), "no PUBACK"
        return codes[-1]

    def stop(self) -> None:
        close_client(self.client)

    def abandon(self) -> None:
        """Stop the network thread and close the socket now (the broker was killed under it): a
        socket left to the garbage collector warns in whichever later test it is collected."""
        close_client(self.client, disconnect=False)


@contextmanager
def session(bundle: dict[str, Any], via: str = "mqtts", **options: Any) -> Iterator[Session]:
    s = Session(bundle, via, **options)
    try:
        reason = s.start()
        assert reason is not None and not reason.is_failure, f"{via} connect refused: {reason}"
        yield s
    finally:
        s.stop()


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def tls_refusal(host: str, port: int, context: ssl.SSLContext) -> str:
    """Open a real TLS connection and say why it was refused ('' if it was not)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(3)
                if tls.recv(1) == b"":  # TLS 1.3: the server checks the client certificate after the handshake
                    return "closed by the server"
    except ssl.SSLError as exc:
        return str(exc)
    except TimeoutError:
        return ""
    except OSError as exc:
        return str(exc)
    return ""
