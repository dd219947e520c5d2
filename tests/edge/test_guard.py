"""The identifier guard as a pure function: planted identifiers never survive, counted by kind."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.emulation import scaled
from support.planted import APP_ID_PATTERN, LOYALTY_PATTERN, identifiers, plant, shapes
from support.privacy import needle_forms

from edge.errors import InvalidEvent
from edge.guard import IdentifierGuard, _luhn, _no_phone, skeleton

COUNTS: dict[str, int] = {}
GUARD = IdentifierGuard(
    "US",
    loyalty_patterns=[LOYALTY_PATTERN],
    app_id_patterns=[APP_ID_PATTERN],
    count=lambda kind, n: COUNTS.__setitem__(kind, COUNTS.get(kind, 0) + n),
)


def _leaks(text: str, raws: list[str]) -> list[str]:
    lowered = text.lower()
    return [form for raw in raws for form in needle_forms(raw) if form.lower() in lowered]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes, st.lists(identifiers, min_size=1, max_size=4), st.integers(0, 2**32))
def test_planted_identifiers_never_survive_the_guard(shape, planted, seed):
    rng = random.Random(seed)
    event = copy.deepcopy(shape)
    raws = [raw for _, raw in planted]
    for raw in raws:
        plant(event, raw, rng)
    original = copy.deepcopy(event)
    cleaned = GUARD.clean(event)
    assert not _leaks(json.dumps(cleaned, ensure_ascii=False), raws), (raws, cleaned)
    assert not _leaks(GUARD.excerpt(original), raws)
    assert not _leaks(skeleton(json.dumps(original).encode()), raws)


def test_markers_name_the_kind_and_are_counted():
    COUNTS.clear()
    event = {
        "event": "Products Searched",
        "properties": {
            "query": "mail zelda@example.test or call (415) 555-0199",
            "card": "4111 1111 1111 1111",
            "list": ["LOY-1234-5678-9012", {"app-zzq-9f8e7d6c5b4a": True}],
        },
    }
    cleaned = GUARD.clean(event)
    assert cleaned["properties"] == {
        "query": "mail [email] or call [phone]",
        "card": "[card]",
        "list": ["[loyaltyId]", {"[appId]": True}],
    }
    assert COUNTS == {"email": 1, "phone": 1, "card": 1, "loyaltyId": 1, "appId": 1}


def test_ordinary_values_are_left_alone():
    event = {
        "messageId": "01930d4e-8b1c-7c3e-9f00-1a2b3c4d5e6f",
        "event": "Order Completed",
        "timestamp": "2026-11-22T10:00:00.000Z",
        "userId": "ct_" + "1234567" * 4 + "abcd",
        "properties": {
            "sku": "SKU-000421337",
            "order_id": "20261122-0001",
            "total": 12.5,
            "identifiers": {"email": "kept@for.identity"},
        },
    }
    assert GUARD.clean(copy.deepcopy(event)) == event


def test_an_alias_previous_id_that_is_an_identifier_is_masked():
    # userId is tokenised by the identity stage; previousId is not, so the guard masks it
    cleaned = GUARD.clean({"type": "alias", "userId": "zelda@example.test", "previousId": "zelda@example.test"})
    assert cleaned == {"type": "alias", "userId": "zelda@example.test", "previousId": "[email]"}


def test_personal_traits_are_dropped_identifier_traits_kept_for_the_identity_stage():
    event = {
        "type": "identify",
        "traits": {"email": "a@b.test", "name": "Zelda", "plan": "gold", "address": {"city": "X"}},
        "context": {"traits": {"birthday": "1990-01-01", "phone": "+14155550199"}},
    }
    cleaned = GUARD.clean(event)
    assert cleaned["traits"] == {"email": "a@b.test", "plan": "gold"}
    assert cleaned["context"]["traits"] == {"phone": "+14155550199"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"properties": {"x": "\ud800"}}, "bad_text"),
        ({"properties": {"\udfff": 1}}, "bad_text"),
        ({"userId": "\ud800"}, "bad_text"),
        ({"properties": {"identifiers": {"email": "\ud800@x.test"}}}, "bad_text"),
        ({"properties": {"x": float("nan")}}, "bad_number"),
        ({"properties": {"x": [float("inf")]}}, "bad_number"),
        ({"properties": {"x": 2**70}}, "bad_number"),
        ({"properties": {"x": {"y": json.loads("[" * 40 + "]" * 40)}}}, "too_deep"),
        ({"messageId": "zelda@example.test"}, "raw_identifier"),
    ],
)
def test_what_the_journal_could_not_store_is_refused_by_name(raw, reason):
    with pytest.raises(InvalidEvent) as info:
        GUARD.clean(raw)
    assert info.value.reason == reason
    assert "zelda" not in str(info.value)
    json.dumps(GUARD.excerpt(raw))  # the dead letter's excerpt is still storable text
    GUARD.excerpt(raw).encode("utf-8")


def test_a_luhn_valid_timestamp_inside_an_sdk_message_id_is_no_card():
    # @segment/analytics-node's message ids are "node-next-<ms timestamp>-<uuid part>"; one in ten
    # timestamps passes Luhn: found by tests/edge/test_segment_sdks.py before issuer prefixes and
    # word boundaries were required
    stamp = next(str(ms) for ms in range(1_764_615_154_000, 1_764_615_155_000) if _luhn(str(ms)))
    for text in (f"node-next-{stamp}-f5ca1ce-664b-404a-b46d-bb7f92fdca38", stamp, f"exposed {stamp}"):
        event = {"messageId": text, "event": "Cart Viewed", "properties": {"note": text}}
        assert GUARD.clean(copy.deepcopy(event)) == event


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "guard"


def _recorded(name: str) -> list[str]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("# ")]


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("cards-stripe-ios.txt", "card"),  # stripe/stripe-ios IntegrationTesterUICardEntryTests.swift
        ("emails-python-email-validator.txt", "email"),  # JoshData/python-email-validator tests/test_syntax.py
    ],
)
def test_recorded_identifiers_from_other_projects_suites_are_masked(fixture, kind):
    values = _recorded(fixture)
    assert len(values) >= 15
    for value in values:
        variants = [value, f"pay with {value} today", f"https://shop.test/?x={quote(value, safe='')}"]
        if kind == "card":
            variants += [
                " ".join(value[i : i + 4] for i in range(0, len(value), 4)),
                "-".join(value[i : i + 4] for i in range(0, len(value), 4)),
            ]
        for text in variants:
            cleaned = GUARD.clean({"event": "Cart Viewed", "properties": {"note": text}})["properties"]["note"]
            assert f"[{kind}]" in cleaned, (value, text, cleaned)
            assert not _leaks(cleaned, [value]), (value, cleaned)


def test_no_payload_holds_the_ingest_thread_in_the_phone_matcher(tmp_path):
    """477 KB of phone-like strings: without the budget the matcher took 2.5 s on this VM."""
    import time

    from edge.bus import Source
    from edge.ingest import Ingestor
    from edge.journal import Journal
    from edge.metrics import IngestMetrics

    events = [
        {"event": "Cart Viewed", "properties": {"n": [f"call 415 555 {i * 7 + j:04d}" for j in range(7)]}}
        for i in range(2400)
    ]
    long_text = {
        "event": "Cart Viewed",
        "properties": {"x": " ".join(f"(415) 555-{i:04d}" for i in range(2000))[:30000]},
    }
    with Journal(tmp_path / "j.db") as journal:
        ingestor = Ingestor(journal, IngestMetrics())
        for payload in (json.dumps({"batch": events}).encode(), json.dumps({"batch": [long_text] * 15}).encode()):
            started = time.process_time()
            item = ingestor.prepare_payload(Source("s1", "k1", "kiosk", "mqtt"), payload)
            assert time.process_time() - started < scaled(1.5)
            assert item.events and not item.rejected
            text = json.dumps([e.body for e in item.events])
            assert "555 0" not in text and "555-0" not in text


# -- the phone matcher's shortcut, held to the matcher itself ---------------------------------
# real numbers from phonenumbers' own metadata (its example numbers: what each region's plan
# calls valid), national and international digits, for the regions stores are in and more
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)[::6]  # 41 of the 245, every sixth
_NUMBERS = sorted(
    {
        digits
        for region in _REGIONS
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
        for digits in (
            phonenumbers.national_significant_number(example),
            f"{example.country_code}{phonenumbers.national_significant_number(example)}",
            phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL),
        )
    }
)
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_pieces = st.one_of(
    st.sampled_from(_NUMBERS).map(lambda n: "".join(c for c in n if c.isdigit() or c == "-")),
    st.text("0123456789", min_size=1, max_size=24),
    st.text(_TOKEN_CHARS, min_size=1, max_size=6),
    st.sampled_from(["x", "ext", "int", "anexo", "-", "--", "-----", "_", "sku", "flood", "ajs-next-", "e"]),
    st.tuples(
        st.sampled_from(["x", "ext", "extn", "int", "anexo"]),
        st.sampled_from(_NUMBERS),
        st.text("0123456789", max_size=12),
    ).map(lambda t: t[0] + t[2] + "".join(c for c in t[1] if c.isdigit())),  # an extension, then a number
)
_tokens = st.lists(_pieces, min_size=1, max_size=8).map("".join)


def _matcher_finds(text: str, region: str) -> list[str]:
    return [m.raw_string for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tokens, st.sampled_from(["US", "DE", "GB", "FR", "IN", "BR", "CN", "JP", "AU", "ZA", *_REGIONS]))
def test_what_the_shortcut_skips_the_phone_matcher_never_finds(text, region):
    if _no_phone(text):
        assert _matcher_finds(text, region) == [], text


def test_the_shortcut_skips_letter_bound_ids_and_keeps_numbers_the_matcher_finds():
    for number in _NUMBERS[:200]:
        digits = "".join(c for c in number if c.isdigit())
        assert _no_phone(f"order{digits}") == (len(digits) <= 20)  # glued to a letter: skipped
        for loose in (digits, f"order-{digits}", f"order_{digits}", f"order{digits}x12", f"o{digits}ext9"):
            assert not _no_phone(loose), loose  # the matcher decides these
    found = [n for n in _NUMBERS if _matcher_finds(f"order-{''.join(c for c in n if c.isdigit())}", "US")]
    assert len(found) >= 10  # …and finds real numbers among them: the oracle is not blind
    assert all(_no_phone(t) for t in ("flood1796235342-123", "SKU00123456", "aisle0712345", "pub1"))
    assert not any(_no_phone(t) for t in ("call 4155552671", "+14155552671", "(415)5552671", "415.555.2671"))
    # an extension ends its candidate inside the next run, where no letter precedes: the matcher
    # finds these, so the shortcut must not skip them (found by hand; kept as cases)
    for text in ("a1int1234567894155552671", "a1int123456789-4155552671", "a1anexo1234567890123456789014155552671"):
        assert _matcher_finds(text, "US") and not _no_phone(text), text


def test_a_number_in_a_message_id_is_still_refused_and_a_letter_bound_one_kept():
    guard = IdentifierGuard("US")
    with pytest.raises(InvalidEvent, match="messageId holds a raw identifier"):
        guard.clean({"messageId": "order-4155552671", "event": "Product Added"})
    kept = {"messageId": "flood1796235342-123", "event": "Product Added", "properties": {"note": "a4155552671"}}
    assert guard.clean(copy.deepcopy(kept)) == kept  # as the matcher left them: glued to a letter
