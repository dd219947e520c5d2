"""Model rollouts in waves over the real backbone, into real recommenders at each store.

Twelve stores, each with its own identity, its real downlink (signature, catalog and digest
checks, unpacking) swapping into a real :class:`models.runtime.ModelHolder` (load + smoke
test; a failed one keeps the old model), serving real recommendations and reporting its health
on ``cdp.status.{id}``. The centre rolls out with :func:`sync.rollout.roll_out`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from pathlib import Path

import nats.errors
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from natsservers import running_nats

from edge.journal import Journal
from models import DEFAULT_MODEL_DIR
from models.runtime import ModelHolder
from sync import MIGRATIONS
from sync.cli import add_commands
from sync.config import DownlinkConfig
from sync.downlink import Downlink, DownlinkHandlers, OffersFile
from sync.errors import TransientSinkError
from sync.fleet_status import fleet_status
from sync.health import StoreHealth, encode_health, parse_health, status_subject
from sync.identities import FleetIdentities
from sync.metrics import SyncMetrics
from sync.nats_sink import connect
from sync.rollout import HealthRule, Release, ReleaseStore, model_release, plan_waves, roll_out
from sync.tables import downlink_log

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
STORES = [f"r{i:02d}" for i in range(12)]
# the stores' latency is measured on a shared, loaded test machine: the rollouts here judge it
# loosely (the latency and error-rate checks themselves are the health-rule test below)
LOOSE = HealthRule(latency_factor=20.0, latency_slack_ms=100.0)
BASKET = ["SKU00000", "SKU00001"]


class SimStore:
    """A store's downlink + model runtime + health reporter, without the rest of the gateway."""

    def __init__(self, store_id: str, fleet: FleetIdentities, urls: list[str], directory: Path) -> None:
        self.id, self.urls, self.seed = store_id, urls, str(fleet.store_seed(store_id))
        directory.mkdir()
        self.journal = Journal(directory / "j.db", synchronous="normal", migrations=MIGRATIONS)
        self.holder = ModelHolder(DEFAULT_MODEL_DIR)
        self.version = "factory"
        self.decisions = self.errors = 0
        self.latencies: list[float] = []
        self.link_errors: list[str] = []
        self.offers = offers = OffersFile(directory / "offers.toml")
        offers.install(b'version = "cat-1"\n')
        handlers = DownlinkHandlers(lambda u, p, s: None, lambda u, r: None, offers.install, self.swap, offers.version)
        config = DownlinkConfig(enabled=True, servers=urls, credentials=self.seed, model_public_key=PUBLIC)
        self.downlink = Downlink(self.journal, config, handlers, store_id, directory, SyncMetrics())

    def swap(self, directory: Path) -> None:
        self.holder.swap(directory)  # raises (and keeps the old model) on a failed smoke test
        self.version = directory.name

    def serve(self, n: int = 5) -> None:
        for _ in range(n):
            started = time.perf_counter()
            try:
                assert self.holder.current.recommend(BASKET, k=5)
            except Exception:
                self.errors += 1
            self.decisions += 1
            self.latencies.append((time.perf_counter() - started) * 1000)

    def health(self) -> StoreHealth:
        refused = [r for r in downlink_log(self.journal) if r["outcome"] == "refused"]
        recent = sorted(self.latencies[-200:])
        p99 = recent[int(0.99 * (len(recent) - 1))] if recent else None
        return StoreHealth(
            self.id,
            time.time(),
            self.version,
            self.offers.version(),
            self.decisions,
            self.errors,
            p99,
            0,
            refused[0]["ref"] if refused else None,
            refused[0]["detail"] if refused else None,
        )

    async def tick(self, nc) -> None:
        try:
            self.serve()
            await nc.jetstream().publish(status_subject(self.id), encode_health(self.health()))
        except (TransientSinkError, TimeoutError, nats.errors.Error) as exc:  # retried next tick,
            self.link_errors.append(type(exc).__name__)  # as the gateway's reconnect loop does


async def run_stores(stores: list[SimStore], stop: asyncio.Event) -> None:
    """Each store's downlink loop (the gateway's own) plus serving and reporting every 50 ms."""
    connections = [await connect(s.urls, s.seed, store_id=s.id) for s in stores]
    loops = [asyncio.create_task(s.downlink.run()) for s in stores]
    try:
        while not stop.is_set():
            await asyncio.gather(*(s.tick(nc) for s, nc in zip(stores, connections, strict=True)))
            await asyncio.sleep(0.05)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        for nc in connections:
            await nc.close()


