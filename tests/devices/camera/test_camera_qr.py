"""Sign-in QR codes on a degradation matrix: which decoder reads what, and the gateway's reader.

Codes are made by two third-party encoders, ``qrcode`` and ``segno`` (PyPI), from a real compact
sign-in token (``EQ2:``, 135 characters, QR version 5-L); each module matrix is drawn at a given
width into a 640×480 frame of textured floor, then degraded: size (symbol width without the
quiet zone), Gaussian blur σ, rotation, perspective, contrast and JPEG compression with sensor
noise. Decoders: OpenCV's ``QRCodeDetector`` and ``QRCodeDetectorAruco``, zbar (``pyzbar`` over
Debian's libzbar0), zbar on an unsharp-masked frame, and :class:`QrReader` (the chain the camera
uses). The share each reads is printed; the 100 px sharp and the σ 2 cases must be read by the
reader, and the reader must read at least as much as any single decoder.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import qrcode
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyzbar import pyzbar

from devices.camera.protocol import encode_compact_token, encode_token, parse_token
from devices.camera.qr import QrReader, sharpen

APP_ID = "3f2b8c1e-9a4d-4e7f-b6c5-2d1e0f9a8b7c"
KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
TOKEN = encode_compact_token(APP_ID, 1_790_000_000, 1_790_000_120, KEY.sign)
BACKGROUND = cv2.GaussianBlur(np.random.default_rng(2026).integers(90, 200, (480, 640), dtype=np.uint8), (5, 5), 0)


def _matrix_qrcode(text: str) -> tuple[np.ndarray, int]:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=0)
    code.add_data(text)
    code.make(fit=True)
    return np.array(code.get_matrix(), dtype=bool), int(code.version)


def _matrix_segno(text: str) -> tuple[np.ndarray, int]:
    code = segno.make_qr(text, error="l", boost_error=False)
    return np.array(code.matrix, dtype=bool), int(code.version)


GENERATORS = {"qrcode": _matrix_qrcode, "segno": _matrix_segno}


def _frame(modules: np.ndarray, width_px: int, *, blur: float = 0.0, angle: float = 0.0, perspective: float = 0.0,
           contrast: float = 1.0, jpeg: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:  # fmt: skip
    n = modules.shape[0]
    quiet = 4
    symbol = np.full((n + 2 * quiet, n + 2 * quiet), 255, np.uint8)
    symbol[quiet : quiet + n, quiet : quiet + n] = np.where(modules, 0, 255)
    size = round(width_px * (n + 2 * quiet) / n)
    symbol = cv2.resize(symbol, (size, size), interpolation=cv2.INTER_AREA)
    frame = BACKGROUND.copy()
    y, x = (480 - size) // 2, (640 - size) // 2
    frame[y : y + size, x : x + size] = symbol
    if angle:
        frame = cv2.warpAffine(frame, cv2.getRotationMatrix2D((320, 240), angle, 1.0), (640, 480),
                               borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    if perspective:
        corners = np.float32([[x, y], [x + size, y], [x + size, y + size], [x, y + size]])
        inset = perspective * size
        tilted = np.float32([[x + inset, y], [x + size - inset, y], [x + size, y + size], [x, y + size]])
        frame = cv2.warpPerspective(frame, cv2.getPerspectiveTransform(corners, tilted), (640, 480),
                                    borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    if contrast != 1.0:
        frame = np.clip(128 + (frame.astype(np.float32) - 128) * contrast, 0, 255).astype(np.uint8)
    if blur:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    if jpeg is not None:
        assert rng is not None
        frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        frame = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return frame


def _zbar(gray: np.ndarray) -> str:
    found = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
    return found[0].data.decode("utf-8", "replace") if found else ""


def _opencv(detector: cv2.QRCodeDetector) -> object:
    return lambda gray: detector.detectAndDecode(gray)[0] or ""


READER = QrReader()
DECODERS = {
    "opencv": _opencv(cv2.QRCodeDetector()),
    "opencv_aruco": _opencv(cv2.QRCodeDetectorAruco()),
    "zbar": _zbar,
    "zbar_sharpened": lambda gray: _zbar(sharpen(gray)),
    "reader": READER.read,
}
SIZES = (100, 150, 200)
BLURS = (0.0, 1.0, 2.0)
EXTRA = {
    "none": {},
    "rotated 20°": {"angle": 20.0},
    "rotated 45°": {"angle": 45.0},
    "perspective 10 %": {"perspective": 0.10},
    "perspective 15 %": {"perspective": 0.15},
    "contrast 40 %": {"contrast": 0.4},
    "jpeg q30 + noise": {"jpeg": 30},
}


def test_token_is_compact_and_signed() -> None:
    old = encode_token(APP_ID, 1_790_000_000, 1_790_000_120, "bm9uY2UtMDAwMQ", KEY.sign)
    print(f"\ncompact token: {len(TOKEN)} characters, QR version {_matrix_segno(TOKEN)[1]}-L "
          f"(EQ1 for the same app id: {len(old)} characters, version {_matrix_segno(old)[1]}-L)")  # fmt: skip
    assert len(TOKEN) == 135 and TOKEN.startswith("EQ2:")
    assert _matrix_segno(TOKEN)[1] == _matrix_qrcode(TOKEN)[1] == 5
    token = parse_token(TOKEN)
    KEY.public_key().verify(token.signature, token.signed_bytes)
    assert (token.app_id, token.expires_at_s - token.issued_at_s) == (APP_ID, 120)


def test_degradation_matrix() -> None:
    rng = np.random.default_rng(14)
    read: dict[str, list[tuple[str, int, float, str]]] = {name: [] for name in DECODERS}
    cases = 0
    for generator, size, blur, (extra, options) in itertools.product(GENERATORS, SIZES, BLURS, EXTRA.items()):
        modules, _version = GENERATORS[generator](TOKEN)
        frame = _frame(modules, size, blur=blur, rng=rng, **options)  # type: ignore[arg-type]
        cases += 1
        for name, decode in DECODERS.items():
            if decode(frame) == TOKEN:  # type: ignore[operator]
                read[name].append((generator, size, blur, extra))
    print(f"\nshare of {cases} degraded frames read (codes from qrcode and segno, {TOKEN[:4]} token, version 5-L):")
    for name, hits in read.items():
        print(f"  {name:15} {len(hits) / cases:6.1%}")
    print("  by size and blur, what the reader read and missed:")
    for size, blur in itertools.product(SIZES, BLURS):
        hits = {(h[0], h[3]) for h in read["reader"] if h[1] == size and h[2] == blur}
        missed = sorted(f"{g}/{e}" for g, e in itertools.product(GENERATORS, EXTRA) if (g, e) not in hits)
        print(
            f"    {size:3d} px σ {blur:.0f}: {len(hits):2d}/{len(GENERATORS) * len(EXTRA)}  missed: {', '.join(missed) or '-'}"
        )
    for generator in GENERATORS:
        assert (generator, 100, 0.0, "none") in read["reader"], "a sharp 100 px code must be read"
        assert (generator, 150, 2.0, "none") in read["reader"], "a 150 px code blurred at σ 2 must be read"
        assert (generator, 200, 2.0, "none") in read["reader"], "a 200 px code blurred at σ 2 must be read"
    assert len(read["reader"]) >= max(len(hits) for name, hits in read.items() if name != "reader")


def test_compact_token_reads_where_the_first_format_did_not() -> None:
    old = encode_token(APP_ID, 1_790_000_000, 1_790_000_120, "bm9uY2UtMDAwMQ", KEY.sign)
    shares = {}
    for name, text in (("EQ1", old), ("EQ2", TOKEN)):
        hits = 0
        for generator, size, blur in itertools.product(GENERATORS, SIZES, BLURS):
            modules, _ = GENERATORS[generator](text)
            hits += READER.read(_frame(modules, size, blur=blur)) == text
        shares[name] = hits / (len(GENERATORS) * len(SIZES) * len(BLURS))
    print(f"\nsize × blur grid read by the reader: EQ1 {shares['EQ1']:.0%}, EQ2 {shares['EQ2']:.0%}")
    assert shares["EQ2"] > shares["EQ1"]


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_camera_reader_on_a_colour_frame(generator: str) -> None:
    modules, _ = GENERATORS[generator](TOKEN)
    frame = cv2.cvtColor(_frame(modules, 100), cv2.COLOR_GRAY2BGR)
    assert QrReader().read(frame) == TOKEN
    assert QrReader(use_zbar=False).read(cv2.cvtColor(_frame(modules, 200), cv2.COLOR_GRAY2BGR)) == TOKEN
