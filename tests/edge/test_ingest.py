"""The ingest size bound: a small payload is not re-serialised per event to measure it.

``Ingestor.prepare`` skips parse_event's per-event measurement when ``5 × len(payload) +
PRE_STAGE_GROWTH`` is within :data:`~edge.events.MAX_EVENT_BYTES`. That is only sound if no
event decoded from a payload measures more than five times the payload's bytes, and the
pre-stages together add at most ``PRE_STAGE_GROWTH``. Both are checked here: the first on
generated JSON *text* written the ways devices write it (exponents such as ``1e15``, raw UTF-8,
4-byte characters, escapes, whitespace), the second with the real identity stage on an event
carrying the smallest identifiers in every place it tokenises.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus import Source
from edge.decisioning.identity import Identity, IdentityStage
from edge.events import MAX_EVENT_BYTES, parse_event
from edge.guard import IdentifierGuard
from edge.ingest import _EXPANSION
from edge.types import PRE_STAGE_GROWTH

SOURCE = Source("s1", "kiosk-1", "kiosk", "mqtt")


def measured(raw: object) -> int:
    """parse_event's own measure of an event (compact, ASCII-escaped JSON)."""
    return len(json.dumps(raw, separators=(",", ":")).encode("utf-8"))


numbers = st.sampled_from(["0", "1", "-1", "1e5", "1e15", "-1e15", "9e15", "1E9", "1e-7", "2.5e-5", "1e22", "0.1"])
strings = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(
    lambda s: json.dumps(s, ensure_ascii=False)
)  # raw UTF-8, as most devices send it
escaped = st.text(max_size=8).map(json.dumps)  # ASCII-escaped text: decoding only shrinks it
scalars = numbers | strings | escaped | st.sampled_from(["true", "false", "null"])


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in pairs) + "}"


json_text = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5).map(_array)
        | st.lists(st.tuples(st.text(max_size=6), inner), max_size=5).map(_object)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_text, st.sampled_from(["", " ", "\n  "]))
def test_no_decoded_value_measures_more_than_five_times_its_text(text, space):
    payload = f'{space}{{{space}"properties":{space}{text}{space}}}{space}'
    raw = json.loads(payload)
    assert measured(raw) <= _EXPANSION * len(payload.encode("utf-8"))


def test_the_worst_exponent_and_character_stay_within_the_factor():
    for text in ('{"p":[1e15,1e15,1e15]}', '{"p":"\U0001f600\U0001f600"}', '{"p":"ééé"}'):
        assert measured(json.loads(text)) <= _EXPANSION * len(text.encode("utf-8"))


def test_the_identity_stage_adds_at_most_the_declared_growth():
    """Every identifier the stage tokenises, each as short as it can validly be, plus an app's
    own userId: the tokens replacing them are what the stage adds."""
    stage = IdentityStage(Identity(b"k" * 32), is_suppressed=lambda _user: False)
    guard = IdentifierGuard()
    shortest = {"email": "a@b.co", "phone": "+12025550100", "loyaltyId": "1", "appId": "a"}
    raw = {
        "type": "identify",
        "userId": "u",
        "traits": dict(shortest),
        "context": {"traits": dict(shortest)},
    }
    before = measured(raw)
    after = stage(guard.clean(json.loads(json.dumps(raw)), guard.budget()), SOURCE)
    assert after["userId"].startswith("ct_")
    assert measured(after) - before <= PRE_STAGE_GROWTH
    parse_event(after, SOURCE, 1_790_000_000_000)  # and what it made is a valid event


def test_a_payload_under_the_bound_holds_no_oversized_event():
    """The bound the ingestor uses, end to end: the largest payload it does not measure, made
    of the fastest-growing text, still parses within the limit."""
    limit = (MAX_EVENT_BYTES - PRE_STAGE_GROWTH) // _EXPANSION
    numbers_only = '{"event":"Cart Viewed","properties":{"p":[' + ",".join(["1e15"] * ((limit - 50) // 5)) + "]}}"
    assert len(numbers_only) <= limit
    raw = json.loads(numbers_only)
    assert measured(raw) + PRE_STAGE_GROWTH <= MAX_EVENT_BYTES
    parse_event(raw, SOURCE, 1_790_000_000_000)
