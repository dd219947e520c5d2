"""Rollouts of models and offer catalogs to the fleet, in waves, halted by the first bad wave.

:func:`plan_waves` orders the stores: ``canaries`` stores first, then ``fraction`` of the fleet,
then everyone else. :func:`roll_out` sends the release to one wave on the stores' downlinks and
waits until every store of the wave reports (:mod:`sync.health`, a report newer than the one
before the wave) that it runs the new version **and** is healthy: it served decisions since,
its error rate over them is at most ``max_error_rate`` and its p99 latency at most
``latency_factor`` × its p99 before the rollout. A store that refuses the release (bad
signature, failed smoke test: its ``refused`` names the release) or a wave that is not healthy
within ``wave_timeout_s`` halts the rollout: the waves after it get nothing, and every store
that had switched to the new version gets the previous release again (the canaries first).

Releases are kept in the fleet directory (``<fleet>/releases/<kind>/<version>.msg`` and
``current``) so the previous one can be re-sent; a model release is signed with the centre's
Ed25519 key exactly as the downlink verifies it (:mod:`sync.manifest`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats.js.errors
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext

from sync.backbone import STATUS_STREAM
from sync.health import StoreHealth, parse_health, status_subject
from sync.manifest import sign_manifest, sign_offers
from sync.messages import ModelUpdate, OfferCatalog, downlink_subject, encode_downlink

__all__ = [
    "HealthRule",
    "Release",
    "ReleaseStore",
    "RolloutResult",
    "model_release",
    "offers_release",
    "plan_waves",
    "read_health",
    "roll_out",
]


@dataclass(frozen=True)
class Release:
    kind: str  # "model" | "offers"
    version: str
    message_id: str
    payload: bytes  # the encoded downlink message


def model_release(
    model_dir: Path, key: Ed25519PrivateKey, catalog: str | None = None, version: str | None = None
) -> Release:
    """Sign every file of ``model_dir`` for stores whose model in force was built for product
    catalog ``catalog`` (default: the sha256 of the directory's catalog.csv, what a gateway's
    model component compares)."""
    files = {p.name: p.read_bytes() for p in sorted(Path(model_dir).iterdir()) if p.is_file()}
    if "model.onnx" not in files:
        raise ValueError(f"{model_dir} has no model.onnx: not a model directory")
    if catalog is None:
        if "catalog.csv" not in files:
            raise ValueError(f"{model_dir} has no catalog.csv: pass --catalog")
        catalog = hashlib.sha256(files["catalog.csv"]).hexdigest()
    if version is None:
        version = str(json.loads(files.get("manifest.json", b"{}")).get("version") or "")
        if not version:
            raise ValueError(f"{model_dir}/manifest.json names no version: pass --version")
    manifest = {"model": "recommender", "version": version, "catalog": catalog,
                "files": {n: {"sha256": hashlib.sha256(c).hexdigest(), "size": len(c)}
                          for n, c in files.items()}}  # fmt: skip
    data, signature = sign_manifest(key, manifest)
    message_id = f"model-{version}"
    return Release("model", version, message_id,
                   encode_downlink(ModelUpdate(message_id, data, signature, files)))  # fmt: skip


def offers_release(path: Path, key: Ed25519PrivateKey) -> Release:
    """An offers file, signed; its version is its top-level ``version`` (else its sha256), as
    the store's :meth:`sync.downlink.OffersFile.version` reads it."""
    data = Path(path).read_bytes()
    try:
        version = tomllib.loads(data.decode("utf-8")).get("version")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path} is not a TOML offers file: {exc}") from None
    if not isinstance(version, str) or not version:
        version = hashlib.sha256(data).hexdigest()
    message_id = f"offers-{version}"[:128]
    message = OfferCatalog(message_id, data, sign_offers(key, data))
    return Release("offers", version, message_id, encode_downlink(message))


class ReleaseStore:
    """``<fleet>/releases/<kind>/``: every release sent, and which one the fleet runs."""

    def __init__(self, fleet: Path) -> None:
        self.root = Path(fleet) / "releases"

    def save(self, release: Release) -> None:
        directory = self.root / release.kind
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / f"{release.version}.msg", release.payload)
        _atomic_write(directory / f"{release.version}.id", release.message_id.encode())

    def load(self, kind: str, version: str) -> Release:
        directory = self.root / kind
        return Release(kind, version, (directory / f"{version}.id").read_text(),
                       (directory / f"{version}.msg").read_bytes())  # fmt: skip

    def current(self, kind: str) -> Release | None:
        pointer = self.root / kind / "current"
        return self.load(kind, pointer.read_text()) if pointer.exists() else None

    def set_current(self, release: Release) -> None:
        _atomic_write(self.root / release.kind / "current", release.version.encode())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def plan_waves(stores: Sequence[str], canaries: int = 2, fraction: float = 0.10) -> list[list[str]]:
    ordered = sorted(set(stores))
    first = ordered[:canaries]
    second_size = max(1, math.ceil(fraction * len(ordered)))
    second = ordered[canaries : canaries + second_size]
    rest = ordered[canaries + second_size :]
    return [w for w in (first, second, rest) if w]


