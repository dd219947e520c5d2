"""Building journaled events for the sync tests (pure helpers, no services)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from edge.bus import Source
from edge.events import Event, parse_event
from edge.journal import Journal

SOURCE = Source("s1", "kiosk-1", "kiosk", "mqtt")
T0_MS = 1_790_000_000_000


def token(i: int) -> str:
    return f"ct_{i:032x}"


@dataclass(frozen=True)
class Spec:
    name: str
    user: int | None = None  # customer token index
    anonymous: bool = False
    consent: bool | None = None  # cdp_sync in the snapshot; None: no snapshot
    received_ms: int = T0_MS
    pad: int = 0


def make_event(i: int, spec: Spec, source: Source = SOURCE) -> Event:
    props: dict[str, object] = {
        "Product Viewed": {"sku": "sku-1"}, "Product Added": {"sku": "sku-1"},
        "Order Completed": {"products": [{"sku": "sku-1"}], "total": 9.5},
        "Zone Entered": {"zoneId": "z1"}, "Audience Measured": {"count": 3},
        "Consent Updated": {"categoryPreferences": {"cdp_sync": bool(spec.consent)}},
        "Offer Viewed": {"offerId": "o1"},
    }.get(spec.name, {})  # fmt: skip
    props = dict(props)
    if spec.pad:
        props["note"] = "x" * spec.pad
    raw: dict[str, object] = {"type": "track", "event": spec.name, "messageId": f"m-{i:08d}",
                              "properties": props}  # fmt: skip
    if spec.user is not None:
        raw["userId"] = token(spec.user)
    if spec.anonymous:
        raw["anonymousId"] = f"visit-{i}"
    if spec.consent is not None:
        raw["context"] = {"consent": {"categoryPreferences": {"cdp_sync": spec.consent}}}
    # raw_size=1 lets a test journal an envelope past the 32 KB limit (as an old journal might hold)
    return parse_event(raw, source, spec.received_ms, raw_size=1 if spec.pad > 30_000 else None)


def fill(journal: Journal, specs: Iterable[Spec], start: int = 0, source: Source = SOURCE) -> list[Event]:
    events = [make_event(start + i, s, source) for i, s in enumerate(specs)]
    for k in range(0, len(events), 2000):
        journal.commit(events[k : k + 2000])
    return events


def mixed_specs(n: int, seed: int = 1, users: int = 200) -> list[Spec]:
    """A realistic mix: consented and unconsented people, visits, and events about no one."""
    rnd = random.Random(seed)
    names = ["Product Viewed", "Product Added", "Order Completed", "Zone Entered", "Offer Viewed"]
    specs = []
    for _ in range(n):
        kind = rnd.random()
        name = rnd.choice(names)
        if kind < 0.6:
            specs.append(Spec(name, user=rnd.randrange(users), consent=rnd.random() < 0.7))
        elif kind < 0.8:
            specs.append(Spec(name, anonymous=True, consent=rnd.random() < 0.5))
        else:
            specs.append(Spec("Audience Measured"))
    return specs


def expected_ids(events: Iterable[Event], withdrawn: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """messageIds the policy lets out, given users who withdrew since."""
    out = set()
    for e in events:
        allowed = bool(e.consent.get("cdp_sync"))
        if e.user_id is not None:
            ok = allowed and e.user_id not in withdrawn
        elif e.anonymous_id is not None:
            ok = allowed
        else:
            ok = True
        if ok:
            out.add(e.message_id)
    return out
