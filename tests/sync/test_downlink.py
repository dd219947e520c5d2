"""Downlink: parsing untrusted messages, applying them, signed model updates, real JetStream."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from helpers import token
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.journal import Journal
from sync import MIGRATIONS
from sync.config import DownlinkConfig
from sync.downlink import Downlink, DownlinkHandlers, OffersFile
from sync.errors import DownlinkRefused, TransientSinkError
from sync.manifest import sign_manifest, sign_offers
from sync.messages import (
    ConsentChange,
    ErasureRequest,
    ModelUpdate,
    OfferCatalog,
    encode_downlink,
    parse_downlink,
)
from sync.metrics import SyncMetrics
from sync.tables import downlink_log

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
OFFERS_V1 = b'version = "cat-1"\n[[offers]]\nid = "o1"\n'


@dataclass
class Recorder:
    offers: OffersFile
    calls: list[tuple[str, object]] = field(default_factory=list)

    def handlers(self) -> DownlinkHandlers:
        return DownlinkHandlers(
            apply_consent=lambda u, p, s: self.calls.append(("consent", (u, dict(p), s))),
            erase=lambda u, r: self.calls.append(("erase", (u, r))),
            install_offers=lambda b: (self.offers.install(b), self.calls.append(("offers", b)))[1],
            swap_model=lambda d: self.calls.append(("swap", d)),
            catalog_version=self.offers.version,
        )


@pytest.fixture
def setup(tmp_path):
    with Journal(tmp_path / "j.db", synchronous="normal", migrations=MIGRATIONS) as journal:
        offers = OffersFile(tmp_path / "offers.toml")
        offers.install(OFFERS_V1)
        rec = Recorder(offers)
        down = Downlink(journal, DownlinkConfig(model_public_key=PUBLIC), rec.handlers(), "s1",
                        tmp_path / "state", SyncMetrics())  # fmt: skip
        yield down, rec, journal


def model_update(catalog="cat-1", key=KEY, tamper=False, version="2026.11.22") -> ModelUpdate:
    files = {"model.onnx": b"\x08\x01onnx-bytes", "items.csv": b"sku,category\nsku-1,c\n"}
    manifest = {"model": "recommender", "version": version, "catalog": catalog,
                "files": {n: {"sha256": hashlib.sha256(c).hexdigest(), "size": len(c)}
                          for n, c in files.items()}}  # fmt: skip
    data, signature = sign_manifest(key, manifest)
    if tamper:
        files = {**files, "model.onnx": b"\x08\x01evil-bytes"}
    return ModelUpdate("m1", data, signature, files)


def test_consent_erasure_and_offers_are_applied_in_order(setup):
    down, rec, journal = setup
    assert down.apply(encode_downlink(ConsentChange("c1", token(1), {"cdp_sync": False}, "cdp"))) == "applied"
    assert down.apply(encode_downlink(ErasureRequest("r1", token(2)))) == "applied"
    new = b'version = "cat-2"\n'
    assert down.apply(encode_downlink(OfferCatalog("o2", new, sign_offers(KEY, new)))) == "applied"
    assert [c[0] for c in rec.calls] == ["consent", "erase", "offers"]
    assert rec.calls[0][1] == (token(1), {"cdp_sync": False}, "cdp")
    assert rec.calls[1][1] == (token(2), "r1")
    assert rec.offers.path.read_bytes() == new and rec.offers.version() == "cat-2"
    assert [row["outcome"] for row in downlink_log(journal)] == ["applied"] * 3


def test_a_good_model_swaps_in(setup, tmp_path):
    down, rec, _ = setup
    assert down.apply(encode_downlink(model_update())) == "applied"
    ((kind, directory),) = rec.calls
    assert kind == "swap" and Path(directory).name == "2026.11.22"
    assert (Path(directory) / "model.onnx").read_bytes() == b"\x08\x01onnx-bytes"
    assert (Path(directory) / "signed-update.sig").exists()


@pytest.mark.parametrize(
    "update,reason",
    [
        (lambda: model_update(key=Ed25519PrivateKey.generate()), "bad_signature"),
        (lambda: model_update(catalog="cat-0"), "wrong_catalog"),
        (lambda: model_update(tamper=True), "wrong_files"),
        (lambda: model_update(version="../../etc"), "bad_manifest"),
    ],
)
def test_a_tampered_model_is_refused_and_nothing_is_swapped(setup, update, reason):
    down, rec, journal = setup
    assert down.apply(encode_downlink(update())) == "refused"
    assert rec.calls == []
    assert downlink_log(journal)[0]["detail"].startswith(reason)
    assert not list(down.model_root.glob("*"))  # nothing unpacked, no staging left behind


def test_a_signature_over_other_bytes_is_refused(setup):
    down, rec, _ = setup
    good = model_update()
    forged = ModelUpdate("m2", good.manifest.replace(b"cat-1", b"cat-9"), good.signature, good.files)
    assert down.apply(encode_downlink(forged)) == "refused" and rec.calls == []


def test_no_public_key_means_no_models(tmp_path):
    with Journal(tmp_path / "j.db", migrations=MIGRATIONS) as journal:
        rec = Recorder(OffersFile(tmp_path / "o.toml"))
        down = Downlink(journal, DownlinkConfig(), rec.handlers(), "s1", tmp_path, SyncMetrics())
        assert down.apply(encode_downlink(model_update())) == "refused"
        assert downlink_log(journal)[0]["detail"].startswith("no_public_key")


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'{"kind":"consent"}', b'{"kind":"erasure","requestId":"r","userId":"bob@example.com"}',
     b'{"kind":"offers","id":"o","catalog":{}}', b'{"kind":"model","id":"m","manifest":"!!","files":{}}',
     b'{"kind":"nuke"}', b"\xff\xfe", b"[" * 100_000],
)  # fmt: skip
def test_malformed_messages_are_refused(payload):
    with pytest.raises(DownlinkRefused):
        parse_downlink(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["consent", "erasure", "offers", "model", "other"]),
    extra=st.dictionaries(
        st.sampled_from(["id", "requestId", "userId", "categoryPreferences", "source", "catalog",
                         "manifest", "signature", "files"]), json_values, max_size=6),
)  # fmt: skip
def test_fuzz_structured_messages(kind, extra):
    payload = json.dumps({"kind": kind, **extra}).encode()
    try:
        parse_downlink(payload)
    except DownlinkRefused:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_raw_bytes(payload):
    try:
        parse_downlink(payload)
    except DownlinkRefused:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_apply_never_raises_on_garbage(payload):
    with Journal(":memory:", migrations=MIGRATIONS) as journal:
        rec = Recorder(OffersFile(Path("/nonexistent/o.toml")))
        down = Downlink(journal, DownlinkConfig(model_public_key=PUBLIC), rec.handlers(), "s1",
                        Path("/nonexistent"), SyncMetrics())  # fmt: skip
        assert down.apply(payload) in ("applied", "refused")


@pytest.mark.integration
def test_central_erasure_fans_out_over_jetstream(nats_server, setup, postgres):
    from sync.central import CentralJob

    down, rec, _ = setup
    down.config = DownlinkConfig(enabled=True, servers=nats_server.urls, model_public_key=PUBLIC)
    job = CentralJob(nats_server.central_config(postgres=postgres))

    async def go():
        await job.create_schema()
        stores = await job.request_erasure(token(7), "req-1", stores=["s1", "s2"])
        assert stores == ["s1", "s2"]
        await job.request_erasure(token(7), "req-1", stores=["s1"])  # re-sent: de-duplicated
        return await down.consume_available()

    assert asyncio.run(go()) == 1
    assert rec.calls == [("erase", (token(7), "req-1"))]


def test_a_failed_swap_or_a_refusing_handler_is_not_retried(setup):
    down, rec, journal = setup

    def failing_swap(directory):
        raise RuntimeError("smoke test failed")

    def suppressed(user_id, prefs, source):
        raise ValueError("the customer was erased")

    down.handlers = DownlinkHandlers(suppressed, rec.handlers().erase, rec.handlers().install_offers,
                                     failing_swap, rec.handlers().catalog_version)  # fmt: skip
    assert down.apply(encode_downlink(model_update())) == "refused"
    assert not (down.model_root / "2026.11.22").exists()
    assert down.apply(encode_downlink(ConsentChange("c", token(1), {"cdp_sync": True}, "cdp"))) == "refused"
    assert [r["detail"].split(":")[0] for r in downlink_log(journal)] == ["handler_refused", "swap_failed"]


def test_offers_must_be_signed_by_the_centre_when_the_store_verifies(setup):
    down, rec, journal = setup
    catalog = b'version = "cat-9"\n'
    other = Ed25519PrivateKey.generate()
    for message in (OfferCatalog("u", catalog), OfferCatalog("o", catalog, sign_offers(other, catalog)),
                    OfferCatalog("t", catalog + b"# tampered\n", sign_offers(KEY, catalog)),
                    OfferCatalog("m", catalog, model_update().signature)):  # fmt: skip
        assert down.apply(encode_downlink(message)) == "refused"
    assert rec.offers.version() == "cat-1" and not [c for c in rec.calls if c[0] == "offers"]
    details = [r["detail"].split(":")[0] for r in downlink_log(journal)]
    assert details == ["bad_signature", "bad_signature", "bad_signature", "unsigned"]
    assert parse_downlink(encode_downlink(OfferCatalog("o", catalog, sign_offers(KEY, catalog)))).signature


async def run_then_cancel(down: Downlink, calls: list[int], after: int, give_up: list[bool]) -> asyncio.Task:
    """Run the downlink's loop, cancel it once ``calls`` has ``after`` entries, and return the
    task. If the cancel has not ended it within 5 s, ``give_up`` is set, on which the fakes
    raise: the loop then ends another way, not cancelled, and the test fails instead of hanging."""
    loop = asyncio.create_task(down.run(sleep=lambda _s: asyncio.sleep(0)))
    while len(calls) < after:
        await asyncio.sleep(0.01)
    loop.cancel()
    await asyncio.wait({loop}, timeout=5)
    if not loop.done():
        give_up.append(True)
        await asyncio.wait({loop}, timeout=5)
    return loop


def test_a_cancellation_a_library_swallowed_still_ends_the_reconnect_loop(setup, monkeypatch):
    """nats-py closes a failed connection inside ``except (CancelledError, TimeoutError): pass``
    (``nats.aio.client.Client._close``), and Python 3.11's ``wait_for`` can lose a cancellation
    (python/cpython#86296): the gateway's stop then reached the downlink only as a connection
    error, and its reconnect loop went on — the emulated arm64 run waited 450 s on a stop. The
    connect below does what that code does; the loop must still end when cancelled."""
    import sync.nats_sink

    down, _, _ = setup
    attempts: list[int] = []
    give_up: list[bool] = []  # without the fix the loop outlives its cancel: end it another way, then fail

    async def connect_as_nats_py_closes(*_args, **_kwargs):
        attempts.append(1)
        if give_up:
            raise RuntimeError("the loop was still retrying after it was cancelled")
        try:  # the shape of Client._close waiting for its reconnection task
            await asyncio.wait_for(asyncio.Event().wait(), 0.2)
        except (asyncio.CancelledError, TimeoutError):
            pass
        raise TransientSinkError("cannot connect to NATS ['nats://127.0.0.1:9']: NoServersError")

    monkeypatch.setattr(sync.nats_sink, "connect", connect_as_nats_py_closes)

    loop = asyncio.run(run_then_cancel(down, attempts, 1, give_up))
    assert loop.cancelled(), "the downlink's reconnect loop swallowed the cancellation and kept retrying"


def test_a_cancellation_a_fetch_lost_still_ends_the_consume_loop(setup, monkeypatch):
    """Connected, the downlink loops on ``fetch``. nats-py's fetch awaits ``next_msg``, which
    awaits a task around ``wait_for(queue.get(), timeout)``: when a message (or the timeout)
    arrives with our cancel, that task returns and the cancel is lost. The fleet-rollout test's
    stop then waited forever on a downlink that went on fetching. The fetch below loses it the
    same way; the loop must still end."""
    import nats.errors

    import sync.nats_sink

    down, _, _ = setup
    fetches: list[int] = []
    give_up: list[bool] = []

    class Sub:
        async def fetch(self, batch: int, timeout: float) -> list:
            fetches.append(1)
            if give_up:
                raise RuntimeError("the consume loop was still fetching after it was cancelled")

            async def timed_get() -> None:  # next_msg's inner task, its wait_for losing the cancel
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    pass

            await asyncio.create_task(timed_get())
            raise nats.errors.TimeoutError

    class Client:
        is_closed = False

        def jetstream(self) -> Client:
            return self

        async def pull_subscribe_bind(self, *_args: object, **_kwargs: object) -> Sub:
            return Sub()

        async def close(self) -> None:
            pass

    async def connect(*_args: object, **_kwargs: object) -> Client:
        return Client()

    monkeypatch.setattr(sync.nats_sink, "connect", connect)

    loop = asyncio.run(run_then_cancel(down, fetches, 3, give_up))
    assert loop.cancelled(), "the downlink's consume loop lost the cancellation and kept fetching"


def test_the_reconnect_loop_over_real_nats_py_ends_when_cancelled(setup):
    """The same loop through the real nats-py client, against a port where nothing listens:
    cancelled at 20 moments across connect attempts and backoffs, it ends every time."""
    from edge.broker import free_port

    down, _, _ = setup
    down.config = dataclasses.replace(down.config, servers=[f"nats://127.0.0.1:{free_port()}"])

    async def run() -> list[bool]:
        ended = []
        for i in range(20):
            loop = asyncio.create_task(down.run(sleep=lambda _s: asyncio.sleep(0.01)))
            await asyncio.sleep(0.005 * i)
            loop.cancel()
            await asyncio.wait({loop}, timeout=10)
            ended.append(loop.cancelled())
        return ended

    assert asyncio.run(run()) == [True] * 20
