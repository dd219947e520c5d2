from __future__ import annotations

import asyncio
import base64
import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from devices_helpers import FIXTURES, RecordingBus, fuzz_cases, fuzz_seed

from devices.camera.adapter import CameraPipeline
from devices.camera.audience import AudienceCounter
from devices.camera.base45 import b45decode, b45encode
from devices.camera.protocol import SignInToken, encode_compact_token, encode_token, parse_token
from devices.camera.signin import NonceCache, TokenVerifier, load_public_key
from devices.errors import ParseError, TokenRejected
from devices.outlet import EventOutlet
from devices.sim.frames import Scene

PUBLIC_KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
NOW = 1_790_000_060.0


def _recorded() -> dict[str, str]:
    lines = (FIXTURES / "camera" / "signin_tokens.txt").read_text().splitlines()
    tokens = [line for line in lines if line and not line.startswith("#")]
    return dict(zip(["valid", "long_lived", "forged"], tokens, strict=True))


def _verifier(clock: list[float]) -> TokenVerifier:
    return TokenVerifier(load_public_key(PUBLIC_KEY), lambda: clock[0], max_lifetime_s=300)


def test_recorded_token_parses_to_the_whole_object() -> None:
    token = parse_token(_recorded()["valid"])
    head = _recorded()["valid"].rsplit(".", 1)[0].encode()
    assert token == SignInToken("app-7f3e2a", 1_790_000_000, 1_790_000_120, "Zm9vYmFyYmF6MTIz", head, token.signature)
    assert len(token.signature) == 64 and "app-7f3e2a" not in repr(token)


def test_verify_accepts_valid_and_refuses_forged_expired_long_lived_and_replayed() -> None:
    clock = [NOW]
    verifier = _verifier(clock)
    tokens = _recorded()
    assert verifier.verify(tokens["valid"]).app_id == "app-7f3e2a"
    for name, reason in (("valid", "replayed"), ("forged", "bad_signature"), ("long_lived", "too_long_lived")):
        with pytest.raises(TokenRejected) as caught:
            verifier.verify(tokens[name])
        assert caught.value.reason == reason
    expired = _verifier([1_790_000_120 + 31.0])
    with pytest.raises(TokenRejected, match="expired"):
        expired.verify(tokens["valid"])
    with pytest.raises(TokenRejected, match="malformed"):
        verifier.verify("https://example.com/not-a-token")


def test_nonce_cache_is_bounded_and_evicts_expired_first() -> None:
    cache = NonceCache(max_entries=3)
    assert cache.add("a", 10, 0) and cache.add("b", 100, 0) and cache.add("c", 100, 0)
    assert not cache.add("b", 100, 0)
    assert cache.add("d", 100, 50)  # evicts the expired "a"
    assert cache.evicted_live == 0
    assert cache.add("e", 100, 50) and cache.evicted_live == 1


@pytest.mark.parametrize("text", ["EQ1.e30.AAAA", "EQ1..", "EQ2.a.b", "EQ1.!!.AA", "x" * 600])
def test_malformed_tokens(text: str) -> None:
    with pytest.raises(ParseError):
        parse_token(text)


def test_fuzz_token_parser_only_raises_parse_error() -> None:
    seeds = list(_recorded().values())
    rng = random.Random(fuzz_seed())
    alphabet = 'EQ1.{}":,abcXYZ-_=+/0123456789 \u00e9\u2603'
    for _ in range(fuzz_cases()):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(text) + 1)
            op = rng.randrange(3)
            if op == 0 and text:
                text[min(i, len(text) - 1)] = rng.choice(alphabet)
            elif op == 1:
                del text[i : i + rng.randint(1, 20)]
            else:
                text[i:i] = rng.choices(alphabet, k=rng.randint(1, 5))
        try:
            parse_token("".join(text))
        except ParseError:
            pass


