"""The envelope parser: what it keeps, what it refuses, and that nothing else ever escapes it."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bus import Source
from edge.errors import InvalidEvent
from edge.events import MAX_BACKDATE_DAYS, MAX_BATCH_EVENTS, _encode, decode_payload, iso_ms, parse_event

SOURCE = Source("s1", "k1", "kiosk", "mqtt")
NOW = 1_790_000_000_000


def test_gateway_fields_come_from_the_source_and_unknown_fields_are_kept():
    event = parse_event(
        {
            "event": "Product Added",
            "properties": {"sku": "A", "price": 2.5},
            "channel": "web",
            "custom": {"x": 1},
            "timestamp": "2026-11-22T10:00:00Z",
        },
        SOURCE,
        NOW,
    )
    assert event.body["storeId"] == "s1" and event.body["deviceId"] == "k1"
    assert event.body["channel"] == "kiosk"  # never trusted from the body
    assert event.body["custom"] == {"x": 1}
    assert event.body["receivedAt"].endswith("Z")


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (iso_ms(NOW - 3 * 86_400_000), NOW - 3 * 86_400_000),  # an upload of what happened earlier
        (iso_ms(NOW + 60_000), NOW),  # a device clock ahead: never after it was received
        (iso_ms(NOW - 900 * 86_400_000), NOW - MAX_BACKDATE_DAYS * 86_400_000),  # bounded
        (None, NOW),  # no timestamp: when received
    ],
)
def test_occurred_ms_is_the_device_time_within_bounds(timestamp, expected):
    raw = {"event": "Order Completed", "properties": {"products": []}}
    if timestamp is not None:
        raw["timestamp"] = timestamp
    assert parse_event(raw, SOURCE, NOW).occurred_ms == expected


def test_a_missing_message_id_is_derived_deterministically_as_uuid7():
    raw = {"event": "Cart Viewed", "timestamp": "2026-11-22T10:00:00Z"}
    first = parse_event(dict(raw), SOURCE, NOW).message_id
    again = parse_event(dict(raw), SOURCE, NOW + 5000).message_id
    assert first == again and first[14] == "7"  # a redelivery maps to the same id
    other = parse_event(dict(raw), Source("s1", "k2", "kiosk"), NOW).message_id
    assert other != first


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([], "wrong_type"),
        ({"event": "Product Viewed", "properties": {}}, "missing_field"),
        ({"event": "Product Viewed", "properties": {"sku": 1}}, "wrong_type"),
        ({"event": "Order Completed", "properties": {"products": "x"}}, "wrong_type"),
        ({"event": "Cart Viewed", "deviceId": "k9"}, "identity_mismatch"),
        ({"event": "Cart Viewed", "storeId": "other"}, "identity_mismatch"),
        ({"event": "Cart Viewed", "userId": "alice@example.com"}, "raw_identifier"),
        ({"event": "Cart Viewed", "properties": {"identifiers": {"email": "alice@example.com"}}}, "raw_identifier"),
        ({"type": "identify", "anonymousId": "v1", "traits": {"email": "alice@example.com"}}, "raw_identifier"),
        ({"event": "Cart Viewed", "timestamp": "yesterday"}, "bad_timestamp"),
        ({"event": "Cart Viewed", "messageId": 7}, "wrong_type"),
        ({"type": "identify"}, "missing_field"),
        ({"type": "fax"}, "wrong_type"),
        ({"type": "page", "name": 5}, "wrong_type"),
        ({"type": "page", "event": "Cart Viewed"}, "wrong_type"),
        ({"type": "group", "anonymousId": "v1"}, "missing_field"),
        ({"type": "alias", "userId": "ct_" + "a" * 32}, "missing_field"),
        ({"event": "Product Viewed", "properties": {"product_id": 7}}, "wrong_type"),
        (
            {"type": "identify", "userId": "ct_" + "a" * 32, "context": {"traits": {"email": "alice@example.com"}}},
            "raw_identifier",
        ),
        ({"event": "Product Added", "properties": {"sku": "A", "price": "free"}}, "wrong_type"),
        ({"event": "Cart Viewed", "properties": {"blob": "x" * 40_000}}, "too_large"),
    ],
)
def test_refusals_name_their_reason(raw, reason):
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, SOURCE, NOW)
    assert info.value.reason == reason
    assert "alice@example.com" not in str(info.value)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "page", "name": "Home", "properties": {"path": "/"}},
        {"type": "screen", "name": "Basket", "anonymousId": "v1"},
        {"type": "group", "groupId": "g-1", "traits": {"plan": "gold"}, "anonymousId": "v1"},
        {"type": "alias", "userId": "ct_" + "a" * 32, "previousId": "v1"},
        {
            "event": "Order Completed",
            "properties": {"order_id": "o-1", "total": 3.5},
        },  # products are optional (spec v2)
        {"event": "Product Viewed", "properties": {"product_id": "p-1"}},
        {"type": "identify", "userId": "ct_" + "a" * 32, "traits": {"email": "ct_" + "b" * 32, "plan": "gold"}},
    ],
)
def test_every_segment_call_type_parses(raw):
    event = parse_event(raw, SOURCE, NOW)
    assert event.type == raw.get("type", "track") and event.body["type"] == event.type
    assert event.name == raw.get("event")


def test_batch_limits():
    with pytest.raises(InvalidEvent, match="too_many"):
        decode_payload(json.dumps({"batch": [{}] * (MAX_BATCH_EVENTS + 1)}).encode())
    with pytest.raises(InvalidEvent, match="too_large"):
        decode_payload(b" " * (600 * 1024))
    assert len(decode_payload(b'{"batch": [{}, {}]}')) == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", 3]),
        "event": st.sampled_from(["Product Viewed", "Order Completed", "Zone Entered", "Nope"]) | json_values,
        "messageId": st.text(max_size=150) | json_values,
        "userId": st.sampled_from(["ct_" + "a" * 32, "bob@example.com"]) | json_values,
        "anonymousId": json_values,
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "9999-99-99", "0001-01-01T00:00:00+23:59"]) | json_values,
        "properties": st.dictionaries(st.sampled_from(["sku", "price", "products", "count", "zoneId"]), json_values)
        | json_values,
        "context": json_values,
        "deviceId": st.sampled_from(["k1", "k2"]) | json_values,
        "traits": json_values,
    },
)
FUZZ = settings(
    max_examples=3000 if os.environ.get("CI") else 500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(envelopes)
def test_fuzz_envelope_parser_only_raises_invalid_event(raw):
    try:
        event = parse_event(raw, SOURCE, NOW)
    except InvalidEvent as exc:
        assert exc.reason and exc.detail
        return
    json.loads(event.encoded())
    assert event.body["deviceId"] == "k1"


@FUZZ
@given(st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_payload_decoder_only_raises_invalid_event(payload):
    try:
        items = decode_payload(payload)
    except InvalidEvent:
        return
    for raw in items:
        try:
            parse_event(raw, SOURCE, NOW)
        except InvalidEvent:
            pass


@FUZZ
@given(
    st.binary(max_size=512)
    | json_values.flatmap(
        lambda v: st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]).map(
            lambda enc: json.dumps(v, ensure_ascii=False).encode(enc)
        )
    )
)
def test_fuzz_shared_decoder_reads_what_json_loads_reads(payload):
    """The one shared JSONDecoder gives what json.loads(payload, parse_constant=…) gives — the
    same document, or a refusal — on arbitrary bytes and on JSON in every encoding json detects."""

    def refuse(name):
        raise ValueError(name)

    try:
        expected = json.loads(payload, parse_constant=refuse)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        with pytest.raises(InvalidEvent):
            decode_payload(payload)
        return
    if isinstance(expected, dict) and "batch" in expected:
        return  # batch unwrapping is the other fuzz test's subject
    items = expected if isinstance(expected, list) else [expected]
    if len(items) > MAX_BATCH_EVENTS:
        return
    assert decode_payload(payload) == items


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(st.text(max_size=12), _JSON_VALUES, max_size=8))
def test_the_journal_encoding_is_the_stdlib_json_dumps_byte_for_byte(body):
    expected = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    assert _encode(body) == expected
    assert json.loads(_encode(body)) == json.loads(expected)


def test_the_journal_encoding_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError, match="bytes is not JSON serializable"):
        _encode({"raw": b"\x00"})
