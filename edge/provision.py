"""Device provisioning and revocation (``edge devices add`` / ``edge devices remove``).

:func:`provision` registers a device and returns its **provisioning bundle**: everything it
needs and nothing else — the URLs of the TLS links, its MQTT password and HTTP token, the store
CA certificate, its topics, and with ``client_cert=True`` a client certificate and key for the
mutual-TLS listener (certificate CN = device id). Shown once; the registry keeps only hashes.

:func:`revoke` takes effect at once: the registry row goes (password and token stop working),
its certificates go on the CRL, the broker re-reads its files (SIGHUP: Mosquitto 2.0 then drops
the live sessions of password users no longer in the file), and the device's remaining live
session — a certificate session survives the reload — is taken over and ended from the
gateway's listener (:func:`edge.sessions.kick`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge import schema
from edge.broker import broker_dir, gateway_password, reload_broker, sync_broker_files
from edge.bundle import issue_bundle
from edge.config import Config
from edge.errors import BrokerError
from edge.registry import DeviceRegistry
from edge.sessions import kick
from edge.store_network import make_pki, read_network

__all__ = ["provision", "revoke"]

log = logging.getLogger(__name__)


def provision(config: Config, kind: str, device_id: str, *, client_cert: bool = False) -> dict[str, Any]:
    """``edge devices add``: register the device in the journal file and hand over its bundle."""
    pki = make_pki(config)
    if not pki.ca_path.exists():  # before the first start; later the gateway alone renews (and reloads) it
        pki.ensure()
    with schema.open_journal(config) as journal:
        return issue_bundle(config, DeviceRegistry(journal), kind, device_id, client_cert=client_cert)


def revoke(config: Config, device_id: str) -> dict[str, Any]:
    """Remove ``device_id``: credentials, certificates (CRL), live sessions. Returns what was done."""
    state_dir = Path(config.store.state_dir)
    with schema.open_journal(config) as journal:
        registry = DeviceRegistry(journal)
        registry.remove(device_id)
        sync_broker_files(registry, config.store.id, state_dir)
    certificates = make_pki(config).revoke_device(device_id) if (state_dir / "pki" / "ca.pem").exists() else 0
    reloaded = reload_broker(state_dir)
    gateway = next((x for x in read_network(state_dir).get("listeners", []) if x["role"] == "gateway"), None)
    kicked = False
    if gateway is not None and (broker_dir(state_dir) / "gateway.secret").exists():
        try:
            kick("127.0.0.1", int(gateway["port"]), gateway_password(state_dir), device_id)
            kicked = True
        except BrokerError as exc:
            log.warning("could not end %s's live session (the broker is not running?): %s", device_id, exc)
    return {"device_id": device_id, "certificates_revoked": certificates, "broker_reloaded": reloaded,
            "session_ended": kicked}  # fmt: skip
