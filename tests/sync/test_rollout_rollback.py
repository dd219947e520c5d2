"""A canary that already switched to the new release rolls back when its wave fails.

Real nats-server with the fleet's identities, the centre's signed releases on each store's
downlink, and each store's real apply path (:class:`sync.downlink.Downlink`: signature,
catalog and digest checks, unpacking, ``OffersFile.install``, ``ModelHolder.swap``) — the
simulated stores of ``test_rollout.py``. In both tests one canary takes the release and reports
it healthy while its wave fails because of the other canary: the rollout halts, the canary that
switched gets the previous release again, runs it, and reports healthy on it; no later wave
ever receives the release.
"""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from natsservers import running_nats
from test_rollout import KEY, LOOSE, SimStore

from models import DEFAULT_MODEL_DIR
from sync.config import DownlinkConfig
from sync.downlink import Downlink
from sync.health import StoreHealth
from sync.identities import FleetIdentities
from sync.metrics import SyncMetrics
from sync.nats_sink import connect
from sync.rollout import Release, ReleaseStore, model_release, offers_release, read_health, roll_out
from sync.tables import downlink_log


class Running:
    """One store online: its own downlink loop, serving and reporting every 50 ms, until
    :meth:`stop` (the store goes offline; its downlink consumer keeps what arrives)."""

    def __init__(self, store: SimStore) -> None:
        self.store = store
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        nc = await connect(self.store.urls, self.store.seed, store_id=self.store.id)
        loop = asyncio.create_task(self.store.downlink.run())
        try:
            while not self._stop.is_set():
                await self.store.tick(nc)
                await asyncio.sleep(0.05)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await nc.close()

    async def stop(self) -> None:
        self._stop.set()
        await self._task


async def watch(js, store: str, key: str, seen: list[str], stop: asyncio.Event) -> None:
    """The versions a store reports, in order (a change is recorded once)."""
    while not stop.is_set():
        report = (await read_health(js, [store])).get(store)
        if report is not None:
            value = getattr(report[1], key)
            if not seen or seen[-1] != value:
                seen.append(value)
        await asyncio.sleep(0.05)


async def healthy_on(js, release: Release, store: str, since: tuple[int, StoreHealth] | None,
                     timeout: float = 30.0) -> str | None:  # fmt: skip
    """The health rule's verdict on ``store`` running ``release`` after ``since``."""
    deadline = time.monotonic() + timeout
    verdict = None
    while time.monotonic() < deadline:
        verdict = LOOSE.judge(release, since, (await read_health(js, [store])).get(store))
        if verdict is not None:
            return verdict
        await asyncio.sleep(0.1)
    return verdict


def applied(store: SimStore) -> list[tuple[str, str]]:
    """(message ref, outcome) the store's downlink recorded, oldest first."""
    return [(r["ref"], r["outcome"]) for r in reversed(downlink_log(store.journal, 100))]


@pytest.mark.integration
def test_a_canary_that_switched_to_new_offers_rolls_back_when_the_other_canary_refuses(tmp_path):
    ids = ["q00", "q01", "q02", "q03"]  # waves: [q00, q01], [q02], [q03]
    fleet = FleetIdentities(tmp_path / "fleet")
    fleet.add(ids)
    with running_nats(tmp_path / "hub", 1, fleet=fleet, stores=ids) as hub:
        stores = [SimStore(s, fleet, hub.urls, tmp_path / s) for s in ids]
        # q01 was provisioned with another centre's public key: it refuses what we sign
        other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        q01 = stores[1]
        q01.downlink = Downlink(q01.journal, DownlinkConfig(enabled=True, servers=hub.urls, credentials=q01.seed,
                                model_public_key=base64.b64encode(other).decode()),
                                q01.downlink.handlers, "q01", tmp_path / "q01", SyncMetrics())  # fmt: skip
        releases = ReleaseStore(fleet.root)
        (tmp_path / "cat-1.toml").write_bytes(b'version = "cat-1"\n')
        previous = offers_release(tmp_path / "cat-1.toml", KEY)
        releases.save(previous)
        releases.set_current(previous)  # what every store was provisioned with
        (tmp_path / "cat-2.toml").write_text('version = "cat-2"\n[[offers]]\nid = "o-new"\n')
        release = offers_release(tmp_path / "cat-2.toml", KEY)
        seen: list[str] = []
        lines: list[str] = []

        async def go():
            stop = asyncio.Event()
            online = {s.id: Running(s) for s in stores if s.id != "q01"}
            nc = await connect(hub.urls, hub.central_credentials, name="centre")
            js = nc.jetstream(timeout=10)
            watcher = asyncio.create_task(watch(js, "q00", "offers", seen, stop))
            try:
                for _ in range(200):  # everyone online reporting before the rollout
                    if len(await read_health(js, list(online))) == len(online):
                        break
                    await asyncio.sleep(0.05)

                async def q01_after_q00_switched():  # q01 is slower: q00 switches first
                    while "cat-2" not in seen:
                        await asyncio.sleep(0.05)
                    online["q01"] = Running(q01)

                late = asyncio.create_task(q01_after_q00_switched())
                result = await roll_out(js, release, ids, releases, wave_timeout_s=30, poll_s=0.1,
                                        rule=LOOSE, on_progress=lines.append)  # fmt: skip
                await late
                at_halt = (await read_health(js, ["q00"])).get("q00")
                verdict = await healthy_on(js, previous, "q00", at_halt)
                await asyncio.sleep(1.0)  # anything (wrongly) sent to later waves would land now
                return result, verdict
            finally:
                stop.set()
                await watcher
                for running in online.values():
                    await running.stop()
                await nc.close()

        result, verdict = asyncio.run(go())
    print("\n".join(lines))
    assert result.status == "halted" and result.waves_done == 0
    assert list(result.failed) == ["q01"] and result.failed["q01"].startswith("refused: bad_signature")
    assert result.rolled_back == ["q00"], "the canary that took the release, not the one that refused it"
    assert seen[:3] == ["cat-1", "cat-2", "cat-1"], f"q00 reported {seen}"
    assert verdict == "healthy", "q00 reports the previous catalog with decisions and no regression"
    assert [s.offers.version() for s in stores] == ["cat-1"] * 4
    assert applied(stores[0]) == [(release.message_id, "applied"), (previous.message_id, "applied")]
    assert applied(stores[1]) == [(release.message_id, "refused")]
    assert applied(stores[2]) == applied(stores[3]) == [], "no later wave got anything"
    assert releases.current("offers") == previous
    for store in stores:
        store.journal.close()


