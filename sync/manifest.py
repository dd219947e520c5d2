"""Signed model manifests: Ed25519 over the exact manifest bytes.

A model update carries ``manifest`` (JSON bytes), ``signature`` (64 bytes) and the files. The
manifest names the model, its version, the offer catalog version it was trained against and each
file's sha256 and size::

    {"model": "recommender", "version": "2026.11.22-1", "catalog": "2026-11-20",
     "files": {"model.onnx": {"sha256": "…", "size": 123}}}

:func:`verify_manifest` checks the signature against the configured public key first (nothing in
an unsigned manifest is trusted), then the catalog, then every file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.errors import DownlinkRefused

__all__ = ["Manifest", "load_public_key", "sign_manifest", "sign_offers", "verify_manifest", "verify_offers"]

#: Offer catalogs are signed over this prefix + the file, so no signature of one kind of
#: message (a model manifest) can ever pass for another.
OFFERS_CONTEXT = b"edge-offers-v1\n"

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Manifest:
    model: str
    version: str
    catalog: str
    files: Mapping[str, tuple[str, int]]  # name → (sha256 hex, size)


def load_public_key(text: str) -> Ed25519PublicKey:
    """The configured key: base64 of the 32 raw bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise DownlinkRefused(
            "bad_public_key", "downlink.model_public_key must be base64 of a 32-byte Ed25519 key"
        ) from None


def sign_manifest(private_key: Ed25519PrivateKey, manifest: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """For the centre and tests: (manifest bytes, signature)."""
    data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return data, private_key.sign(data)


def verify_manifest(
    public_key: Ed25519PublicKey,
    manifest_bytes: bytes,
    signature: bytes,
    files: Mapping[str, bytes],
    current_catalog: str | None,
) -> Manifest:
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise DownlinkRefused("bad_signature", "model manifest signature does not verify") from None
    try:
        data = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise DownlinkRefused("bad_manifest", "signed manifest is not JSON") from None
    manifest = _parse(data)
    if manifest.catalog != current_catalog:
        raise DownlinkRefused(
            "wrong_catalog",
            f"model {manifest.version} was built for catalog {manifest.catalog[:64]!r},"
            f" this store has {current_catalog!r}",
        )
    if set(files) != set(manifest.files):
        raise DownlinkRefused("wrong_files", "files sent differ from the files in the manifest")
    for name, (digest, size) in manifest.files.items():
        content = files[name]
        if len(content) != size or hashlib.sha256(content).hexdigest() != digest:
            raise DownlinkRefused("wrong_files", f"file {name} does not match its manifest digest")
    return manifest


def _parse(data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise DownlinkRefused("bad_manifest", "manifest must be an object")
    model, version, catalog, files = (data.get(k) for k in ("model", "version", "catalog", "files"))
    if not isinstance(model, str) or not isinstance(catalog, str):
        raise DownlinkRefused("bad_manifest", "manifest needs model and catalog strings")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise DownlinkRefused("bad_manifest", "version must be a short [A-Za-z0-9._-] string")
    if not isinstance(files, dict) or not files:
        raise DownlinkRefused("bad_manifest", "manifest needs a non-empty files object")
    parsed: dict[str, tuple[str, int]] = {}
    for name, meta in files.items():
        if not _FILE_NAME.match(name):
            raise DownlinkRefused("bad_manifest", "manifest file names must be plain names")
        if not isinstance(meta, dict):
            raise DownlinkRefused("bad_manifest", f"manifest entry {name} must be an object")
        digest, size = meta.get("sha256"), meta.get("size")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise DownlinkRefused("bad_manifest", f"entry {name} needs a sha256 hex digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DownlinkRefused("bad_manifest", f"manifest entry {name} needs a size")
        parsed[name] = (digest, size)
    return Manifest(model, version, catalog, parsed)


def sign_offers(private_key: Ed25519PrivateKey, catalog: bytes) -> bytes:
    """For the centre: the signature an offers message carries."""
    return private_key.sign(OFFERS_CONTEXT + catalog)


def verify_offers(public_key: Ed25519PublicKey, catalog: bytes, signature: bytes) -> None:
    """Raises DownlinkRefused unless ``signature`` is the centre's over ``catalog``."""
    if not signature:
        raise DownlinkRefused("unsigned", "offers must be signed when downlink.model_public_key is set")
    try:
        public_key.verify(signature, OFFERS_CONTEXT + catalog)
    except InvalidSignature:
        raise DownlinkRefused("bad_signature", "offers signature does not verify") from None
