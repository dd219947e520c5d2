"""Downlink messages (centre → store) on ``cdp.downlink.{storeId}``: wire format and pure parser.

Each message is one JSON object with a ``kind``::

    {"kind": "consent", "id": "…", "userId": "ct_…", "categoryPreferences": {"cdp_sync": false},
     "source": "cdp", "timestamp": "2026-12-01T18:00:00Z"}   (timestamp optional)
    {"kind": "erasure", "requestId": "…", "userId": "ct_…"}
    {"kind": "offers", "id": "…", "catalog": "…the offers file (TOML text), written as is…",
     "signature": "<base64 Ed25519, see sync.manifest.verify_offers>"}
    {"kind": "model", "id": "…", "manifest": "<base64>", "signature": "<base64>",
     "files": {"model.onnx": "<base64>", …}}

:func:`parse_downlink` takes untrusted bytes and returns a frozen dataclass or raises
:class:`~sync.errors.DownlinkRefused` — the only error it raises.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.events import TOKEN_PATTERN
from sync.errors import DownlinkRefused

__all__ = [
    "ConsentChange",
    "DownlinkMessage",
    "ErasureRequest",
    "ModelUpdate",
    "OfferCatalog",
    "downlink_subject",
    "encode_downlink",
    "parse_downlink",
]

MAX_ID = 128


def downlink_subject(store_id: str) -> str:
    return f"cdp.downlink.{store_id}"


@dataclass(frozen=True)
class ConsentChange:
    id: str
    user_id: str
    preferences: Mapping[str, bool]
    source: str
    #: when the person made the choice (ISO-8601): the store applies the newest choice by this
    #: time, so a late or redelivered older change never overrides a newer one
    timestamp: str | None = None


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    user_id: str


@dataclass(frozen=True)
class OfferCatalog:
    id: str
    catalog: bytes  # the offers file (TOML) as UTF-8 bytes
    signature: bytes = b""  # Ed25519 over sync.manifest.offers_signed_bytes(catalog); b"" if unsigned


@dataclass(frozen=True)
class ModelUpdate:
    id: str
    manifest: bytes
    signature: bytes
    files: Mapping[str, bytes]


DownlinkMessage = ConsentChange | ErasureRequest | OfferCatalog | ModelUpdate


def parse_downlink(payload: bytes, max_bytes: int = 8 * 1024 * 1024) -> DownlinkMessage:
    if len(payload) > max_bytes:
        raise DownlinkRefused("too_large", f"message of {len(payload)} bytes exceeds {max_bytes}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise DownlinkRefused("invalid_json", "downlink message is not JSON") from None
    if not isinstance(data, dict):
        raise DownlinkRefused("wrong_type", "downlink message must be an object")
    kind = data.get("kind")
    if kind == "consent":
        prefs = data.get("categoryPreferences")
        if not isinstance(prefs, dict) or not all(isinstance(k, str) and isinstance(v, bool) for k, v in prefs.items()):
            raise DownlinkRefused("wrong_type", "categoryPreferences must map purposes to booleans")
        source = data.get("source", "cdp")
        if not isinstance(source, str) or len(source) > 40:
            raise DownlinkRefused("wrong_type", "source must be a short string")
        timestamp = data.get("timestamp")
        if timestamp is not None and (not isinstance(timestamp, str) or len(timestamp) > 64):
            raise DownlinkRefused("wrong_type", "timestamp must be an ISO-8601 string")
        return ConsentChange(_id(data, "id"), _token(data), dict(prefs), source, timestamp)
    if kind == "erasure":
        return ErasureRequest(_id(data, "requestId"), _token(data))
    if kind == "offers":
        catalog = data.get("catalog")
        if not isinstance(catalog, str) or not catalog:
            raise DownlinkRefused("wrong_type", "catalog must be the offers file as text")
        try:
            encoded = catalog.encode("utf-8")
        except UnicodeEncodeError:
            raise DownlinkRefused("wrong_type", "catalog is not valid UTF-8 text") from None
        signature = _b64(data["signature"], "signature") if data.get("signature") is not None else b""
        return OfferCatalog(_id(data, "id"), encoded, signature)
    if kind == "model":
        files = data.get("files")
        if not isinstance(files, dict):
            raise DownlinkRefused("wrong_type", "files must map names to base64 content")
        return ModelUpdate(
            _id(data, "id"),
            _b64(data.get("manifest"), "manifest"),
            _b64(data.get("signature"), "signature"),
            {str(k): _b64(v, f"files.{k}"[:60]) for k, v in files.items()},
        )
    raise DownlinkRefused("unknown_kind", "kind must be consent, erasure, offers or model")


def encode_downlink(message: DownlinkMessage) -> bytes:
    """The wire form of ``message`` (used by the central job and tests)."""
    body: dict[str, Any]
    if isinstance(message, ConsentChange):
        body = {"kind": "consent", "id": message.id, "userId": message.user_id,
                "categoryPreferences": dict(message.preferences),
                "source": message.source}  # fmt: skip
        if message.timestamp is not None:
            body["timestamp"] = message.timestamp
    elif isinstance(message, ErasureRequest):
        body = {"kind": "erasure", "requestId": message.request_id, "userId": message.user_id}
    elif isinstance(message, OfferCatalog):
        body = {"kind": "offers", "id": message.id, "catalog": message.catalog.decode()}
        if message.signature:
            body["signature"] = base64.b64encode(message.signature).decode()
    else:
        body = {"kind": "model", "id": message.id,
                "manifest": base64.b64encode(message.manifest).decode(),
                "signature": base64.b64encode(message.signature).decode(),
                "files": {k: base64.b64encode(v).decode()
                          for k, v in message.files.items()}}  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


def message_ref(message: DownlinkMessage) -> str:
    return message.request_id if isinstance(message, ErasureRequest) else message.id


def _id(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise DownlinkRefused("missing_field", f"{key} must be a string of 1–{MAX_ID} chars")
    return value


def _token(data: Mapping[str, Any]) -> str:
    value = data.get("userId")
    if not isinstance(value, str) or not TOKEN_PATTERN.match(value):
        raise DownlinkRefused("missing_field", "userId must be a customer token (ct_…)")
    return value


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise DownlinkRefused("wrong_type", f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DownlinkRefused("wrong_type", f"{what} is not valid base64") from None