@pytest.mark.integration
def test_a_canary_that_switched_models_rolls_back_when_its_wave_times_out(tmp_path):
    ids = ["p00", "p01", "p02", "p03"]
    fleet = FleetIdentities(tmp_path / "fleet")
    fleet.add(ids)
    with running_nats(tmp_path / "hub", 1, fleet=fleet, stores=ids) as hub:
        stores = [SimStore(s, fleet, hub.urls, tmp_path / s) for s in ids]
        releases = ReleaseStore(fleet.root)
        previous = model_release(DEFAULT_MODEL_DIR, KEY, "cat-1", "2026.12.01-1")
        # a sound, signed model: p00 loads it, passes its smoke test and serves it healthily
        release = model_release(DEFAULT_MODEL_DIR, KEY, "cat-1", "2026.12.02-1")
        seen: list[str] = []
        lines: list[str] = []
        p01 = stores[1]

        async def go():
            stop = asyncio.Event()
            nc = await connect(hub.urls, hub.central_credentials, name="centre")
            js = nc.jetstream(timeout=10)
            online = {s.id: Running(s) for s in stores}
            watcher = asyncio.create_task(watch(js, "p00", "model", seen, stop))
            try:
                first = await roll_out(js, previous, ids, releases, wave_timeout_s=30, poll_s=0.1, rule=LOOSE)
                # p01 goes offline: the second rollout's first wave cannot become healthy
                await online.pop("p01").stop()
                result = await roll_out(js, release, ids, releases, wave_timeout_s=6, poll_s=0.1,
                                        rule=LOOSE, on_progress=lines.append)  # fmt: skip
                at_halt = (await read_health(js, ["p00"])).get("p00")
                verdict = await healthy_on(js, previous, "p00", at_halt)
                # p01 comes back: its downlink still holds the release and then the roll-back
                online["p01"] = Running(p01)
                for _ in range(300):
                    if p01.version == previous.version and len(applied(p01)) >= 3:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # anything (wrongly) sent to later waves would land now
                return first, result, verdict
            finally:
                stop.set()
                await watcher
                for running in online.values():
                    await running.stop()
                await nc.close()

        first, result, verdict = asyncio.run(go())
    print("\n".join(lines))
    assert first.status == "complete"
    assert result.status == "halted" and result.waves_done == 0
    assert result.failed == {"p01": "no healthy report in time"}
    assert result.rolled_back == ["p00", "p01"]
    assert seen[-3:] == ["2026.12.01-1", "2026.12.02-1", "2026.12.01-1"], f"p00 reported {seen}"
    assert verdict == "healthy", "p00 reports the previous model with decisions and no regression"
    p00 = stores[0]
    assert p00.version == p01.version == "2026.12.01-1"
    assert p00.holder.current.model_dir.name == p01.holder.current.model_dir.name == "2026.12.01-1"
    assert p00.holder.current.recommend(["SKU00000"], k=5), "p00 serves the previous model"
    assert applied(p00) == [(previous.message_id, "applied"), (release.message_id, "applied"),
                            (previous.message_id, "applied")]  # fmt: skip
    assert applied(p01) == applied(p00), "back online, p01 took the release and then the roll-back"
    for store in stores[2:]:
        assert applied(store) == [(previous.message_id, "applied")], "no later wave got the release"
        assert store.version == "2026.12.01-1"
        assert store.holder.current.recommend(["SKU00000"], k=5)
    assert releases.current("model") == previous
    for store in stores:
        store.journal.close()
