"""The store network: which listeners exist, where, and whether they are encrypted.

Device-facing links are TLS on the configured interfaces (``broker.interfaces``): MQTT over TLS
with passwords (8883), MQTT over TLS with client certificates (8884, the certificate's CN is
the device), the HTTP API over HTTPS (``http.host``), and MQTT over secure WebSockets on the
HTTPS port at ``/mqtt`` (Debian's Mosquitto 2.0.11 is built without websockets, so the gateway
bridges it to the TLS listener — see :mod:`edge.wsbridge`). Plain MQTT is the gateway's own
listener on 127.0.0.1; a plaintext *device* listener exists only where ``broker.plaintext_hosts``
asks for one (the demo and tests use 127.0.0.1), and a non-loopback one is refused unless
``broker.allow_plaintext_lan`` is set, which :func:`check` reports as a warning.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from edge.config import Config, doc
from edge.settings import _port, _positive

__all__ = ["BrokerConfig", "CONFIG_SECTIONS", "Listener", "TlsConfig", "check", "is_loopback"]


def _hosts(values: list[str]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IP address (list the box's addresses, or 0.0.0.0 for all)"
    return None


def _fraction(value: float) -> str | None:
    return None if 0.1 <= value <= 0.9 else "must be between 0.1 and 0.9"


@dataclass(frozen=True)
class BrokerConfig:
    interfaces: list[str] = doc(
        ["0.0.0.0"], "Addresses the device-facing TLS listeners (MQTT over TLS, client-certificate MQTT) bind; "
        "[] for none.", _hosts,
    )  # fmt: skip
    mqtts_port: int = doc(8883, "MQTT over TLS for devices with a password (0 picks a free one).", _port)
    mtls_port: int = doc(
        8884, "MQTT over TLS with a device client certificate, its CN mapped to the device (0 picks a free one).", _port
    )
    plaintext_hosts: list[str] = doc(
        [], "Addresses of a plaintext device MQTT listener (e.g. [\"127.0.0.1\"] for on-box simulators and tests).",
        _hosts,
    )  # fmt: skip
    plaintext_port: int = doc(1884, "Port of the plaintext device listener (0 picks a free one).", _port)
    allow_plaintext_lan: bool = doc(
        False, "Allow a plaintext listener (MQTT or HTTP) on a non-loopback address: passwords, tokens and "
        "identifiers then cross the store network readable. Reported as a warning.",
    )  # fmt: skip
    autosave_changes: int = doc(
        10_000, "Broker persistence: save after this many changes (queued messages, retained, subscriptions) — the most "
        "acknowledged messages a broker SIGKILL can lose for devices without receipts.", _positive,
    )  # fmt: skip
    memory_limit_mb: int = doc(256, "Broker heap limit; beyond it new publishes are refused, never silently dropped.",
                               _positive)  # fmt: skip
    max_inflight_messages: int = doc(
        1000, "Outgoing QoS 1 messages in flight per client (the gateway's receive maximum also caps it).", _positive
    )


@dataclass(frozen=True)
class TlsConfig:
    http: bool = doc(True, "Serve the HTTP API (and the /mqtt secure WebSocket) over TLS.")
    names: list[str] = doc([], "DNS names for the server certificate (localhost and the hostname are always in).")
    addresses: list[str] = doc(
        [], "IP addresses for the server certificate (the concrete broker interfaces and 127.0.0.1 are always in).",
        _hosts,
    )  # fmt: skip
    server_cert_days: int = doc(90, "Lifetime of the server certificate the store CA issues.", _positive)
    client_cert_days: int = doc(365, "Lifetime of device client certificates (`edge devices add --client-cert`).",
                                _positive)  # fmt: skip
    renew_fraction: float = doc(0.667, "Renew the server certificate at this fraction of its lifetime.", _fraction)
    check_interval_s: float = doc(3600.0, "How often the gateway checks whether the certificate is due.", _positive)
    warn_days: int = doc(14, "/readyz warns (`tls_expiry`) this many days before the server certificate ends.",
                         _positive)  # fmt: skip
    ca_cert: str = doc("", "The retailer's CA certificate (PEM) to sign with instead of a store CA (with `ca_key`).")
    ca_key: str = doc("", "The retailer CA's EC private key (PEM, unencrypted, 0600).")
    server_cert: str = doc("", "A server certificate chain issued by the retailer (PEM); used as is, never renewed.")
    server_key: str = doc("", "The key of `server_cert` (PEM, 0600).")
    public_host: str = doc(
        "", "Host name or address devices use in their provisioning bundle (default: the first concrete interface, "
        "else the hostname).",
    )  # fmt: skip


CONFIG_SECTIONS: dict[str, type] = {"broker": BrokerConfig, "tls": TlsConfig}


@dataclass(frozen=True)
class Listener:
    """One broker listener: ``role`` is gateway | mqtts | mtls | plaintext."""

    role: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.role in ("mqtts", "mtls")


def is_loopback(host: str) -> bool:
    """Only the box itself: 127.0.0.1, ::1 (other 127/8 addresses may be bound to a LAN-facing role)."""
    return host in ("127.0.0.1", "::1", "localhost")


def check(config: Config) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Cross-section rules: (errors, warnings) as (key path, message)."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    broker, tls = config.broker, config.tls
    plain = [("broker.plaintext_hosts", h) for h in broker.plaintext_hosts if not is_loopback(h)]
    if not tls.http and not is_loopback(config.http.host):
        plain.append(("http.host", config.http.host))
    for key, host in plain:
        message = f"plaintext listener on {host}: passwords, tokens and identifiers would cross the store network"
        if broker.allow_plaintext_lan:
            warnings.append((key, message + " (allowed by broker.allow_plaintext_lan)"))
        else:
            errors.append((key, message + "; use TLS, or set broker.allow_plaintext_lan = true to allow it"))
    if config.mqtt.mode == "external":
        host = config.mqtt.url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]/")
        if not is_loopback(host):
            errors.append(("mqtt.url", f"the gateway connects to the broker only on its own plain listener on "
                                       f"127.0.0.1, not {host}: run the broker on this box (edge-mosquitto.service)"))  # fmt: skip
    if bool(tls.ca_cert) != bool(tls.ca_key):
        errors.append(("tls.ca_cert", "set both tls.ca_cert and tls.ca_key, or neither"))
    if bool(tls.server_cert) != bool(tls.server_key):
        errors.append(("tls.server_cert", "set both tls.server_cert and tls.server_key, or neither"))
    return errors, warnings