async def read_health(js: JetStreamContext, stores: Sequence[str]) -> dict[str, tuple[int, StoreHealth]]:
    """Latest report per store that has one: (stream sequence, report)."""
    out: dict[str, tuple[int, StoreHealth]] = {}
    for store in stores:
        try:
            msg = await js.get_last_msg(STATUS_STREAM, status_subject(store))
        except nats.js.errors.NotFoundError:
            continue
        try:
            out[store] = (int(msg.seq or 0), parse_health(msg.data or b"", status_subject(store)))
        except ValueError:
            continue  # an unparseable report counts as none
    return out


@dataclass
class RolloutResult:
    release: str
    status: str  # "complete" | "halted"
    waves: list[list[str]]
    waves_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    rolled_back: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HealthRule:
    max_error_rate: float = 0.01
    latency_factor: float = 1.5
    latency_slack_ms: float = 5.0

    def judge(self, release: Release, before: tuple[int, StoreHealth] | None,
              now: tuple[int, StoreHealth] | None) -> str | None:  # fmt: skip
        """ "healthy", a failure reason, or None while undecided."""
        if now is None or (before is not None and now[0] <= before[0]):
            return None
        report = now[1]
        if report.refused_ref == release.message_id:
            return f"refused: {report.refused_detail or ''}"[:300]
        running = report.model if release.kind == "model" else report.offers
        if running != release.version:
            return None
        base = before[1] if before is not None else StoreHealth(report.store_id, 0.0)
        decisions = report.decisions - base.decisions if report.decisions >= base.decisions else report.decisions
        if decisions <= 0:
            return None
        if report.errors is not None:
            base_errors = base.errors or 0
            errors = report.errors - base_errors if report.errors >= base_errors else report.errors
            if errors / decisions > self.max_error_rate:
                return f"error rate {errors}/{decisions} above {self.max_error_rate:.1%}"
        if report.latency_p99_ms is not None and base.latency_p99_ms is not None:
            ceiling = base.latency_p99_ms * self.latency_factor + self.latency_slack_ms
            if report.latency_p99_ms > ceiling:
                return f"p99 {report.latency_p99_ms:.1f} ms above {ceiling:.1f} ms"
        return "healthy"


async def roll_out(
    js: JetStreamContext,
    release: Release,
    stores: Sequence[str],
    releases: ReleaseStore,
    *,
    canaries: int = 2,
    fraction: float = 0.10,
    wave_timeout_s: float = 600.0,
    poll_s: float = 2.0,
    rule: HealthRule = HealthRule(),
    on_progress: Callable[[str], None] = lambda line: None,
) -> RolloutResult:
    previous = releases.current(release.kind)
    releases.save(release)
    waves = plan_waves(stores, canaries, fraction)
    result = RolloutResult(release.message_id, "complete", waves)
    baseline = await read_health(js, stores)
    sent: list[str] = []
    for number, wave in enumerate(waves, 1):
        sent += wave
        for store in wave:
            await js.publish(downlink_subject(store), release.payload,
                             headers={"Nats-Msg-Id": f"{release.message_id}-{store}"})  # fmt: skip
        on_progress(f"wave {number}/{len(waves)}: {len(wave)} stores")
        verdicts: dict[str, str] = {}
        deadline = time.monotonic() + wave_timeout_s
        while len(verdicts) < len(wave) and time.monotonic() < deadline:
            now = await read_health(js, [s for s in wave if s not in verdicts])
            for store in wave:
                if store not in verdicts and (v := rule.judge(release, baseline.get(store), now.get(store))):
                    verdicts[store] = v
            if any(v != "healthy" for v in verdicts.values()):
                break
            if len(verdicts) < len(wave):
                await asyncio.sleep(poll_s)
        result.failed = {s: v for s, v in verdicts.items() if v != "healthy"}
        result.failed |= {s: "no healthy report in time" for s in wave if s not in verdicts
                          and not result.failed}  # fmt: skip
        if result.failed:
            result.status = "halted"
            # everyone sent the release may run it (healthy or not) except who refused it
            back = [s for s in sent if not result.failed.get(s, "").startswith("refused")]
            result.rolled_back = await _roll_back(js, previous, release, back)
            on_progress(f"halted at wave {number}: {result.failed}; rolled back {result.rolled_back}")
            return result
        result.waves_done = number
    releases.set_current(release)
    return result


async def _roll_back(js: JetStreamContext, previous: Release | None, failed: Release,
                     stores: list[str]) -> list[str]:  # fmt: skip
    if previous is None:
        return []
    for store in stores:
        await js.publish(downlink_subject(store), previous.payload,
                         headers={"Nats-Msg-Id": f"{previous.message_id}-back-{failed.message_id}-{store}"})  # fmt: skip
    return list(stores)
