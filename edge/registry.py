"""The device registry: who may talk to the gateway, with which credentials and role.

Every device gets its own MQTT username/password and HTTP bearer token at ``edge devices add``;
only their hashes are stored (PBKDF2-SHA512 in Mosquitto's ``$7$`` format for MQTT, SHA-256 for
the high-entropy HTTP token). From the registry the gateway writes Mosquitto's password and ACL
files so that a device can touch only its own topics.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from edge.errors import RegistryError
from edge.journal import Journal, Migration

__all__ = [
    "GATEWAY_USER",
    "MIGRATIONS",
    "REGISTERED_KINDS",
    "Credentials",
    "Device",
    "DeviceRegistry",
    "mosquitto_hash",
    "write_mosquitto_files",
]

GATEWAY_USER = "edge-gateway"
#: Kinds that connect over the network with their own credentials (the others are local adapters).
REGISTERED_KINDS = frozenset({"kiosk", "display", "tablet", "pos", "ops"})
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the broker reads the count from the hash


def _devices_v1(db: sqlite_utils.Database) -> None:
    db["devices"].create(  # type: ignore[union-attr]
        {
            "device_id": str,
            "kind": str,
            "token_sha256": str,
            "mqtt_hash": str,
            "created_ms": int,
            "enabled": int,
        },
        pk="device_id",
    )
    db["devices"].create_index(["token_sha256"], unique=True)  # type: ignore[union-attr]


MIGRATIONS = (Migration("registry-0001-devices", _devices_v1),)


@dataclass(frozen=True)
class Device:
    device_id: str
    kind: str
    enabled: bool
    created_ms: int

    @property
    def role(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Credentials:
    """Shown once at ``edge devices add``; the registry keeps only hashes."""

    device_id: str
    kind: str
    mqtt_username: str
    mqtt_password: str
    http_token: str


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceRegistry:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def add(self, kind: str, device_id: str) -> Credentials:
        if kind not in REGISTERED_KINDS:
            raise RegistryError(f"unknown kind {kind!r}: use one of {', '.join(sorted(REGISTERED_KINDS))}")
        if not _ID.match(device_id) or device_id.startswith(GATEWAY_USER):  # the gateway's user and client ids
            raise RegistryError(
                f"device id {device_id!r} is invalid: 1–63 of a-z, 0-9, '-', '_', starting alphanumeric"
            )
        password = secrets.token_urlsafe(24)
        token = f"edt_{secrets.token_urlsafe(32)}"
        with self._journal.transaction() as conn:
            if conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone():
                raise RegistryError(f"device {device_id!r} already exists; remove it first to re-issue")
            conn.execute(
                "INSERT INTO devices VALUES (?,?,?,?,?,1)",
                (device_id, kind, _token_hash(token), mosquitto_hash(password), int(time.time() * 1000)),
            )
        return Credentials(device_id, kind, device_id, password, token)

    def remove(self, device_id: str) -> None:
        with self._journal.transaction() as conn:
            if conn.execute("DELETE FROM devices WHERE device_id = ?", (device_id,)).rowcount == 0:
                raise RegistryError(f"no device {device_id!r}")

    def devices(self) -> list[Device]:
        rows = (
            self._journal.reader()
            .execute("SELECT device_id, kind, enabled, created_ms FROM devices ORDER BY device_id")
            .fetchall()
        )
        return [Device(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def get(self, device_id: str) -> Device | None:
        return next((d for d in self.devices() if d.device_id == device_id), None)

    def by_token(self, token: str) -> Device | None:
        digest = _token_hash(token)
        row = (
            self._journal.reader()
            .execute(  # never waits behind a group commit
                "SELECT device_id, kind, enabled, created_ms, token_sha256 FROM devices WHERE token_sha256 = ?",
                (digest,),
            )
            .fetchone()
        )
        if row is None or not hmac.compare_digest(row[4], digest) or not row[2]:
            return None
        return Device(row[0], row[1], bool(row[2]), row[3])

    def mqtt_hashes(self) -> list[tuple[str, str, str]]:
        with self._journal.connection() as conn:
            return conn.execute(
                "SELECT device_id, kind, mqtt_hash FROM devices WHERE enabled = 1 ORDER BY device_id"
            ).fetchall()


def acl_lines(store_id: str, devices: Iterable[tuple[str, str]]) -> list[str]:
    """Mosquitto ACL: the gateway may do anything under the store root; a device only its own."""
    root = f"retail/v1/{store_id}"
    lines = [f"user {GATEWAY_USER}", f"topic readwrite {root}/#", ""]
    for device_id, kind in devices:
        base = f"{root}/{kind}/{device_id}"
        lines += [
            f"user {device_id}",
            f"topic write {base}/events",
            f"topic readwrite {base}/status",
            f"topic write {base}/decide",
            f"topic read {base}/offers",
            f"topic read {base}/responses/#",
            f"topic read {base}/receipts",
            f"topic read {root}/gateway/status",
            f"topic read {root}/zones/+/presence",
            "",
        ]
    return lines


def write_mosquitto_files(
    registry: DeviceRegistry, store_id: str, gateway_password: str, directory: Path
) -> tuple[Path, Path]:
    """Write the password files and ``acl`` atomically (0600); returns the paths of ``passwd`` and ``acl``.

    ``passwd-gateway`` (only the gateway) serves the gateway's loopback listener,
    ``passwd-devices`` (only devices) the device listeners, ``passwd`` (both) a shared test rig."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = registry.mqtt_hashes()
    gateway = [f"{GATEWAY_USER}:{mosquitto_hash(gateway_password)}"]
    devices = [f"{device_id}:{digest}" for device_id, _kind, digest in rows]
    acl = acl_lines(store_id, [(device_id, kind) for device_id, kind, _ in rows])
    paths = (directory / "passwd", directory / "acl")
    files = {paths[0]: gateway + devices, paths[1]: acl, directory / "passwd-gateway": gateway,
             directory / "passwd-devices": devices or ["# no devices registered"]}  # fmt: skip
    for path, lines in files.items():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    return paths