def bad_release(directory: Path, version: str) -> Release:
    """Signed by the centre, but the model is damaged: the stores' smoke test fails."""
    directory.mkdir()
    for name in ("model.onnx", "manifest.json", "catalog.csv", "history.json"):
        data = (DEFAULT_MODEL_DIR / name).read_bytes()
        (directory / name).write_bytes(data[: len(data) // 2] if name == "model.onnx" else data)
    return model_release(directory, KEY, "cat-1", version)


@pytest.mark.integration
def test_a_failing_canary_halts_the_rollout_and_a_good_one_reaches_every_store(tmp_path):
    fleet = FleetIdentities(tmp_path / "fleet")
    fleet.add(STORES)

    with running_nats(tmp_path / "hub", 1, fleet=fleet, stores=STORES) as hub:
        stores = [SimStore(s, fleet, hub.urls, tmp_path / s) for s in STORES]
        releases = ReleaseStore(fleet.root)
        good = model_release(DEFAULT_MODEL_DIR, KEY, "cat-1", "2026.12.01-1")
        bad = bad_release(tmp_path / "bad", "2026.12.02-1")
        lines: list[str] = []

        async def go():
            stop = asyncio.Event()
            sims = asyncio.create_task(run_stores(stores, stop))
            nc = await connect(hub.urls, hub.central_credentials, name="centre")
            js = nc.jetstream(timeout=10)
            try:
                first = await roll_out(js, good, STORES, releases, wave_timeout_s=30, poll_s=0.2,
                                       rule=LOOSE, on_progress=lines.append)  # fmt: skip
                versions_after_good = {s.id: s.version for s in stores}
                second = await roll_out(js, bad, STORES, releases, wave_timeout_s=30, poll_s=0.2,
                                        rule=LOOSE, on_progress=lines.append)  # fmt: skip
                await asyncio.sleep(1.0)  # anything (wrongly) sent to later waves would land now
                bad_outcome = {s.id: s.version for s in stores}
                # offers through the command line, then the fleet as `edge central status` shows it
                offers = tmp_path / "offers.toml"
                offers.write_text('version = "cat-2"\n[[offers]]\nid = "o1"\n')
                toml = tmp_path / "central.toml"
                toml.write_text(f'[central]\nservers = ["{hub.url}"]\ncredentials = "{fleet.central_seed}"\n')
                parser = argparse.ArgumentParser(prog="edge")
                add_commands(parser.add_subparsers(dest="command"))
                pem = tmp_path / "centre.pem"
                pem.write_bytes(KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
                args = parser.parse_args(["central", "publish-offers", str(offers), "--fleet", str(fleet.root),
                                          "--signing-key", str(pem), "--config", str(toml),
                                          "--wave-timeout", "30", "--latency-factor", "20"])  # fmt: skip
                code = await asyncio.to_thread(args.func, args)
                status = await fleet_status(hub.central_config(), STORES)
                return first, versions_after_good, second, bad_outcome, code, status
            finally:
                stop.set()
                await sims
                await nc.close()

        first, after_good, second, after_bad, offers_code, status = asyncio.run(go())
    print("link errors retried:", sum(len(s.link_errors) for s in stores))
    assert first.status == "complete", first
    assert first.waves == plan_waves(STORES) and first.waves_done == 3
    assert [len(w) for w in first.waves] == [2, 2, 8]
    assert after_good == {s: "2026.12.01-1" for s in STORES}, "the good rollout reached every store"
    assert second.status == "halted" and second.waves_done == 0
    # the first canary to refuse halts the wave at once
    assert second.failed and set(second.failed) <= {"r00", "r01"}
    assert all("swap_failed" in v for v in second.failed.values())
    assert after_bad == after_good, "canaries refused (their runtime kept the old model)"
    for store in stores:
        # no later wave got the bad release; every store still serves
        assert store.holder.current.recommend(BASKET, k=5)
        got_bad = any(r["ref"] == bad.message_id for r in downlink_log(store.journal))
        assert got_bad == (store.id in ("r00", "r01")), store.id
        store.journal.close()
    assert ReleaseStore(fleet.root).current("model").version == "2026.12.01-1"
    assert any(line.startswith("halted at wave 1") for line in lines)
    assert offers_code == 0 and ReleaseStore(fleet.root).current("offers").version == "cat-2"
    assert status["silent"] == [] and status["central_backlog"] == 0
    assert {(r["store"], r["model"], r["offers"]) for r in status["stores"]} == {
        (s, "2026.12.01-1", "cat-2") for s in STORES
    }
    assert all(r["last_report_age_s"] < 30 and r["decisions"] > 0 for r in status["stores"])


def test_health_rule_needs_a_newer_report_of_the_new_version_with_decisions_and_no_regression():
    rule = HealthRule(max_error_rate=0.01, latency_factor=1.5, latency_slack_ms=1.0)
    release = Release("model", "v2", "model-v2", b"")
    before = (10, StoreHealth("s", 1.0, "v1", None, 100, 0, 4.0))

    def report(seq: int, **kw: object) -> tuple[int, StoreHealth]:
        values = {"store_id": "s", "at": 2.0, "model": "v2", "decisions": 200, "errors": 0, "latency_p99_ms": 5.0}
        return seq, StoreHealth(**(values | kw))  # type: ignore[arg-type]

    assert rule.judge(release, before, None) is None
    assert rule.judge(release, before, report(10)) is None, "not newer than the baseline"
    assert rule.judge(release, before, report(11, model="v1")) is None, "still the old version"
    assert rule.judge(release, before, report(11, decisions=100)) is None, "no decision since"
    assert rule.judge(release, before, report(11)) == "healthy"
    assert rule.judge(release, before, report(11, errors=2)).startswith("error rate 2/100")
    assert rule.judge(release, before, report(11, latency_p99_ms=7.5)).startswith("p99 7.5 ms")
    refused = report(11, model="v1", refused_ref="model-v2", refused_detail="swap_failed: smoke")
    assert rule.judge(release, before, refused) == "refused: swap_failed: smoke"
    assert rule.judge(release, None, report(1, decisions=3)) == "healthy", "a store new to the fleet"


def test_health_reports_round_trip_and_garbage_is_a_value_error():
    health = StoreHealth("s1", 12.5, "v1", "cat-1", 3, 1, 2.5, 7, "model-v2", "swap_failed")
    assert parse_health(encode_health(health), "cdp.status.s1") == health
    for data in (b"", b"[]", b'{"storeId": "s1"}', b'{"storeId": "s1", "at": 1, "decisions": -1}',
                 b'{"storeId": 5, "at": 1}', b'{"storeId": "s1", "at": 1, "refused": 3}'):  # fmt: skip
        with pytest.raises(ValueError):
            parse_health(data)
    with pytest.raises(ValueError, match="subject"):
        parse_health(encode_health(health), "cdp.status.s2")
