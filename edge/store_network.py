"""The gateway's side of the store network: PKI, listeners, certificate renewal, provisioning.

:class:`StoreNetwork` is built by the composition root. It makes the store PKI on first start
(when any TLS link is configured), plans the broker's listeners, records them in
``<state_dir>/network.json`` (for ``edge devices add``'s bundle and ``remove``'s session kick),
renews the server certificate in the background — Mosquitto re-reads it on SIGHUP, the HTTPS
server's SSL context loads the new chain in place, so live connections are untouched — and
exposes its expiry in ``/metrics`` and as a ``/readyz`` warning.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.atomic import write_private
from edge.broker import plan_listeners, signal_broker
from edge.certstate import PkiFiles, ServerCertState, read_server_state, renewal_due
from edge.config import Config
from edge.errors import ConfigError
from edge.listeners import Listener, check

if TYPE_CHECKING:  # the PKI (and ``cryptography``) loads only to issue: see StoreNetwork._current
    from edge.pki import StorePki

__all__ = ["StoreNetwork", "make_pki", "network_file", "provisioning_urls", "read_network"]

log = logging.getLogger(__name__)


def make_pki(config: Config, clock: Callable[[], float] | None = None) -> StorePki:
    from edge.pki import StorePki  # here, not at the top: see the TYPE_CHECKING import

    tls, broker = config.tls, config.broker
    return StorePki(
        Path(config.store.state_dir) / "pki", store_id=config.store.id, names=tls.names,
        addresses=[*tls.addresses, *broker.interfaces, *([config.http.host] if _is_ip(config.http.host) else [])],
        server_days=tls.server_cert_days, client_days=tls.client_cert_days, renew_fraction=tls.renew_fraction,
        ca_cert=_optional(tls.ca_cert), ca_key=_optional(tls.ca_key),
        server_cert=_optional(tls.server_cert), server_key=_optional(tls.server_key), clock=clock,
    )  # fmt: skip


def _optional(value: str) -> Path | None:
    return Path(value) if value else None


def _pki_files(config: Config) -> PkiFiles:
    tls = config.tls
    return PkiFiles(Path(config.store.state_dir) / "pki", ca_cert=_optional(tls.ca_cert), ca_key=_optional(tls.ca_key),
                    server_cert=_optional(tls.server_cert), server_key=_optional(tls.server_key))  # fmt: skip


def _is_ip(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def network_file(state_dir: Path) -> Path:
    return state_dir / "network.json"


def read_network(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(network_file(state_dir).read_text())
    except FileNotFoundError:
        return {}
    return data


def provisioning_urls(config: Config, network: dict[str, Any]) -> dict[str, str]:
    """Where a device connects: ``mqtts``, ``mtls``, ``wss``, ``https`` (and ``mqtt`` if plaintext is on)."""
    host = config.tls.public_host or next(
        (h for h in config.broker.interfaces if h not in ("0.0.0.0", "::")), socket.gethostname()
    )
    ports = {x["role"]: x["port"] for x in network.get("listeners", [])}
    urls: dict[str, str] = {}
    if config.broker.interfaces:
        urls["mqtts"] = f"mqtts://{host}:{ports.get('mqtts', config.broker.mqtts_port)}"
        urls["mtls"] = f"mqtts://{host}:{ports.get('mtls', config.broker.mtls_port)}"
    http = network.get("http", {"port": config.http.port, "tls": config.tls.http})
    http_host = host if config.http.host in ("0.0.0.0", "::") else config.http.host
    if http["tls"]:
        urls["https"] = f"https://{http_host}:{http['port']}"
        urls["wss"] = f"wss://{http_host}:{http['port']}/mqtt"
    else:
        urls["http"] = f"http://{http_host}:{http['port']}"
    if config.broker.plaintext_hosts:
        urls["mqtt"] = (
            f"mqtt://{config.broker.plaintext_hosts[0]}:{ports.get('plaintext', config.broker.plaintext_port)}"
        )
    return urls


class StoreNetwork:
    def __init__(self, config: Config, metrics: CollectorRegistry, clock: Callable[[], float]) -> None:
        errors, warnings = check(config)
        if errors:
            raise ConfigError(errors)
        for key, message in warnings:
            log.warning("%s: %s", key, message)
        self.config = config
        self.state_dir = Path(config.store.state_dir)
        self.clock = clock
        self.tls_needed = bool(config.broker.interfaces) or config.tls.http
        # the files alone: StorePki (and cryptography) loads only when something is to be issued
        self.pki: PkiFiles | None = _pki_files(config) if self.tls_needed else None
        self._issuer: StorePki | None = None
        self.listeners: list[Listener] = []
        self.http_ssl: ssl.SSLContext | None = None
        self._http_serial = 0
        self._not_after = Gauge("edge_tls_server_cert_not_after_seconds",
                                "Unix time the server certificate ends", registry=metrics)  # fmt: skip
        self._remaining = Gauge("edge_tls_server_cert_expiry_seconds", "Seconds until the server certificate ends",
                                registry=metrics)  # fmt: skip
        self.not_after = 0.0
        self._remaining.set_function(lambda: self.not_after - self.clock())
        self._renewals = Counter("edge_tls_server_cert_renewals", "Server certificates issued by renewal",
                                 registry=metrics)  # fmt: skip

    def prepare(self, gateway_port: int, *, broker_running: bool = False) -> list[Listener]:
        """PKI on first start (or renewal if due: a running broker re-reads it), then the broker's listeners."""
        if self.pki is not None:
            current = self._current()
            if current is not None:
                os.chmod(self.pki.directory, 0o700)  # as StorePki.ensure does at a start
            state = current or self._store_pki().ensure()
            self._set_expiry(state.not_after)
            if state.renewed and broker_running:
                self._renewals.inc()
                signal_broker(self.state_dir, signal.SIGHUP)
        self.listeners = plan_listeners(self.config.broker, gateway_port)
        return self.listeners

    def _store_pki(self) -> StorePki:
        if self._issuer is None:
            self._issuer = make_pki(self.config, self.clock)
        return self._issuer

    def _current(self) -> ServerCertState | None:
        """The server certificate when the store's own PKI is complete and nothing is due, read
        without ``cryptography``; None sends the caller to :class:`~edge.pki.StorePki`."""
        if self.pki is None or not self.pki.complete():
            return None
        state = read_server_state(self.pki.server_cert_path)
        if state is None or renewal_due(state, self.clock(), self.config.tls.renew_fraction):
            return None
        return state

    def _set_expiry(self, not_after: float) -> None:
        self.not_after = not_after
        self._not_after.set(not_after)

    def listener(self, role: str) -> tuple[str, int] | None:
        found = next((x for x in self.listeners if x.role == role), None)
        if found is None:
            return None
        return ("127.0.0.1" if found.host == "0.0.0.0" else found.host), found.port

    def record(self, http_port: int) -> None:
        """``network.json``: the resolved listeners, for the CLI (bundles, kicks)."""
        data = {"listeners": [{"role": x.role, "host": x.host, "port": x.port} for x in self.listeners],
                "http": {"host": self.config.http.host, "port": http_port, "tls": self.config.tls.http}}  # fmt: skip
        write_private(network_file(self.state_dir), json.dumps(data, indent=2).encode())

    def uvicorn_ssl(self) -> dict[str, Any]:
        if not self.config.tls.http or self.pki is None:
            return {}
        self._http_serial = (read_server_state(self.pki.server_cert_path) or self._store_pki().server_state()).serial
        return {"ssl_certfile": str(self.pki.server_cert_path), "ssl_keyfile": str(self.pki.server_key_path)}

    def bridge_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        return ssl.create_default_context(cafile=str(self.pki.ca_path))

    def expiry_warning(self) -> str | None:
        if self.pki is None:
            return None
        left = self.not_after - self.clock()
        if left < self.config.tls.warn_days * 86_400:
            return f"the server certificate ends in {left / 86_400:.1f} days"
        return None

    def renew_now(self) -> bool:
        """Renew if due; then Mosquitto re-reads its files (SIGHUP) and HTTPS loads the new chain."""
        if self.pki is None:
            return False
        state = self._current() or self._store_pki().ensure_server()
        self._set_expiry(state.not_after)
        if state.renewed:
            self._renewals.inc()
            signal_broker(self.state_dir, signal.SIGHUP)
            log.info("renewed the server certificate; it ends at %s", _iso(state.not_after))
        if self.http_ssl is not None and state.serial != self._http_serial:  # also when `edge broker conf` renewed it
            self.http_ssl.load_cert_chain(str(self.pki.server_cert_path), str(self.pki.server_key_path))
            self._http_serial = state.serial
        return state.renewed

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tls.check_interval_s)
            try:
                await asyncio.to_thread(self.renew_now)
            except (OSError, ValueError) as exc:
                log.error("server certificate renewal failed (retrying): %s", type(exc).__name__)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")
