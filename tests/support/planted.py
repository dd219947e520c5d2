"""Hypothesis strategies for the planted-identifier tests: raw identifiers of every kind the
guard knows, random event shapes, and insertion of an identifier at a random path."""

from __future__ import annotations

import random
from typing import Any

import phonenumbers
from hypothesis import strategies as st

LOYALTY_PATTERN = r"LOY-\d{4}-\d{4}-\d{4}"
APP_ID_PATTERN = r"app-[a-z0-9]{3}-[0-9a-f]{12}"
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


@st.composite
def phones(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(_REGIONS))
    number = phonenumbers.example_number_for_type(
        region, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(region)
    if number is None or not phonenumbers.is_valid_number(number):
        number = phonenumbers.parse("+14155550199")
        region = "US"
    formats = [phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164]
    if region == "US":
        formats.append(phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, draw(st.sampled_from(formats)))


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["4", "51", "55", "37", "6011"]))
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(
        str(d)
        for d in draw(st.lists(st.integers(0, 9), min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1))
    )
    number = _luhn_complete(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


emails = st.emails().filter(lambda e: len(e) <= 80)
identifiers = st.one_of(
    emails.map(lambda e: ("email", e)),
    phones().map(lambda p: ("phone", p)),
    cards().map(lambda c: ("card", c)),
    st.from_regex(LOYALTY_PATTERN, fullmatch=True).map(lambda v: ("loyaltyId", v)),
    st.from_regex(APP_ID_PATTERN, fullmatch=True).map(lambda v: ("appId", v)),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(max_size=12),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_like = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
shapes = st.sampled_from(
    [
        {"event": "Product Viewed", "properties": {"sku": "SKU00001", "name": "milk"}},
        {"event": "Products Searched", "properties": {"query": "oat milk"}},
        {"event": "Order Completed", "properties": {"products": [{"sku": "SKU00002", "name": "x"}], "total": 3}},
        {"event": "Device Status", "properties": {"status": "ok"}},
        {"type": "page", "name": "Home", "properties": {"url": "https://shop.test/?q=1"}, "context": {"page": {}}},
        {"type": "screen", "name": "Basket", "anonymousId": "v-1"},
        {"type": "identify", "anonymousId": "v-2", "traits": {"plan": "gold"}},
        {"type": "group", "groupId": "g-1", "anonymousId": "v-3", "traits": {"plan": "b"}},
        {"type": "alias", "userId": "ct_" + "e" * 32, "previousId": "v-4"},
        {"event": "Nope Not Known", "properties": {}},  # refused: the identifier must not reach the dead letter
        {"event": "Product Added", "properties": {"sku": 5}},  # refused: wrong_type
    ]
)


def containers(value: Any) -> list[Any]:
    found = []
    if isinstance(value, dict):
        found.append(value)
        for v in value.values():
            found.extend(containers(v))
    elif isinstance(value, list):
        found.append(value)
        for v in value:
            found.extend(containers(v))
    return found


def plant(event: dict[str, Any], raw: str, rng: random.Random) -> None:
    """Insert ``raw`` somewhere in ``event``: as a value, inside free text, URL-encoded in a
    query string, as a key, or as a list item, in any container at any depth."""
    from urllib.parse import quote

    event.setdefault("properties", {}).setdefault("extra", {})
    event.setdefault("context", {}).setdefault("traits", {})
    target = rng.choice(containers(event))
    text = rng.choice(
        [
            raw,
            f"note: {raw} thanks",
            f"https://shop.test/p?contact={quote(raw, safe='')}&x=1",
            raw.upper() if "@" in raw else raw,
        ]
    )
    if isinstance(target, list):
        target.append(text)
    elif rng.random() < 0.15:
        target[text] = 1
    else:
        target[rng.choice(["note", "anonymousId", "query", "name", "visitId", "search", "previousId", "groupId"])] = (
            text
        )
