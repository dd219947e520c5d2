from __future__ import annotations

import inspect
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.decisioning.identity
from edge.decisioning.identity import Identity, load_key, normalise
from edge.errors import InvalidEvent
from edge.events import TOKEN_PATTERN

from .conftest import RAW_APP, RAW_EMAIL, RAW_LOYALTY, RAW_NEEDLES, RAW_PHONE, Gateway, scan_for

KEY = b"k" * 32


def test_normalisation() -> None:
    assert normalise("email", "  Ann@Example.COM ", "US") == "ann@example.com"
    assert normalise("phone", "(415) 555-0199", "US") == "+14155550199"
    assert normalise("phone", "+44 20 7946 0018", "US") == "+442079460018"
    assert normalise("phone", "020 7946 0018", "GB") == "+442079460018"
    assert normalise("loyaltyId", "LOY-0012 34", "US") == "001234"
    assert normalise("appId", " a-B ", "US") == "a-B"


def test_token_is_keyed_stable_and_kind_separated() -> None:
    identity = Identity(KEY)
    token = identity.token("email", "ann@example.com")
    assert TOKEN_PATTERN.match(token)
    assert identity.token("email", " ANN@example.com") == token
    assert Identity(b"x" * 32).token("email", "ann@example.com") != token
    assert identity.token("loyaltyId", "123") != identity.token("appId", "123")


# every fixed word an identity error can say: a value that is part of it ("bad_", "mail") may
# appear in a message without having been echoed
_MESSAGE_VOCABULARY = inspect.getsource(edge.decisioning.identity)


@given(st.text(max_size=40))
def test_bad_values_never_echoed(value: str) -> None:
    identity = Identity(KEY)
    for kind in ("email", "phone", "loyaltyId"):
        try:
            identity.token(kind, value)
        except InvalidEvent as exc:
            if len(value.strip()) > 3 and value.strip() not in _MESSAGE_VOCABULARY:
                assert value.strip() not in str(exc)


def test_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "identity.key"
    key = load_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["mqtt", "http", "serial"])
async def test_stage_pseudonymises_every_transport(gateway: Gateway, transport: str) -> None:
    kind = "pos" if transport == "serial" else "kiosk"
    source = gateway.source(kind, f"{kind}-1", transport)
    events = [
        {"event": "Customer Identified", "properties": {"identifiers": {"email": RAW_EMAIL}}},
        {"event": "Product Viewed", "properties": {"sku": "SKU00003", "identifiers": {"phone": RAW_PHONE}}},
        {"event": "Order Completed", "properties": {"products": [], "identifiers": {"loyaltyId": RAW_LOYALTY}}},
        {"type": "identify", "anonymousId": "v1", "traits": {"email": RAW_EMAIL, "name": "x"}},
        {"event": "Zone Entered", "properties": {"zoneId": "z", "identifiers": {"appId": RAW_APP}}},
    ]
    result = await gateway.publish(source, events)
    assert result.accepted == 5, result.rejected
    identity = gateway.component.identity
    expected = [
        identity.token("email", RAW_EMAIL),
        identity.token("phone", RAW_PHONE),
        identity.token("loyaltyId", RAW_LOYALTY),
        identity.token("email", RAW_EMAIL),
        identity.token("appId", RAW_APP),
    ]
    bodies = [json.loads(gateway.journal.get(m) or "{}") for m in result.message_ids]
    assert [b["userId"] for b in bodies] == expected
    assert all("identifiers" not in b["properties"] for b in bodies)
    assert bodies[3]["traits"] == {"email": identity.token("email", RAW_EMAIL)}  # name: a personal trait, dropped
    gateway.journal.checkpoint()
    assert scan_for([gateway.state_dir], RAW_NEEDLES) == []


@pytest.mark.anyio
async def test_bad_identifier_refused_without_echo(gateway: Gateway) -> None:
    result = await gateway.publish(
        gateway.source(),
        [{"event": "Customer Identified", "properties": {"identifiers": {"phone": "call-me-zelda-maybe"}}}],
    )
    assert [r.reason for r in result.rejected] == ["bad_identifier"]
    assert "zelda" not in result.rejected[0].detail
    gateway.journal.checkpoint()
    assert scan_for([gateway.state_dir], ["call-me-zelda"]) == []


@pytest.mark.anyio
async def test_userid_contradicting_identifiers_is_refused(gateway: Gateway) -> None:
    other = gateway.component.identity.token("email", "other@example.com")
    result = await gateway.publish(
        gateway.source(),
        [{"event": "Customer Identified", "userId": other, "properties": {"identifiers": {"email": RAW_EMAIL}}}],
    )
    assert [r.reason for r in result.rejected] == ["identity_mismatch"]


@pytest.mark.anyio
async def test_sdk_identity_app_user_id_and_traits_are_tokenised(gateway: Gateway) -> None:
    """What Segment/RudderStack SDKs send: the app's own userId, identifiers and personal data in
    traits and context.traits."""
    identity = gateway.component.identity
    events = [
        {
            "type": "identify",
            "userId": "app-user-4711",
            "traits": {"email": RAW_EMAIL, "firstName": "Zelda", "address": {"street": "1 Quux Way"}, "plan": "gold"},
        },
        {
            "event": "Cart Viewed",
            "userId": "app-user-4711",
            "context": {"traits": {"phone": RAW_PHONE, "birthday": "1990-01-01", "tier": "b"}},
        },
        {"type": "identify", "anonymousId": "v-9", "context": {"traits": {"loyaltyId": RAW_LOYALTY}}},
        {"type": "alias", "userId": "app-user-4711", "previousId": "v-9"},
    ]
    result = await gateway.publish(gateway.source(), events)
    assert result.accepted == 4, result.rejected
    bodies = [json.loads(gateway.journal.get(m) or "{}") for m in result.message_ids]
    app = identity.token("userId", "app-user-4711")
    assert [b.get("userId") for b in bodies] == [app, app, identity.token("loyaltyId", RAW_LOYALTY), app]
    assert bodies[0]["traits"] == {"email": identity.token("email", RAW_EMAIL), "plan": "gold"}
    assert bodies[1]["context"]["traits"] == {"phone": identity.token("phone", RAW_PHONE), "tier": "b"}
    assert bodies[3]["type"] == "alias" and bodies[3]["previousId"] == "v-9"
    gateway.journal.checkpoint()
    assert scan_for([gateway.state_dir], [*RAW_NEEDLES, "app-user-4711", "Zelda", "Quux Way"]) == []
