"""Signed model updates through the real downlink into the real recommender, mid-traffic.

A good update swaps in with no failed decision; a bad signature, a model for another catalog or
a broken model (signed, but failing its own checks) is refused and the old model keeps serving.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from support.gateway import make_config, register, running_gateway

from models import DEFAULT_MODEL_DIR
from sync.manifest import sign_manifest
from sync.messages import ModelUpdate, encode_downlink

pytestmark = pytest.mark.integration

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
FILES = ("model.onnx", "manifest.json", "catalog.csv", "history.json")


def _update(version: str, catalog: str, key=KEY, corrupt: bool = False) -> bytes:
    files = {name: (Path(DEFAULT_MODEL_DIR) / name).read_bytes() for name in FILES}
    if corrupt:  # signed by the centre, but the model itself is damaged
        files["model.onnx"] = files["model.onnx"][: len(files["model.onnx"]) // 2]
    manifest = {
        "model": "recommender",
        "version": version,
        "catalog": catalog,
        "files": {n: {"sha256": hashlib.sha256(c).hexdigest(), "size": len(c)} for n, c in files.items()},
    }
    data, signature = sign_manifest(key, manifest)
    return encode_downlink(ModelUpdate(f"m-{version}", data, signature, files))


def test_model_updates_swap_or_are_refused_without_a_failed_decision(tmp_path):
    config = make_config(
        tmp_path / "state",
        downlink={"enabled": True, "servers": ["nats://127.0.0.1:9"], "model_public_key": PUBLIC},
    )
    token = register(config, [("kiosk", "k1")])["k1"].http_token
    with running_gateway(config, features=tuple(config.features.enabled)) as handle:
        features = handle.gateway.features
        model, downlink = features.model, features.sync.downlink
        catalog = model.catalog_version()
        codes: list[int] = []
        stop = threading.Event()

        def decide_forever() -> None:
            with httpx.Client(base_url=handle.http, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                while not stop.is_set():
                    codes.append(c.post("/v1/decisions", json={"placement": "kiosk_home", "basket": []}).status_code)

        traffic = threading.Thread(target=decide_forever)
        traffic.start()
        try:
            before = model.holder.current
            assert downlink.apply(_update("v-bad-sig", catalog, key=Ed25519PrivateKey.generate())) == "refused"
            assert downlink.apply(_update("v-other-catalog", "0" * 64)) == "refused"
            assert downlink.apply(_update("v-broken", catalog, corrupt=True)) == "refused"
            assert model.holder.current is before  # the old model kept serving
            assert downlink.apply(_update("v-good", catalog)) == "applied"
            assert model.holder.current is not before
            recorded = (config.store.state_dir / "models" / "active").read_text().strip()
            assert Path(recorded).name == "v-good"
        finally:
            stop.set()
            traffic.join()
    assert codes and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
