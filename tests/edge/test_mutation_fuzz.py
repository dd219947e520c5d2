"""A seeded mutation fuzz of event bodies through the decoder, the guard and the parser.

100,000 bodies (``EDGE_FUZZ_BODIES`` to change; ``EDGE_FUZZ_SEED`` to replay a printed seed) are
mutated from valid events — bytes flipped, inserted, deleted and duplicated, and values swapped
for the inputs that broke the gateway before (lone surrogates, NaN, Infinity, 1e400, 5,000-digit
integers, deep nesting, identifiers). Each goes the way an MQTT or HTTP body goes: the only
allowed failure is InvalidEvent; whatever is accepted is storable UTF-8 JSON without NaN, and
every dead-letter excerpt is storable text.
"""

from __future__ import annotations

import json
import os
import random
import time

from edge.bus import Source
from edge.errors import InvalidEvent
from edge.events import decode_payload, parse_event
from edge.guard import IdentifierGuard, skeleton

SOURCE = Source("s1", "k1", "kiosk", "mqtt")
NOW = 1_790_000_000_000
SEEDS = [
    {
        "messageId": "m-1",
        "event": "Product Added",
        "timestamp": "2026-11-22T10:00:00.000Z",
        "properties": {"sku": "SKU00001", "quantity": 1, "price": 2.49},
    },
    {"type": "identify", "userId": "ct_" + "a" * 32, "traits": {"email": "ct_" + "b" * 32, "plan": "gold"}},
    {
        "batch": [
            {"type": "page", "name": "Home", "anonymousId": "v1", "context": {"page": {"url": "https://x.test/?q=1"}}},
            {"type": "screen", "name": "Basket"},
            {"type": "group", "groupId": "g1", "traits": {"n": 2}},
            {"type": "alias", "userId": "ct_" + "c" * 32, "previousId": "v1"},
        ]
    },
    {
        "event": "Order Completed",
        "anonymousId": "v2",
        "properties": {"order_id": "o-1", "products": [{"sku": "A", "quantity": 2, "price": 1.5}], "total": 3.0},
    },
    {
        "event": "Offer Viewed",
        "properties": {"offerId": "o1", "decisionId": "d1"},
        "context": {"traits": {"tier": "b"}},
    },
    [
        {"event": "Device Status", "properties": {"status": "ok"}},
        {"event": "Zone Entered", "properties": {"zoneId": "z"}},
    ],
]
TOKENS = [b'"\\ud800"', b'"\\udfff x"', b"NaN", b"-Infinity", b"1e400", b"9" * 5000, b"[" * 60, b"]" * 60, b"{",
          b'"', b"\\", b"\x00", b"\xff\xfe", b'"zelda@example.test"', b'"+1 415 555 0199"', b'"4111 1111 1111 1111"',
          b"null", b"true", b"-0", b"1e-400", b'{"batch": 1}', b"\xed\xa0\x80"]  # fmt: skip


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at:at] = rng.choice(TOKENS)
        elif op == 2 and buf:
            del buf[at : at + rng.randint(1, 8)]
        elif op == 3 and buf:
            end = min(len(buf), at + rng.randint(1, 32))
            buf[at:at] = buf[at:end]
        elif op == 4:
            buf[at:at] = bytes([rng.randrange(256)])
        else:  # replace a JSON value after a colon by an interesting token
            colon = buf.find(b":", at)
            if colon >= 0:
                end = colon + 1
                while end < len(buf) and buf[end] not in b",}]":
                    end += 1
                buf[colon + 1 : end] = rng.choice(TOKENS)
    return bytes(buf)


VALUES = [
    "\ud800",
    "x\udfffy",
    float("nan"),
    float("inf"),
    2**80,
    -(2**64),
    [[[[[[[[[[]]]]]]]]]] * 2,
    "zelda@example.test",
    "(415) 555-0199",
    "4111-1111-1111-1111",
    "LOY-1234-5678-9012",
    None,
    True,
    1.5,
    "",
    {"\ud83d": 1},
    {"identifiers": {"email": "a@b.test"}},
    "ct_" + "d" * 32,
    7,
    "track",
    "page",
    "alias",
]


def _mutate_value(rng: random.Random, value: object) -> object:
    """Swap one value (or key) somewhere in a decoded seed for an interesting one."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            value[rng.choice(["\ud800", "zelda@example.test", "type", "event", "userId"])] = value.pop(key)
        else:
            value[key] = _mutate_value(rng, value[key])
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        value[i] = _mutate_value(rng, value[i])
        return value
    return rng.choice(VALUES)


def test_mutation_fuzz_of_event_bodies_only_ever_refuses():
    count = int(os.environ.get("EDGE_FUZZ_BODIES", "100000"))
    seed = int(os.environ.get("EDGE_FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
    print(f"mutation fuzz: {count} bodies, EDGE_FUZZ_SEED={seed}")
    rng = random.Random(seed)
    guard = IdentifierGuard("US", loyalty_patterns=[r"LOY-\d{4}-\d{4}-\d{4}"])
    seeds = [json.dumps(s).encode() for s in SEEDS]
    outcomes = {"accepted": 0, "refused": 0, "undecodable": 0}
    started = time.perf_counter()
    for i in range(count):
        if i % 2:
            body = _mutate(rng, rng.choice(seeds))
        else:  # structural: valid JSON (with Python's NaN/Infinity tokens) carrying a bad value
            doc = _mutate_value(rng, json.loads(rng.choice(seeds)))
            body = json.dumps(doc).encode()
        try:
            try:
                items = decode_payload(body)
            except InvalidEvent:
                outcomes["undecodable"] += 1
                skeleton(body).encode("utf-8")
                continue
            for raw in items:
                try:
                    if not isinstance(raw, dict):
                        raise InvalidEvent("wrong_type", "an event must be a JSON object")
                    event = parse_event(guard.clean(raw), SOURCE, NOW)
                except InvalidEvent as exc:
                    assert exc.reason and exc.detail
                    outcomes["refused"] += 1
                    guard.excerpt(raw).encode("utf-8")
                    continue
                text = event.encoded()
                text.encode("utf-8")  # what the journal's commit needs
                json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(AssertionError(name)))
                outcomes["accepted"] += 1
        except Exception as exc:
            raise AssertionError(f"body {i} (EDGE_FUZZ_SEED={seed}) crashed: {exc!r}\n{body[:300]!r}") from exc
    elapsed = time.perf_counter() - started
    print(f"mutation fuzz: {outcomes} in {elapsed:.1f} s")
    assert outcomes["accepted"] and outcomes["refused"] and outcomes["undecodable"]