def _pipeline(bus: RecordingBus, clock: list[float], *, verifier: bool = True, interval: float = 10.0):
    outlet = EventOutlet(bus)
    pipeline = CameraPipeline(
        store_id="s1", device_id="cam-1", outlet=outlet, clock=lambda: clock[0],
        verifier=_verifier(clock) if verifier else None, counter=AudienceCounter(), report_interval_s=interval,
    )  # fmt: skip
    return pipeline, outlet


@pytest.mark.parametrize("compact", [True, False], ids=["EQ2", "EQ1"])
def test_qr_sign_in_from_generated_frames_writes_no_file(
    tmp_path: Path, bus: RecordingBus, monkeypatch: pytest.MonkeyPatch, compact: bool
) -> None:
    workdir, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    clock = [NOW]
    outlet = EventOutlet(bus)
    pipeline = CameraPipeline(
        store_id="s1", device_id="cam-1", outlet=outlet, clock=lambda: clock[0],
        verifier=TokenVerifier(load_public_key(pub), lambda: clock[0]), counter=None,
    )  # fmt: skip

    def token(app_id: str, issued: int, expires: int, nonce: str, sign: object) -> str:
        if compact:
            return encode_compact_token(app_id, issued, expires, sign)  # type: ignore[arg-type]
        return encode_token(app_id, issued, expires, nonce, sign)

    good = token("app-42", int(NOW), int(NOW) + 120, "bm9uY2UtMDAwMQ", key.sign)
    other = token("app-43", int(NOW), int(NOW) + 120, "bm9uY2UtMDAwMg", key.sign)
    expired = token("app-44", int(NOW) - 600, int(NOW) - 480, "bm9uY2UtMDAwMw", key.sign)
    forged = token("app-45", int(NOW), int(NOW) + 120, "bm9uY2UtMDAwNA", Ed25519PrivateKey.generate().sign)
    scene = Scene(3)
    before = sorted(p.name for p in tmp_path.rglob("*"))

    async def main() -> None:
        for text in (good, good, None, expired, forged, other, good):  # held up twice, then replayed
            await pipeline.on_frame(scene.frame(1, text))
        await outlet.drain()

    asyncio.run(main())
    pipeline.close()
    identified = bus.named("Customer Identified")
    assert [e["properties"] for e in identified] == [
        {"method": "qr", "identifiers": {"appId": "app-42"}},
        {"method": "qr", "identifiers": {"appId": "app-43"}},
    ]
    assert bus.batches[0][0].kind == "camera"
    assert pipeline.refused == {"expired": 1, "bad_signature": 1, "replayed": 1}
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("people", [0, 1, 2, 3, 4])
def test_audience_counts_generated_people(bus: RecordingBus, people: int) -> None:
    clock = [NOW]
    pipeline, outlet = _pipeline(bus, clock, verifier=False, interval=10.0)
    scene = Scene(people)

    async def main() -> None:
        for i in range(50):  # 25 s at 2 fps: 5 s of empty floor, then people walking
            clock[0] = NOW + i * 0.5
            await pipeline.on_frame(scene.frame(0 if i < 10 else people))
        await outlet.drain()

    asyncio.run(main())
    pipeline.close()
    samples = [e["properties"] for e in bus.named("Audience Measured")]
    assert len(samples) == 2  # one per 10 s interval after the first frame
    assert samples[-1]["count"] == people  # within tolerance 0 on these frames
    if people:
        assert samples[-1]["dwellSeconds"] == pytest.approx(14.5, abs=2.0)  # in view since t=5 s
    else:
        assert samples[-1]["dwellSeconds"] == 0.0


@pytest.mark.wallclock
def test_audience_counter_is_fast_enough_for_two_fps() -> None:
    scene, counter = Scene(1), AudienceCounter()
    frames = [scene.frame(2) for _ in range(20)]
    started = time.perf_counter()
    for i, frame in enumerate(frames):
        counter.process(frame, i * 0.5)
    assert (time.perf_counter() - started) / len(frames) < 0.05


