"""A device's provisioning bundle: register it and hand over what it needs to connect.

Used by ``edge devices add`` (:mod:`edge.provision`, on the journal file) and by pairing in the
running gateway (:mod:`edge.pairing`, on the gateway's own registry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.broker import reload_broker, sync_broker_files
from edge.config import Config
from edge.registry import DeviceRegistry
from edge.store_network import make_pki, provisioning_urls, read_network

__all__ = ["issue_bundle"]


def issue_bundle(
    config: Config, registry: DeviceRegistry, kind: str, device_id: str, *, client_cert: bool = False
) -> dict[str, Any]:
    """Add ``device_id`` to ``registry``, rewrite the broker's password and ACL files, reload the
    broker, and return the bundle: URLs, credentials, CA certificate (and a client certificate)."""
    state_dir = Path(config.store.state_dir)
    pki = make_pki(config)
    creds = registry.add(kind, device_id)
    sync_broker_files(registry, config.store.id, state_dir)
    reload_broker(state_dir)
    root = f"retail/v1/{config.store.id}/{creds.kind}/{creds.device_id}"
    bundle: dict[str, Any] = {
        "store_id": config.store.id, "device_id": creds.device_id, "kind": creds.kind,
        "urls": provisioning_urls(config, read_network(state_dir)),
        "mqtt_username": creds.mqtt_username, "mqtt_password": creds.mqtt_password, "http_token": creds.http_token,
        "ca_cert": pki.ca_pem(),
        "topics": {leaf: f"{root}/{leaf}" for leaf in ("events", "status", "decide", "offers", "receipts")},
    }  # fmt: skip
    if client_cert:
        issued = pki.issue_client(creds.device_id)
        bundle |= {"client_cert": issued.cert_pem, "client_key": issued.key_pem}
    return bundle