def test_video_source_reads_a_file_and_reports_its_end(tmp_path: Path) -> None:
    import cv2

    from devices.camera.capture import VideoSource
    from devices.errors import DeviceUnavailable

    path = tmp_path / "clip.avi"  # the test writes a clip; the camera path only reads it
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 360))
    scene = Scene(5)
    for _ in range(6):
        writer.write(scene.frame(1))
    writer.release()

    async def main() -> int:
        count = 0
        async with VideoSource(str(path), fps=200.0) as source:
            with pytest.raises(DeviceUnavailable, match="stopped delivering"):
                async for frame in source.frames():
                    assert frame.shape == (360, 640, 3)
                    count += 1
        return count

    assert asyncio.run(main()) == 6

    async def missing() -> None:
        async with VideoSource("rtsp://user:secret@127.0.0.1:9/none", fps=2.0):
            pass

    with pytest.raises(DeviceUnavailable) as caught:
        asyncio.run(missing())
    assert "secret" not in str(caught.value)  # stream credentials never reach a message


# RFC 9285 §4.3 examples
@pytest.mark.parametrize(("raw", "text"), [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
                                           (b"ietf!", "QED8WEX0")])  # fmt: skip
def test_base45_rfc_9285_examples(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text and b45decode(text) == raw


@pytest.mark.parametrize("text", ["GGW", "ZZZ", "A", "a1", "::::"])
def test_base45_refuses_what_rfc_9285_refuses(text: str) -> None:
    with pytest.raises(ParseError):
        b45decode(text)


def test_compact_token_verify_accepts_once_and_refuses_forged_expired_long_lived() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    clock = [NOW]
    verifier = TokenVerifier(key.public_key(), lambda: clock[0], max_lifetime_s=300)
    uuid_id, text_id = "3f2b8c1e-9a4d-4e7f-b6c5-2d1e0f9a8b7c", "app-7f3e2a"
    good = encode_compact_token(uuid_id, int(NOW), int(NOW) + 120, key.sign)
    other = encode_compact_token(text_id, int(NOW), int(NOW) + 120, key.sign)
    assert len(good) == 135 and len(other) == 127
    assert verifier.verify(good).app_id == uuid_id and verifier.verify(other).app_id == text_id
    forged = encode_compact_token(uuid_id, int(NOW) + 1, int(NOW) + 121, Ed25519PrivateKey.generate().sign)
    cases = {
        "replayed": good,
        "bad_signature": forged,
        "too_long_lived": encode_compact_token(uuid_id, int(NOW), int(NOW) + 3600, key.sign),
        "expired": encode_compact_token(uuid_id, int(NOW) - 600, int(NOW) - 480, key.sign),
        "malformed": good[:-3],
    }
    for reason, token in cases.items():
        with pytest.raises(TokenRejected) as caught:
            verifier.verify(token)
        assert caught.value.reason == reason
    assert "3f2b8c1e" not in repr(parse_token(good))


def test_fuzz_compact_token_parser_only_raises_parse_error() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    seed = encode_compact_token("app-7f3e2a", 1_790_000_000, 1_790_000_120, key.sign)
    rng = random.Random(fuzz_seed())
    for _ in range(fuzz_cases(800)):
        record = bytearray(b45decode(seed[4:]))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(record) + 1)
            choice = rng.randrange(3)
            if choice == 0 and record:
                record[min(i, len(record) - 1)] = rng.randrange(256)
            elif choice == 1:
                del record[i : i + rng.randint(1, 8)]
            else:
                record[i:i] = rng.randbytes(rng.randint(1, 4))
        for text in ("EQ2:" + b45encode(bytes(record)), "EQ2:" + seed[4 : rng.randrange(4, len(seed))]):
            try:
                parse_token(text)
            except ParseError:
                pass
